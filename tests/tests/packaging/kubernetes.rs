//! The Kubernetes manifests: kustomization, per-pod config, ports, probes, selectors.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::support::*;

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
