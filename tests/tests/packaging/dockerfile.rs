//! The Dockerfile: build stages, runtime user, exposed ports.

use std::collections::BTreeSet;

use pyralog_gateway::NodeConfig;
use serde_json::Value;

use crate::support::*;

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
