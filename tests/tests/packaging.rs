//! The packaging files, checked without a container engine (issue 17): the `Dockerfile`, the
//! Kubernetes manifests in `deploy/kubernetes/` and the Grafana dashboard in `deploy/grafana/`.
//!
//! They are parsed and held to the node they package: the ConfigMap's `pyralog.toml` parses as
//! the node's own [`NodeConfig`] and validates for every pod of the StatefulSet (with what each
//! pod's start command sets), the ports the container and the image expose are exactly the
//! listeners that config opens, the probes ask gRPC health on the client listener, the
//! selectors pick the StatefulSet's pods, every Secret is documented, and every metric the
//! dashboard charts is one a running node exports.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use pyralog_e2e::TestNode;
use pyralog_gateway::NodeConfig;
use serde::Deserialize;
use serde_json::Value;

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

fn statefulset(all: &[Value]) -> &Value {
    let sets: Vec<&Value> = all.iter().filter(|o| o["kind"] == "StatefulSet").collect();
    assert_eq!(
        sets.len(),
        1,
        "one StatefulSet: every node is controller and broker"
    );
    sets[0]
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

/// `(config key path, value)` of each `export PYRALOG_...="..."` line of the start script,
/// for the pod of `ordinal`.
fn script_overrides(script: &str, ordinal: u64) -> Vec<(Vec<String>, String)> {
    let node_id = (ordinal + 1).to_string();
    script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("export PYRALOG_"))
        .map(|l| {
            let (name, value) = l.split_once('=').expect("NAME=value");
            let value = value
                .trim_matches('"')
                .replace("$((ordinal + 1))", &node_id)
                .replace("${PYRALOG_NODE_ID}", &node_id);
            assert!(!value.contains('$'), "unexpanded {value} in {l}");
            (env_key_path(name), value)
        })
        .collect()
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

/// The volume mounted at `path` or at a directory above it.
fn volume_of(c: &Value, path: &Path) -> Option<String> {
    mounts(c)
        .into_iter()
        .filter(|(at, _)| path.starts_with(at))
        .max_by_key(|(at, _)| at.len())
        .map(|(_, name)| name)
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

fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
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
    for o in &all {
        for field in ["/apiVersion", "/kind", "/metadata/name"] {
            assert!(!str_at(o, field).is_empty(), "{field} empty in {o}");
        }
        assert!(
            o.pointer("/metadata/namespace").is_none(),
            "no fixed namespace (kubectl -n picks it): {o}"
        );
        kinds.insert(format!(
            "{} {}",
            str_at(o, "/apiVersion"),
            str_at(o, "/kind")
        ));
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
fn the_configmap_is_a_node_config_that_validates_for_every_pod() {
    let all = manifests();
    let sts = statefulset(&all);
    let c = container(sts);
    let (text, config) = configmap_config(&all);
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .expect("replicas");
    let service = str_at(sts, "/spec/serviceName");
    let name = str_at(sts, "/metadata/name");
    let cluster = config.cluster.as_ref().expect("a [cluster] section");

    // The voters are the StatefulSet's pods, by their names under the headless Service.
    let voters = cluster.voter_map().expect("voters");
    let want: BTreeMap<u64, String> = (0..replicas)
        .map(|i| {
            (
                i + 1,
                format!("{name}-{i}.{service}:{}", cluster.listen.port()),
            )
        })
        .collect();
    assert_eq!(voters, want, "one voter per pod: {text}");

    // What the start script and the environment set per pod names real settings, and the
    // config validates for each pod with it.
    let script = start_script(c);
    assert!(
        script.contains("export PYRALOG_NODE_ID=\"$((ordinal + 1))\""),
        "{script}"
    );
    let serve = script
        .lines()
        .find_map(|l| l.trim().strip_prefix("exec pyralog serve --config "))
        .expect("exec pyralog serve --config FILE");
    let env: Vec<&Value> = c["env"].as_array().expect("env").iter().collect();
    let advertise = env
        .iter()
        .find(|e| e["name"] == "PYRALOG_CLUSTER__ADVERTISE")
        .map(|e| str_at(e, "/value"))
        .expect("PYRALOG_CLUSTER__ADVERTISE");
    assert_eq!(
        advertise,
        format!(
            "$(POD_NAME).{service}.$(POD_NAMESPACE).svc.cluster.local:{}",
            config.listen.port()
        )
    );
    for e in &env {
        if let Some(var) = str_at(e, "/name").strip_prefix("PYRALOG_") {
            let mut value = serde_json::to_value(&config).expect("serialize");
            set_key(&mut value, &env_key_path(var), "x");
        }
    }
    for ordinal in 0..replicas {
        let mut value = serde_json::to_value(&config).expect("serialize");
        set_key(
            &mut value,
            &env_key_path("CLUSTER__ADVERTISE"),
            &format!("{name}-{ordinal}.{service}.ns.svc.cluster.local:7410"),
        );
        let overrides = script_overrides(script, ordinal);
        assert!(overrides.len() >= 3, "{script}");
        for (path, v) in &overrides {
            set_key(&mut value, path, v);
        }
        let pod: NodeConfig = serde_json::from_value(value).expect("pod config");
        pod.validate()
            .unwrap_or_else(|e| panic!("pod {ordinal}: {e}"));
        assert_eq!(pod.node_id, ordinal + 1);
        let tls = pod.security.cluster_tls.as_ref().expect("cluster_tls");
        assert!(
            tls.cert
                .ends_with(format!("node-{}.pem", ordinal + 1).as_str()),
            "pod {ordinal} presents its own certificate: {}",
            tls.cert.display()
        );
        // Every file the pod's config names is in a mounted Secret or ConfigMap volume.
        let files = [&tls.cert, &tls.key, &tls.ca]
            .into_iter()
            .chain(pod.security.metrics_token_file.as_ref());
        for file in files {
            let volume = volume_of(c, file).unwrap_or_else(|| panic!("{file:?} not mounted"));
            assert!(
                pod_volume(sts, &volume).get("secret").is_some(),
                "{file:?} comes from a Secret"
            );
        }
    }

    // The config file and the data directory are where the pod mounts them.
    let mounted = mounts(c);
    assert_eq!(mounted.get(serve).map(String::as_str), Some("config"));
    assert_eq!(
        str_at(pod_volume(sts, "config"), "/configMap/name"),
        "pyralog-config"
    );
    let data = config.data_dir.to_str().expect("utf-8 path");
    let claim = mounted.get(data).expect("data_dir mounted");
    let claims = sts
        .pointer("/spec/volumeClaimTemplates")
        .and_then(Value::as_array)
        .expect("volumeClaimTemplates");
    assert!(
        claims
            .iter()
            .any(|t| t["metadata"]["name"] == claim.as_str()),
        "data_dir {data} is a persistent volume"
    );
}

#[test]
fn the_container_exposes_exactly_the_listeners_of_its_config() {
    let all = manifests();
    let sts = statefulset(&all);
    let c = container(sts);
    let (_, config) = configmap_config(&all);
    let ports = container_ports(c);
    let exposed: BTreeSet<u16> = ports.values().copied().collect();
    assert_eq!(exposed, listener_ports(&config), "{ports:?}");
    assert_eq!(ports.get("client"), Some(&config.listen.port()));
    assert_eq!(
        ports.get("cluster"),
        config.cluster.as_ref().map(|c| c.listen.port()).as_ref()
    );
    assert_eq!(
        ports.get("metrics"),
        config.metrics_listen.map(|a| a.port()).as_ref()
    );
    for addr in listener_ports(&config) {
        assert_ne!(addr, 0, "fixed ports");
    }
    assert!(
        config.listen.ip().is_unspecified(),
        "the client listener binds every interface"
    );

    // Every Service port targets a container port by name, on the same number.
    for o in all.iter().filter(|o| o["kind"] == "Service") {
        for p in o
            .pointer("/spec/ports")
            .and_then(Value::as_array)
            .expect("ports")
        {
            let target = str_at(p, "/targetPort");
            assert_eq!(
                ports.get(target),
                Some(&port_at(p, "/port")),
                "{} port {p}",
                o["metadata"]["name"]
            );
        }
    }
}

#[test]
fn probes_ask_grpc_health_on_the_client_listener() {
    let all = manifests();
    let c = container(statefulset(&all));
    let (_, config) = configmap_config(&all);
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let p = c
            .get(probe)
            .unwrap_or_else(|| panic!("{probe} missing: {c}"));
        assert_eq!(
            port_at(p, "/grpc/port"),
            config.listen.port(),
            "{probe} asks grpc.health.v1 on the client listener"
        );
        assert!(
            p.get("grpc").and_then(|g| g.get("service")).is_none(),
            "{probe}: the overall health, not one service"
        );
    }
    // The kubelet's gRPC probe speaks no TLS: a TLS client listener would fail every probe.
    assert!(
        config.security.tls.is_none(),
        "grpc probes need a plaintext client listener (see deploy/kubernetes/README.md)"
    );
}

#[test]
fn the_budget_and_both_services_select_the_statefulset_pods() {
    let all = manifests();
    let sts = statefulset(&all);
    let pod = labels(sts.pointer("/spec/template/metadata/labels"));
    let own = labels(sts.pointer("/spec/selector/matchLabels"));
    assert!(selects(&own, &pod), "the StatefulSet selects its pods");

    let pdbs: Vec<&Value> = all
        .iter()
        .filter(|o| o["kind"] == "PodDisruptionBudget")
        .collect();
    assert_eq!(pdbs.len(), 1);
    assert_eq!(
        pdbs[0].pointer("/spec/maxUnavailable"),
        Some(&Value::from(1))
    );
    assert_eq!(
        labels(pdbs[0].pointer("/spec/selector/matchLabels")),
        own,
        "the budget covers exactly the StatefulSet's pods"
    );

    let headless = object(&all, "Service", str_at(sts, "/spec/serviceName"));
    assert_eq!(str_at(headless, "/spec/clusterIP"), "None");
    assert_eq!(
        headless.pointer("/spec/publishNotReadyAddresses"),
        Some(&Value::Bool(true)),
        "voters resolve each other before they are ready"
    );
    assert!(selects(&labels(headless.pointer("/spec/selector")), &pod));
    let client = object(&all, "Service", "pyralog");
    assert!(selects(&labels(client.pointer("/spec/selector")), &pod));
    assert_eq!(
        sts.pointer("/spec/podManagementPolicy"),
        Some(&Value::from("Parallel")),
        "the voters start together"
    );
}

#[test]
fn every_secret_the_pods_use_is_documented_with_its_keys_and_files() {
    let all = manifests();
    let sts = statefulset(&all);
    let c = container(sts);
    let (_, config) = configmap_config(&all);
    let readme = read("deploy/kubernetes/README.md");
    let creates = |name: &str| {
        readme
            .lines()
            .find(|l| l.contains(&format!("kubectl create secret generic {name} ")))
            .is_some()
    };
    let mut secrets = BTreeSet::new();
    for v in sts
        .pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .expect("volumes")
    {
        if let Some(name) = v.pointer("/secret/secretName").and_then(Value::as_str) {
            secrets.insert(name.to_owned());
        }
    }
    for e in c["env"].as_array().expect("env") {
        if let Some(r) = e.pointer("/valueFrom/secretKeyRef") {
            let (name, key) = (str_at(r, "/name"), str_at(r, "/key"));
            secrets.insert(name.to_owned());
            assert!(
                readme.contains(&format!("--from-literal={key}=")),
                "key {key} of {name} documented"
            );
        }
    }
    assert!(c.get("envFrom").is_none(), "secrets by key only");
    assert!(secrets.len() >= 3, "{secrets:?}");
    for name in &secrets {
        assert!(creates(name), "README.md shows how to create Secret {name}");
        assert!(
            !all.iter()
                .any(|o| o["kind"] == "Secret" && o["metadata"]["name"] == name.as_str()),
            "no Secret values in the repository: {name}"
        );
    }
    // The TLS Secret holds the CA and every node's certificate and key, by the file names
    // the config asks for.
    let tls = config.security.cluster_tls.as_ref().expect("cluster_tls");
    let replicas = sts
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .expect("replicas");
    let mut files = vec![tls.ca.clone()];
    for id in 1..=replicas {
        files.push(PathBuf::from(format!("node-{id}.pem")));
        files.push(PathBuf::from(format!("node-{id}-key.pem")));
    }
    let tls_line: String = readme
        .split("kubectl create secret generic pyralog-tls")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .expect("pyralog-tls command")
        .to_owned();
    for f in files {
        let file = f.file_name().and_then(|n| n.to_str()).expect("file name");
        assert!(
            tls_line.contains(&format!("/{file}")),
            "{file} goes into pyralog-tls"
        );
    }
    assert!(!tls_line.contains("ca-key.pem"), "the CA key stays out");
    let token = config.security.metrics_token_file.as_ref().expect("token");
    let token = token.file_name().and_then(|n| n.to_str()).expect("name");
    assert!(readme.contains(&format!("pyralog-metrics-token --from-file={token}")));
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
    let sts = statefulset(&all);
    assert_eq!(
        sts.pointer("/spec/template/spec/securityContext/runAsUser")
            .and_then(Value::as_u64)
            .map(|u| u.to_string())
            .as_deref(),
        Some(uid),
        "the pods run as the image's user"
    );
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
    assert_eq!(
        start_script(container(sts))
            .lines()
            .find_map(|l| l.trim().strip_prefix("exec "))
            .map(|cmd| cmd.split(' ').map(str::to_owned).collect::<Vec<_>>()),
        Some(entrypoint),
        "the pods run the image's entrypoint"
    );

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
