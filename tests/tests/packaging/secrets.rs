//! The README's commands create every Secret key the pods read.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

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
