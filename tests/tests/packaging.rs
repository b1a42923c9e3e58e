//! The packaging files, checked without a container engine (issue 17): the `Dockerfile`, the
//! Kubernetes manifests in `deploy/kubernetes/` and the Grafana dashboard in `deploy/grafana/`.
//!
//! They are parsed and held to the node they package. Every pod of the two StatefulSets (the
//! controller voters and the brokers) gets the ConfigMap's `pyralog.toml` as the node's own
//! [`NodeConfig`] with what its environment and start script set (the script is run by `sh`,
//! with a stand-in `pyralog` that reports what it was started with), and must validate: the
//! controller pods are exactly the voters, the brokers learners with ids of their own that
//! advertise their own pod. The ports the containers and the image expose are exactly the
//! listeners that config opens, the probes ask gRPC health on the client listener, the
//! budgets and Services select the right pods, the README's commands (run against a stand-in
//! `kubectl`) create every Secret key the pods read, and every metric the dashboard charts is
//! one a running node exports.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pyralog_e2e::TestNode;
use pyralog_gateway::NodeConfig;
use serde::Deserialize;
use serde_json::Value;

/// The namespace the pods are taken to run in.
const NAMESPACE: &str = "ns";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

fn port_at(v: &Value, pointer: &str) -> u16 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no port at {pointer} in {v}"))
}

/// Every document of a YAML file, as JSON values (empty documents skipped).
fn yaml_documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The resources `deploy/kubernetes/kustomization.yaml` applies.
fn kustomize_resources() -> Vec<String> {
    let k = yaml_documents("deploy/kubernetes/kustomization.yaml");
    assert_eq!(k.len(), 1, "one kustomization");
    assert_eq!(str_at(&k[0], "/kind"), "Kustomization");
    k[0]["resources"]
        .as_array()
        .expect("resources")
        .iter()
        .map(|r| r.as_str().expect("a file name").to_owned())
        .collect()
}

/// Every Kubernetes object the kustomization applies.
fn manifests() -> Vec<Value> {
    kustomize_resources()
        .iter()
        .flat_map(|f| yaml_documents(&format!("deploy/kubernetes/{f}")))
        .collect()
}

fn object<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn of_kind<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|o| o["kind"] == kind).collect()
}

const COMPONENT: &str = "/spec/template/metadata/labels/app.kubernetes.io~1component";

/// The StatefulSets by their pods' `app.kubernetes.io/component`: the controller voters and
/// the brokers.
fn statefulsets(all: &[Value]) -> BTreeMap<&str, &Value> {
    let sets = of_kind(all, "StatefulSet");
    let by: BTreeMap<&str, &Value> = sets.iter().map(|s| (str_at(s, COMPONENT), *s)).collect();
    assert_eq!(sets.len(), 2, "a controller and a broker StatefulSet");
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        ["broker", "controller"]
    );
    by
}

fn replicas(sts: &Value) -> u64 {
    sts.pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .expect("replicas")
}

fn container(sts: &Value) -> &Value {
    let containers = sts
        .pointer("/spec/template/spec/containers")
        .and_then(Value::as_array)
        .expect("containers");
    containers
        .iter()
        .find(|c| c["name"] == "pyralog")
        .expect("a container named pyralog")
}

/// The ConfigMap's `pyralog.toml` as the node parses it (unknown keys are refused).
fn configmap_config(all: &[Value]) -> (String, NodeConfig) {
    let text = str_at(
        object(all, "ConfigMap", "pyralog-config"),
        "/data/pyralog.toml",
    )
    .to_owned();
    let config: NodeConfig =
        toml::from_str(&text).unwrap_or_else(|e| panic!("configmap pyralog.toml: {e}"));
    (text, config)
}

/// The ports a node with `config` listens on.
fn listener_ports(config: &NodeConfig) -> BTreeSet<u16> {
    [
        Some(config.listen),
        config.metrics_listen,
        config.catalog_listen,
        config.cluster.as_ref().map(|c| c.listen),
    ]
    .into_iter()
    .flatten()
    .map(|a| a.port())
    .collect()
}

fn container_ports(c: &Value) -> BTreeMap<String, u16> {
    c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_at(p, "/name").to_owned(), port_at(p, "/containerPort")))
        .collect()
}

/// The start script of the container (`sh -c SCRIPT`).
fn start_script(c: &Value) -> &str {
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-c"]), "{c}");
    str_at(c, "/args/0")
}

/// `CLUSTER__ADVERTISE` → `["cluster", "advertise"]`, as the node splits `PYRALOG_*`.
fn env_key_path(name: &str) -> Vec<String> {
    name.split("__").map(str::to_ascii_lowercase).collect()
}

/// Sets `path` of a serialized config to `value` (a number where the key holds one); the key
/// must exist: an environment variable that names no setting is a mistake.
fn set_key(config: &mut Value, path: &[String], value: &str) {
    let mut at = config;
    for key in path {
        at = at
            .as_object_mut()
            .and_then(|o| o.get_mut(key))
            .unwrap_or_else(|| panic!("{path:?} is not a config key"));
    }
    *at = if at.is_number() {
        Value::from(value.parse::<u64>().expect("a number"))
    } else {
        Value::from(value)
    };
}

/// Mount path → volume name.
fn mounts(c: &Value) -> BTreeMap<String, String> {
    c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            (
                str_at(m, "/mountPath").to_owned(),
                str_at(m, "/name").to_owned(),
            )
        })
        .collect()
}

/// The mount (path, volume) holding `path`: at it or at a directory above it.
fn mount_of(c: &Value, path: &Path) -> Option<(String, String)> {
    mounts(c)
        .into_iter()
        .filter(|(at, _)| path.starts_with(at))
        .max_by_key(|(at, _)| at.len())
}

fn pod_volume<'a>(sts: &'a Value, name: &str) -> &'a Value {
    sts.pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no pod volume {name}"))
}

fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("a label value").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn pod_labels(sts: &Value) -> BTreeMap<String, String> {
    labels(sts.pointer("/spec/template/metadata/labels"))
}

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// Writes an executable `sh` script `name` into `dir`.
fn stand_in(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The container's environment in pod `pod`, as the kubelet sets it: `$(VAR)` names a
/// variable defined above it; a value from a Secret is a stand-in.
fn pod_env(c: &Value, pod: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = Vec::new();
    for e in c["env"].as_array().expect("env") {
        let value = if let Some(v) = e.get("value") {
            let mut v = v.as_str().expect("a string value").to_owned();
            for (name, value) in &env {
                v = v.replace(&format!("$({name})"), value);
            }
            assert!(!v.contains("$("), "{e}: names no variable defined above it");
            v
        } else if let Some(field) = e.pointer("/valueFrom/fieldRef/fieldPath") {
            match field.as_str() {
                Some("metadata.name") => pod.to_owned(),
                Some("metadata.namespace") => NAMESPACE.to_owned(),
                _ => panic!("{e}"),
            }
        } else {
            assert!(e.pointer("/valueFrom/secretKeyRef").is_some(), "{e}");
            "from-a-secret".to_owned()
        };
        env.push((str_at(e, "/name").to_owned(), value));
    }
    env
}

/// One pod of a StatefulSet as it would start.
struct Pod<'a> {
    sts: &'a Value,
    component: &'a str,
    name: String,
    /// What its start script runs `pyralog` with.
    args: Vec<String>,
    /// The ConfigMap's config with the pod's `PYRALOG_*` variables applied.
    config: NodeConfig,
}

impl Pod<'_> {
    /// The files its config reads from Secrets: certificate, key, CA, metrics token.
    fn secret_files(&self) -> Vec<&PathBuf> {
        let tls = self
            .config
            .security
            .cluster_tls
            .as_ref()
            .expect("cluster_tls");
        let token = self.config.security.metrics_token_file.as_ref();
        [&tls.cert, &tls.key, &tls.ca]
            .into_iter()
            .chain(token)
            .collect()
    }
}

/// Every pod of both StatefulSets: each one's start script is run by `sh` in its environment
/// with a stand-in `pyralog` that prints its arguments and environment.
fn pods(all: &[Value]) -> Vec<Pod<'_>> {
    let (_, config) = configmap_config(all);
    let bin = tempfile::tempdir().expect("tempdir");
    stand_in(bin.path(), "pyralog", "printf 'arg %s\\n' \"$@\"\nenv\n");
    let mut pods = Vec::new();
    for (component, sts) in statefulsets(all) {
        let c = container(sts);
        for ordinal in 0..replicas(sts) {
            let name = format!("{}-{ordinal}", str_at(sts, "/metadata/name"));
            let out = Command::new("/bin/sh")
                .args(["-c", start_script(c)])
                .env_clear()
                .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
                .envs(pod_env(c, &name))
                .output()
                .expect("sh");
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success() && stdout.starts_with("arg "),
                "{name}: {out:?}"
            );
            let mut value = serde_json::to_value(&config).expect("serialize");
            let mut args = Vec::new();
            for line in stdout.lines() {
                if let Some(arg) = line.strip_prefix("arg ") {
                    args.push(arg.to_owned());
                } else if let Some((var, v)) = line.split_once('=') {
                    if let Some(key) = var.strip_prefix("PYRALOG_") {
                        set_key(&mut value, &env_key_path(key), v);
                    }
                }
            }
            let config = serde_json::from_value(value).unwrap_or_else(|e| panic!("{name}: {e}"));
            pods.push(Pod {
                sts,
                component,
                name,
                args,
                config,
            });
        }
    }
    pods
}

#[test]
fn the_kustomization_applies_every_manifest_and_each_names_its_api_kind_and_name() {
    let listed: BTreeSet<String> = kustomize_resources().into_iter().collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(repo().join("deploy/kubernetes"))
        .expect("deploy/kubernetes")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    assert_eq!(listed, on_disk, "kustomization.yaml lists every manifest");

    let all = manifests();
    let mut kinds = BTreeSet::new();
    let mut names = BTreeSet::new();
    for o in &all {
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(!str_at(o, field).is_empty(), "{field} empty in {o}");
        }
        assert!(
            o.pointer("/metadata/namespace").is_none(),
            "no fixed namespace (kubectl -n picks it): {o}"
        );
        assert_eq!(
            o.pointer("/metadata/labels/app.kubernetes.io~1name"),
            Some(&Value::from("pyralog")),
            "{o}"
        );
        kinds.insert(format!(
            "{} {}",
            str_at(o, "/apiVersion"),
            str_at(o, "/kind")
        ));
        let name = format!("{} {}", str_at(o, "/kind"), str_at(o, "/metadata/name"));
        assert!(names.insert(name.clone()), "{name} twice");
    }
    let want: BTreeSet<String> = [
        "v1 ConfigMap",
        "v1 Service",
        "apps/v1 StatefulSet",
        "policy/v1 PodDisruptionBudget",
    ]
    .map(str::to_owned)
    .into();
    assert_eq!(kinds, want);
}

#[test]
fn every_pod_validates_with_its_own_id_roles_addresses_and_certificate() {
    let all = manifests();
    let (text, config) = configmap_config(&all);
    let cluster = config.cluster.as_ref().expect("a [cluster] section");
    let voters = cluster.voter_map().expect("voters");
    let cluster_port = cluster.listen.port();
    let pods = pods(&all);
    let mut ids = BTreeSet::new();
    let mut controllers = BTreeMap::new();
    for pod in &pods {
        let (name, c, id) = (&pod.name, container(pod.sts), pod.config.node_id);
        pod.config
            .validate()
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(ids.insert(id), "{name}: node id {id} twice");
        let settings = pod.config.cluster.as_ref().expect("[cluster]");
        // The pod's own name under the headless Service, short or fully qualified.
        let dns = format!("{name}.{}", str_at(pod.sts, "/spec/serviceName"));
        let names_pod = |addr: &str, port: u16| {
            addr.rsplit_once(':').is_some_and(|(host, p)| {
                (host == dns || host == format!("{dns}.{NAMESPACE}.svc.cluster.local"))
                    && p == port.to_string()
            })
        };
        let advertise = settings.advertise.as_deref().unwrap_or_default();
        assert!(
            names_pod(advertise, pod.config.listen.port()),
            "{name}: clients are redirected to {advertise:?}"
        );
        if pod.component == "controller" {
            assert!(settings.is_controller() && !settings.is_broker(), "{name}");
            controllers.insert(id, format!("{dns}:{cluster_port}"));
        } else {
            assert!(settings.is_broker() && !settings.is_controller(), "{name}");
            assert!(!voters.contains_key(&id), "{name}: node {id} is a voter");
            let at = settings.advertise_cluster.as_deref().unwrap_or_default();
            assert!(
                names_pod(at, cluster_port),
                "{name}: the other nodes reach it at {at:?}"
            );
        }

        // Its own certificate (every file from a Secret: see the README test below).
        let files = pod.secret_files();
        let (cert, key) = (files[0], files[1]);
        assert!(
            cert.ends_with(format!("node-{id}.pem")) && key.ends_with(format!("node-{id}-key.pem")),
            "{name} presents node {id}'s certificate: {cert:?} {key:?}"
        );

        // `pyralog serve` reads the ConfigMap and keeps data_dir on a persistent volume.
        assert_eq!(pod.args[..2], ["serve", "--config"], "{name}");
        let mounted = mounts(c);
        assert_eq!(
            mounted.get(&pod.args[2]).map(String::as_str),
            Some("config")
        );
        assert_eq!(
            str_at(pod_volume(pod.sts, "config"), "/configMap/name"),
            "pyralog-config"
        );
        let data = pod.config.data_dir.to_str().expect("utf-8 path");
        let claim = mounted.get(data).expect("data_dir mounted");
        let claims = pod
            .sts
            .pointer("/spec/volumeClaimTemplates")
            .and_then(Value::as_array)
            .expect("volumeClaimTemplates");
        assert!(
            claims
                .iter()
                .any(|t| t["metadata"]["name"] == claim.as_str()),
            "{name}: data_dir {data} is a persistent volume"
        );
    }
    assert_eq!(
        controllers, voters,
        "the controller pods are the voters: {text}"
    );
    let brokers = pods.iter().filter(|p| p.component == "broker").count();
    assert!(
        brokers >= usize::from(config.log_defaults.replication_factor),
        "{brokers} brokers hold every replica of a partition"
    );
}

#[test]
fn the_containers_expose_exactly_the_listeners_of_their_config() {
    let all = manifests();
    let (_, config) = configmap_config(&all);
    for addr in listener_ports(&config) {
        assert_ne!(addr, 0, "fixed ports");
    }
    assert!(
        config.listen.ip().is_unspecified(),
        "the client listener binds every interface"
    );
    for (component, sts) in statefulsets(&all) {
        let ports = container_ports(container(sts));
        let exposed: BTreeSet<u16> = ports.values().copied().collect();
        assert_eq!(exposed, listener_ports(&config), "{component}: {ports:?}");
        assert_eq!(ports.get("client"), Some(&config.listen.port()));
        assert_eq!(
            ports.get("cluster"),
            config.cluster.as_ref().map(|c| c.listen.port()).as_ref()
        );
        assert_eq!(
            ports.get("metrics"),
            config.metrics_listen.map(|a| a.port()).as_ref()
        );
        // Every port of a Service selecting these pods targets one of them by name.
        for svc in of_kind(&all, "Service") {
            if !selects(&labels(svc.pointer("/spec/selector")), &pod_labels(sts)) {
                continue;
            }
            for p in svc
                .pointer("/spec/ports")
                .and_then(Value::as_array)
                .expect("ports")
            {
                let target = str_at(p, "/targetPort");
                assert_eq!(
                    ports.get(target),
                    Some(&port_at(p, "/port")),
                    "{} port {p}",
                    svc["metadata"]["name"]
                );
            }
        }
    }
}

#[test]
fn probes_ask_grpc_health_on_the_client_listener() {
    let all = manifests();
    let (_, config) = configmap_config(&all);
    for (component, sts) in statefulsets(&all) {
        let c = container(sts);
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            let p = c
                .get(probe)
                .unwrap_or_else(|| panic!("{component} {probe} missing: {c}"));
            assert_eq!(
                port_at(p, "/grpc/port"),
                config.listen.port(),
                "{component} {probe} asks grpc.health.v1 on the client listener"
            );
            assert!(
                p.get("grpc").and_then(|g| g.get("service")).is_none(),
                "{component} {probe}: the overall health, not one service"
            );
        }
        // SIGTERM is a controlled shutdown (a broker hands its leaderships off first): the
        // grace period leaves it time.
        let grace = sts
            .pointer("/spec/template/spec/terminationGracePeriodSeconds")
            .and_then(Value::as_u64)
            .expect("terminationGracePeriodSeconds");
        let timeout = config
            .cluster
            .as_ref()
            .expect("cluster")
            .controlled_shutdown_timeout;
        assert!(grace > 2 * timeout.as_secs(), "{component}: {grace}s");
    }
    // The kubelet's gRPC probe speaks no TLS: a TLS client listener would fail every probe.
    assert!(
        config.security.tls.is_none(),
        "grpc probes need a plaintext client listener (see deploy/kubernetes/README.md)"
    );
}

#[test]
fn the_budgets_and_services_select_their_statefulsets_pods() {
    let all = manifests();
    let (_, config) = configmap_config(&all);
    let sets = statefulsets(&all);
    let pdbs = of_kind(&all, "PodDisruptionBudget");
    assert_eq!(pdbs.len(), sets.len(), "one budget per StatefulSet");
    for (component, sts) in &sets {
        let pod = pod_labels(sts);
        let own = labels(sts.pointer("/spec/selector/matchLabels"));
        for (other, o) in &sets {
            assert_eq!(
                selects(&own, &pod_labels(o)),
                other == component,
                "StatefulSet {component} selects the pods of {other}"
            );
        }
        assert_eq!(str_at(sts, "/spec/serviceName"), "pyralog-headless");
        let budgets: Vec<_> = pdbs
            .iter()
            .filter(|b| selects(&labels(b.pointer("/spec/selector/matchLabels")), &pod))
            .collect();
        assert_eq!(budgets.len(), 1, "one budget covers the {component} pods");
        let budget = budgets[0];
        assert_eq!(
            labels(budget.pointer("/spec/selector/matchLabels")),
            own,
            "the budget covers exactly the {component} StatefulSet's pods"
        );
        let down = budget
            .pointer("/spec/maxUnavailable")
            .and_then(Value::as_u64)
            .expect("maxUnavailable");
        assert_eq!(down, 1, "{component}");
        // What stays up keeps working: a voter quorum, min_in_sync_replicas brokers.
        let up = replicas(sts) - down;
        let need = if *component == "controller" {
            replicas(sts) / 2 + 1
        } else {
            u64::from(config.log_defaults.min_in_sync_replicas)
        };
        assert!(up >= need, "{component}: {up} of {} up", replicas(sts));
    }
    assert_eq!(
        sets["controller"].pointer("/spec/podManagementPolicy"),
        Some(&Value::from("Parallel")),
        "the voters start together"
    );

    let headless = object(&all, "Service", "pyralog-headless");
    assert_eq!(str_at(headless, "/spec/clusterIP"), "None");
    assert_eq!(
        headless.pointer("/spec/publishNotReadyAddresses"),
        Some(&Value::Bool(true)),
        "voters resolve each other before they are ready"
    );
    let client = object(&all, "Service", "pyralog");
    for (component, sts) in &sets {
        let pod = pod_labels(sts);
        assert!(selects(&labels(headless.pointer("/spec/selector")), &pod));
        assert_eq!(
            selects(&labels(client.pointer("/spec/selector")), &pod),
            *component == "broker",
            "clients start from the brokers"
        );
    }
}

/// The README's first `sh` block run in a scratch directory, with the real `pyralog` and a
/// stand-in `kubectl`: the keys of each Secret it creates (`--from-file` file names, or a
/// directory's files; `--from-literal` keys).
fn readme_secrets() -> BTreeMap<String, BTreeSet<String>> {
    let readme = read("deploy/kubernetes/README.md");
    let block = readme
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("an sh block in deploy/kubernetes/README.md");
    let dir = tempfile::tempdir().expect("tempdir");
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).expect("bin");
    stand_in(&bin, "kubectl", "echo \"$@\" >> kubectl.log\n");
    std::os::unix::fs::symlink(pyralog_e2e::pyralog_bin(), bin.join("pyralog")).expect("link");
    let out = Command::new("/bin/sh")
        .args(["-ec", block])
        .current_dir(dir.path())
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .output()
        .expect("sh");
    assert!(out.status.success(), "{block}: {out:?}");
    let log = std::fs::read_to_string(dir.path().join("kubectl.log")).expect("kubectl ran");
    let mut secrets: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in log.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some([name, args @ ..]) = words.strip_prefix(&["create", "secret", "generic"][..])
        else {
            panic!("kubectl {line}");
        };
        let keys = secrets.entry((*name).to_owned()).or_default();
        for arg in args {
            if let Some(literal) = arg.strip_prefix("--from-literal=") {
                keys.insert(literal.split('=').next().unwrap_or_default().to_owned());
            } else if let Some(path) = arg.strip_prefix("--from-file=") {
                let path = dir.path().join(path);
                let files: Vec<PathBuf> = match std::fs::read_dir(&path) {
                    Ok(entries) => entries.map(|e| e.expect("entry").path()).collect(),
                    Err(_) => vec![path],
                };
                for f in files {
                    assert!(f.is_file(), "{line}: {f:?}");
                    keys.insert(
                        f.file_name()
                            .expect("a name")
                            .to_string_lossy()
                            .into_owned(),
                    );
                }
            } else {
                panic!("kubectl {line}: {arg}");
            }
        }
    }
    secrets
}

#[test]
fn the_readme_creates_every_secret_key_the_pods_read() {
    let all = manifests();
    // Secret → the keys pods read of it, by environment variable or as a mounted file.
    let mut read_keys: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let pods = pods(&all);
    for pod in &pods {
        let c = container(pod.sts);
        assert!(c.get("envFrom").is_none(), "secrets by key only");
        for e in c["env"].as_array().expect("env") {
            if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
                let keys = read_keys.entry(str_at(r, "/name").to_owned()).or_default();
                keys.insert(str_at(r, "/key").to_owned());
            }
        }
        for file in pod.secret_files() {
            let (at, volume) = mount_of(c, file).unwrap_or_else(|| panic!("{file:?} not mounted"));
            let name = str_at(pod_volume(pod.sts, &volume), "/secret/secretName");
            let key = file.strip_prefix(&at).expect("under the mount");
            let keys = read_keys.entry(name.to_owned()).or_default();
            keys.insert(key.to_str().expect("utf-8").to_owned());
        }
    }
    assert!(read_keys.len() >= 3, "{read_keys:?}");
    assert!(
        read_keys["pyralog-tls"].len() == 2 * pods.len() + 1,
        "every pod's certificate and key, and the CA"
    );

    let created = readme_secrets();
    for (name, keys) in &read_keys {
        let have = created
            .get(name)
            .unwrap_or_else(|| panic!("README.md shows no way to create Secret {name}"));
        let missing: Vec<_> = keys.difference(have).collect();
        assert!(missing.is_empty(), "Secret {name} lacks {missing:?}");
        assert!(
            !all.iter()
                .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name.as_str()),
            "no Secret values in the repository: {name}"
        );
    }
    for (name, keys) in &created {
        assert!(
            !keys.contains("ca-key.pem"),
            "the CA key stays out of {name}"
        );
    }
}

#[test]
fn the_dockerfile_builds_in_stages_and_runs_unprivileged_on_the_listener_ports() {
    let dockerfile = read("Dockerfile");
    let lines: Vec<&str> = dockerfile
        .lines()
        .map(str::trim)
        .filter(|l| !l.starts_with('#'))
        .collect();
    let words = |prefix: &str| -> Vec<Vec<String>> {
        lines
            .iter()
            .filter_map(|l| l.strip_prefix(prefix))
            .map(|rest| rest.split_whitespace().map(str::to_owned).collect())
            .collect()
    };
    let froms = words("FROM ");
    assert!(froms.len() >= 2, "a build stage and a runtime stage");
    assert!(froms[0][0].starts_with("rust:"), "{froms:?}");
    let runtime = &froms[froms.len() - 1][0];
    assert!(
        runtime.contains("slim") || runtime.contains("distroless"),
        "a slim runtime image: {runtime}"
    );
    assert!(
        dockerfile.contains("--bin pyralog"),
        "builds the pyralog binary"
    );
    assert!(
        dockerfile.contains("--locked"),
        "with the committed Cargo.lock"
    );
    assert!(dockerfile.contains("COPY --from=builder"));

    let users = words("USER ");
    let user = users.last().expect("a USER").join(" ");
    let uid = user.split(':').next().unwrap_or_default();
    assert!(
        uid != "root" && uid != "0" && !uid.is_empty(),
        "runs as {user}"
    );

    let all = manifests();
    let sets = statefulsets(&all);
    for sts in sets.values() {
        assert_eq!(
            sts.pointer("/spec/template/spec/securityContext/runAsUser")
                .and_then(Value::as_u64)
                .map(|u| u.to_string())
                .as_deref(),
            Some(uid),
            "the pods run as the image's user"
        );
    }
    let (_, config) = configmap_config(&all);
    let exposed: BTreeSet<u16> = words("EXPOSE ")
        .concat()
        .iter()
        .map(|p| p.parse().expect("a port"))
        .collect();
    assert_eq!(
        exposed,
        listener_ports(&config),
        "EXPOSE = the cluster's ports"
    );

    // The image's own config: a valid node, listening on exposed ports, data in the volume.
    let entrypoint = dockerfile
        .lines()
        .find_map(|l| l.strip_prefix("ENTRYPOINT "))
        .expect("ENTRYPOINT");
    let entrypoint: Vec<String> = serde_json::from_str(entrypoint).expect("exec form");
    assert_eq!(entrypoint[..3], ["pyralog", "serve", "--config"]);
    let copied = words("COPY ")
        .into_iter()
        .find(|w| w.last() == entrypoint.get(3))
        .expect("the config file is copied into the image");
    let image_config: NodeConfig = toml::from_str(&read(&copied[0])).expect("image config");
    image_config.validate().expect("valid");
    assert!(listener_ports(&image_config).is_subset(&exposed));
    let volumes = words("VOLUME ").concat().join(" ");
    assert!(
        volumes.contains(&format!("{:?}", image_config.data_dir)),
        "data_dir {:?} is a volume: {volumes}",
        image_config.data_dir
    );
    assert_eq!(image_config.data_dir, config.data_dir);
    for sts in sets.values() {
        assert_eq!(
            start_script(container(sts))
                .lines()
                .find_map(|l| l.trim().strip_prefix("exec "))
                .map(|cmd| cmd.split(' ').map(str::to_owned).collect::<Vec<_>>()),
            Some(entrypoint.clone()),
            "the pods run the image's entrypoint"
        );
    }

    let ignore = read(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}

/// Sample names of a Prometheus text exposition (`pyralog_errors_total`, `..._bucket`).
fn sample_names(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| l.starts_with("pyralog_"))
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_owned)
        .collect()
}

/// Every metric of the node's registry, each family given one sample: the names of metrics
/// that a running node shows only after a rare event (a damaged segment, a refused
/// connection, a duplicate batch).
fn registry_names() -> BTreeSet<String> {
    use pyralog_gateway::metrics::{
        ConnLabels, ErrorLabels, ListenerLabels, LogLabels, Metrics, PartitionLabels,
    };
    let m = Metrics::new();
    let log = LogLabels { log: "l".into() };
    m.produced_records.get_or_create(&log).inc();
    m.produced_bytes.get_or_create(&log).inc();
    m.duplicate_batches.get_or_create(&log).inc();
    m.fetched_bytes.get_or_create(&log).inc();
    m.compaction_lag_records.get_or_create(&log).set(1);
    m.errors
        .get_or_create(&ErrorLabels {
            rpc: "r".into(),
            reason: "x".into(),
        })
        .inc();
    m.corrupt_segments
        .get_or_create(&PartitionLabels {
            log: "l".into(),
            partition: 0,
        })
        .set(1);
    let conn = ConnLabels {
        listener: "client".into(),
        reason: "x".into(),
    };
    m.connections_refused.get_or_create(&conn).inc();
    m.connections_closed.get_or_create(&conn).inc();
    m.connections_open
        .get_or_create(&ListenerLabels {
            listener: "client".into(),
        })
        .set(1);
    sample_names(&m.encode())
}

/// `pyralog_*` names in a PromQL expression.
fn promql_metrics(expr: &str) -> BTreeSet<String> {
    expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .filter(|w| w.starts_with("pyralog_"))
        .map(str::to_owned)
        .collect()
}

#[test]
fn every_metric_the_dashboard_charts_is_one_a_running_node_exports() {
    let dashboard: Value =
        serde_json::from_str(&read("deploy/grafana/pyralog.json")).expect("dashboard JSON");
    assert!(!str_at(&dashboard, "/title").is_empty());
    assert!(!str_at(&dashboard, "/uid").is_empty());
    let templating = dashboard
        .pointer("/templating/list")
        .and_then(Value::as_array)
        .expect("templating");
    assert!(
        templating
            .iter()
            .any(|t| t["name"] == "datasource" && t["query"] == "prometheus"),
        "a Prometheus data source variable"
    );

    let mut charted: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut ids = BTreeSet::new();
    let panels = dashboard["panels"].as_array().expect("panels");
    for p in panels {
        let title = str_at(p, "/title").to_owned();
        assert!(ids.insert(p["id"].as_u64().expect("panel id")), "id twice");
        assert!(p.pointer("/gridPos/w").is_some(), "{title} placed");
        if p["type"] == "row" {
            continue;
        }
        assert_eq!(str_at(p, "/datasource/uid"), "${datasource}", "{title}");
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title} charts something");
        for t in targets {
            let found = promql_metrics(str_at(t, "/expr"));
            assert!(!found.is_empty(), "{title}: {t}");
            for m in found {
                charted.entry(m).or_default().push(title.clone());
            }
        }
    }
    for t in templating {
        if let Some(q) = t.pointer("/query/query").and_then(Value::as_str) {
            for m in promql_metrics(q) {
                charted
                    .entry(m)
                    .or_default()
                    .push(format!("${}", t["name"]));
            }
        }
    }

    // A real node, after produce, fetch and a refused produce.
    let node = TestNode::start();
    for (args, input) in [
        (&["logs", "create", "charted"][..], None),
        (&["produce", "charted"][..], Some(&b"a\nb\nc\n"[..])),
        (&["consume", "charted", "--from-beginning"][..], None),
    ] {
        let out = node.cli(args, input);
        assert_eq!(out.code, Some(0), "{args:?}: {out:?}");
    }
    let out = node.cli(&["produce", "no-such-log"], Some(b"a\n"));
    assert_eq!(out.code, Some(2), "{out:?}");
    let scraped = sample_names(&node.scrape_metrics());
    for m in [
        "pyralog_produced_records_total",
        "pyralog_fetched_bytes_total",
        "pyralog_produce_seconds_bucket",
        "pyralog_errors_total",
    ] {
        assert!(scraped.contains(m), "{m} not in {scraped:?}");
    }
    let registry = registry_names();
    assert!(
        scraped.is_subset(&registry),
        "the registry is the node's: {:?}",
        scraped.difference(&registry).collect::<Vec<_>>()
    );
    let unknown: Vec<_> = charted
        .iter()
        .filter(|(m, _)| !scraped.contains(*m) && !registry.contains(*m))
        .collect();
    assert!(
        unknown.is_empty(),
        "charted but never exported: {unknown:?}"
    );
    // Every metric the node has is on the dashboard.
    let uncharted: Vec<_> = registry
        .iter()
        .filter(|m| {
            let family = m
                .trim_end_matches("_total")
                .trim_end_matches("_bucket")
                .trim_end_matches("_sum")
                .trim_end_matches("_count");
            !charted.keys().any(|c| c.starts_with(family))
        })
        .collect();
    assert!(uncharted.is_empty(), "not on the dashboard: {uncharted:?}");
}
