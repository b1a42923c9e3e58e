//! Reading the packaging files: the manifests as JSON values, the StatefulSets' pods as
//! they would start, the ConfigMap's config as the node parses it.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use pyralog_gateway::NodeConfig;
use serde::Deserialize;
use serde_json::Value;

/// The namespace the pods are taken to run in.
pub(crate) const NAMESPACE: &str = "ns";

pub(crate) fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

pub(crate) fn read(rel: &str) -> String {
    let path = repo().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {v}"))
}

pub(crate) fn port_at(v: &Value, pointer: &str) -> u16 {
    v.pointer(pointer)
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or_else(|| panic!("no port at {pointer} in {v}"))
}

/// Every document of a YAML file, as JSON values (empty documents skipped).
pub(crate) fn yaml_documents(rel: &str) -> Vec<Value> {
    let text = read(rel);
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| Value::deserialize(doc).unwrap_or_else(|e| panic!("{rel}: {e}")))
        .filter(|v| !v.is_null())
        .collect()
}

/// The resources `deploy/kubernetes/kustomization.yaml` applies.
pub(crate) fn kustomize_resources() -> Vec<String> {
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
pub(crate) fn manifests() -> Vec<Value> {
    kustomize_resources()
        .iter()
        .flat_map(|f| yaml_documents(&format!("deploy/kubernetes/{f}")))
        .collect()
}

pub(crate) fn object<'a>(all: &'a [Value], kind: &str, name: &str) -> &'a Value {
    all.iter()
        .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

pub(crate) fn of_kind<'a>(all: &'a [Value], kind: &str) -> Vec<&'a Value> {
    all.iter().filter(|o| o["kind"] == kind).collect()
}

pub(crate) const COMPONENT: &str = "/spec/template/metadata/labels/app.kubernetes.io~1component";

/// The StatefulSets by their pods' `app.kubernetes.io/component`: the controller voters and
/// the brokers.
pub(crate) fn statefulsets(all: &[Value]) -> BTreeMap<&str, &Value> {
    let sets = of_kind(all, "StatefulSet");
    let by: BTreeMap<&str, &Value> = sets.iter().map(|s| (str_at(s, COMPONENT), *s)).collect();
    assert_eq!(sets.len(), 2, "a controller and a broker StatefulSet");
    assert_eq!(
        by.keys().copied().collect::<Vec<_>>(),
        ["broker", "controller"]
    );
    by
}

pub(crate) fn replicas(sts: &Value) -> u64 {
    sts.pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .expect("replicas")
}

pub(crate) fn container(sts: &Value) -> &Value {
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
pub(crate) fn configmap_config(all: &[Value]) -> (String, NodeConfig) {
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
pub(crate) fn listener_ports(config: &NodeConfig) -> BTreeSet<u16> {
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

pub(crate) fn container_ports(c: &Value) -> BTreeMap<String, u16> {
    c["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (str_at(p, "/name").to_owned(), port_at(p, "/containerPort")))
        .collect()
}

/// The start script of the container (`sh -c SCRIPT`).
pub(crate) fn start_script(c: &Value) -> &str {
    assert_eq!(c["command"], serde_json::json!(["/bin/sh", "-c"]), "{c}");
    str_at(c, "/args/0")
}

/// `CLUSTER__ADVERTISE` → `["cluster", "advertise"]`, as the node splits `PYRALOG_*`.
pub(crate) fn env_key_path(name: &str) -> Vec<String> {
    name.split("__").map(str::to_ascii_lowercase).collect()
}

/// Sets `path` of a serialized config to `value` (a number where the key holds one); the key
/// must exist: an environment variable that names no setting is a mistake.
pub(crate) fn set_key(config: &mut Value, path: &[String], value: &str) {
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
pub(crate) fn mounts(c: &Value) -> BTreeMap<String, String> {
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
pub(crate) fn mount_of(c: &Value, path: &Path) -> Option<(String, String)> {
    mounts(c)
        .into_iter()
        .filter(|(at, _)| path.starts_with(at))
        .max_by_key(|(at, _)| at.len())
}

pub(crate) fn pod_volume<'a>(sts: &'a Value, name: &str) -> &'a Value {
    sts.pointer("/spec/template/spec/volumes")
        .and_then(Value::as_array)
        .and_then(|v| v.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no pod volume {name}"))
}

pub(crate) fn labels(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), v.as_str().expect("a label value").to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

pub(crate) fn pod_labels(sts: &Value) -> BTreeMap<String, String> {
    labels(sts.pointer("/spec/template/metadata/labels"))
}

pub(crate) fn selects(selector: &BTreeMap<String, String>, pod: &BTreeMap<String, String>) -> bool {
    !selector.is_empty() && selector.iter().all(|(k, v)| pod.get(k) == Some(v))
}

/// Writes an executable `sh` script `name` into `dir`.
pub(crate) fn stand_in(dir: &Path, name: &str, body: &str) {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}")).expect("write stand-in");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// The container's environment in pod `pod`, as the kubelet sets it: `$(VAR)` names a
/// variable defined above it; a value from a Secret is a stand-in.
pub(crate) fn pod_env(c: &Value, pod: &str) -> Vec<(String, String)> {
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
pub(crate) struct Pod<'a> {
    pub(crate) sts: &'a Value,
    pub(crate) component: &'a str,
    pub(crate) name: String,
    /// What its start script runs `pyralog` with.
    pub(crate) args: Vec<String>,
    /// The ConfigMap's config with the pod's `PYRALOG_*` variables applied.
    pub(crate) config: NodeConfig,
}

impl Pod<'_> {
    /// The files its config reads from Secrets: certificate, key, CA, metrics token.
    pub(crate) fn secret_files(&self) -> Vec<&PathBuf> {
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
pub(crate) fn pods(all: &[Value]) -> Vec<Pod<'_>> {
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
