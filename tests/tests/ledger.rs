//! Ledger logs against the S3 test server: a real node archives a ledger log, and
//! `pyralog ledger` verifies it from the bucket alone (no node), proves records into signed
//! checkpoints, carries an old proof to a newer checkpoint across a restart, and names what
//! an attacker with write access to the bucket broke. Deleting a ledger log takes an
//! explicit break-glass flag. A record altered on a replica's disk (its batch CRC recomputed)
//! is named by the replica's chain journal and never reaches the archive.

use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_client::{Client, ProduceRecord, Producer, ProducerConfig};
use pyralog_e2e::{unique, CliOutput, ColdStore, TestCluster, TestNode};
use pyralog_proto::v1;
use pyralog_types::LogOffset;

const LOG: &str = "payments";

fn record(i: u64) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(format!("account-{}", i % 13))),
        value: Some(Bytes::from(format!(
            "{{\"n\":{i},\"amount\":{},\"memo\":\"{}\"}}",
            i * 7,
            "m".repeat(100)
        ))),
        headers: Vec::new(),
        timestamp: None,
        partition: None,
        dedup_id: None,
    }
}

async fn produce(client: &Client, range: std::ops::Range<u64>) {
    produce_unrolled(client, range).await;
    client.roll_segments(LOG, Vec::new()).await.expect("roll");
}

/// Produces `range`, acknowledged, and leaves the records in the active segment.
async fn produce_unrolled(client: &Client, range: std::ops::Range<u64>) {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 8 << 10,
            ..ProducerConfig::default()
        },
    );
    let mut acks = Vec::new();
    for i in range {
        acks.push(producer.send(LOG, record(i)).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("ack");
    }
    producer.close().await.expect("close");
}

/// Waits until every partition is archived through its high watermark.
async fn await_archived(client: &Client, node: &TestNode) {
    let t = Instant::now();
    loop {
        let d = client.describe_log(LOG).await.expect("describe");
        let done = d.partitions.iter().all(|p| {
            p.archive
                .as_ref()
                .is_some_and(|a| a.end_offset == p.high_watermark)
        });
        if done {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "never archived: {d:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `pyralog ledger keygen`: a key file for the node, and its public half from the output.
fn keygen(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let file = dir.join("ledger.key");
    let out = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .args(["ledger", "keygen", "--out"])
        .arg(&file)
        .output()
        .expect("keygen");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{stdout}");
    let public = stdout
        .strip_prefix("public key ")
        .and_then(|s| s.split_whitespace().next())
        .expect("the public key is printed")
        .to_owned();
    // A second keygen never overwrites a key.
    let again = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .args(["ledger", "keygen", "--out"])
        .arg(&file)
        .output()
        .expect("keygen");
    assert_eq!(again.status.code(), Some(2));
    (file, public)
}

fn bucket_args(prefix: &str) -> Vec<String> {
    let c = ColdStore::S3.config(prefix);
    vec![
        "--object-store".into(),
        c.url,
        "--endpoint".into(),
        c.endpoint.expect("endpoint"),
        "--region".into(),
        "us-east-1".into(),
        "--allow-http".into(),
    ]
}

fn ledger(node: &TestNode, args: &[&str], prefix: &str) -> CliOutput {
    let mut all: Vec<String> = vec!["ledger".into()];
    all.extend(args.iter().map(|s| s.to_string()));
    all.extend(bucket_args(prefix));
    let refs: Vec<&str> = all.iter().map(String::as_str).collect();
    node.cli(&refs, None)
}

/// Verifies until every partition has a checkpoint through its archive (checkpoints are
/// written right after each commit, in the archiver's tick).
fn verify_clean(node: &TestNode, prefix: &str, key: &str) -> CliOutput {
    let t = Instant::now();
    loop {
        let out = ledger(node, &["verify", LOG, "--public-key", key], prefix);
        assert_eq!(out.code, Some(0), "verify must pass: {out:?}");
        if !out.stdout.contains("no valid checkpoint") {
            return out;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no checkpoint: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ledger_verifies_from_the_bucket_proves_records_and_names_tampering() {
    let prefix = unique("ledger");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key_file, key) = keygen(keys.path());
    let mut env = ColdStore::S3.node_env(&prefix);
    env.push((
        "PYRALOG_COLD_TIER__LEDGER_SIGNING_KEY".into(),
        key_file.display().to_string(),
    ));
    let mut node = TestNode::start_with_env(&env);
    let client = node.client().await;

    // A ledger refuses compaction at creation.
    let refused = client
        .create_log(
            "refused",
            v1::LogConfig {
                integrity: v1::Integrity::Ledger as i32,
                compaction: v1::CompactionMode::KeyBased as i32,
                ..Default::default()
            },
        )
        .await
        .expect_err("a compacted ledger");
    assert!(refused.to_string().contains("compaction"), "{refused}");

    client
        .create_log(
            LOG,
            v1::LogConfig {
                partition_count: Some(2),
                segment_bytes: Some(64 << 10),
                integrity: v1::Integrity::Ledger as i32,
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create the ledger");
    let d = client.describe_log(LOG).await.expect("describe");
    assert_eq!(
        d.config.retention,
        pyralog_types::Retention::Infinite,
        "a ledger keeps everything by default"
    );
    produce(&client, 0..3_000).await;
    await_archived(&client, &node).await;

    let out = verify_clean(&node, &prefix, &key);
    assert!(out.stdout.contains("3000 records"), "{out:?}");
    assert!(out.stdout.contains(": verified"), "{out:?}");

    // A proof of one record against the newest checkpoint, checked offline.
    let dir = tempfile::tempdir().expect("tempdir");
    let early = dir.path().join("early.json");
    let early_s = early.to_str().expect("path");
    let out = ledger(
        &node,
        &[
            "proof",
            LOG,
            "--partition",
            "0",
            "--offset",
            "5",
            "--out",
            early_s,
        ],
        &prefix,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let early_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&early).expect("proof")).expect("json");
    let early_size = early_json["checkpoint"]["checkpoint"]["tree_size"]
        .as_u64()
        .expect("tree size");
    let check = node.cli(
        &["ledger", "check-proof", early_s, "--public-key", &key],
        None,
    );
    assert_eq!(check.code, Some(0), "{check:?}");
    assert!(
        check.stdout.starts_with("ok: offset 5 of payments/0"),
        "{check:?}"
    );

    // A restart and more records: the chain continues, the old proof is carried to the
    // newer checkpoint by a consistency proof.
    node.stop();
    node.restart();
    let client = node.client().await;
    produce(&client, 3_000..5_000).await;
    await_archived(&client, &node).await;
    let out = verify_clean(&node, &prefix, &key);
    assert!(out.stdout.contains("5000 records"), "{out:?}");

    // A wiped disk: the node restores the log from the bucket and the chain goes on from
    // the last archived object's seal.
    node.stop();
    std::fs::remove_dir_all(node.data_dir()).expect("wipe the data dir");
    node.restart();
    let client = node.client().await;
    let d = client
        .describe_log(LOG)
        .await
        .expect("restored from the bucket");
    assert_eq!(
        d.config.integrity,
        pyralog_types::Integrity::Ledger,
        "still a ledger"
    );
    produce(&client, 5_000..6_000).await;
    await_archived(&client, &node).await;
    let out = verify_clean(&node, &prefix, &key);
    assert!(out.stdout.contains("6000 records"), "{out:?}");
    let newest = ledger(
        &node,
        &["verify", LOG, "--public-key", &key, "--json"],
        &prefix,
    );
    let report: serde_json::Value = serde_json::from_str(&newest.stdout).expect("json report");
    let newest_size = report["partitions"][0]["newest_checkpoint"]["tree_size"]
        .as_u64()
        .expect("a newest checkpoint");
    assert!(newest_size > early_size, "{report}");
    let link = dir.path().join("link.json");
    let link_s = link.to_str().expect("path");
    let out = ledger(
        &node,
        &[
            "consistency",
            LOG,
            "--partition",
            "0",
            "--from",
            &early_size.to_string(),
            "--to",
            &newest_size.to_string(),
            "--out",
            link_s,
        ],
        &prefix,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let check = node.cli(
        &["ledger", "check-proof", link_s, "--public-key", &key],
        None,
    );
    assert_eq!(check.code, Some(0), "{check:?}");
    let check = node.cli(
        &["ledger", "check-proof", early_s, "--public-key", &key],
        None,
    );
    assert_eq!(
        check.code,
        Some(0),
        "the early proof still holds: {check:?}"
    );
    let stranger = pyralog_ledger::SigningKey::generate()
        .verifying_key()
        .to_hex();
    let check = node.cli(
        &["ledger", "check-proof", early_s, "--public-key", &stranger],
        None,
    );
    assert_eq!(check.code, Some(1), "another key: {check:?}");

    // An attacker deletes an archived object: verify names it and fails.
    let store = pyralog_cold_tier::open_store(&ColdStore::S3.config(&prefix)).expect("store");
    let victim = report["partitions"][1]["objects"]
        .as_u64()
        .expect("objects");
    assert!(victim > 1, "{report}");
    let listed = client.describe_log(LOG).await.expect("describe");
    assert!(listed.partitions[1].archive.is_some());
    let manifest_dir = format!("{prefix}/_manifests/log={LOG}/partition=1");
    let mut versions: Vec<_> = futures::TryStreamExt::try_collect::<Vec<_>>(
        store.list(Some(&manifest_dir.as_str().into())),
    )
    .await
    .expect("list manifests");
    versions.sort_by(|a, b| a.location.cmp(&b.location));
    let newest_manifest = versions.last().expect("a manifest").location.clone();
    let manifest: serde_json::Value = serde_json::from_slice(
        &store
            .get(&newest_manifest)
            .await
            .expect("get")
            .bytes()
            .await
            .expect("bytes"),
    )
    .expect("manifest json");
    let object = manifest["segments"][1]["key"]
        .as_str()
        .expect("an object key")
        .to_owned();
    store
        .delete(&object.as_str().into())
        .await
        .expect("delete the object");
    let out = ledger(&node, &["verify", LOG, "--public-key", &key], &prefix);
    assert_eq!(out.code, Some(1), "{out:?}");
    assert!(
        out.stdout
            .contains(&format!("BROKEN: partition 1: object {object}")),
        "{out:?}"
    );

    // Deleting a ledger log needs break-glass.
    let out = node.cli(&["logs", "delete", LOG], None);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("break_glass"), "{out:?}");
    let out = node.cli(&["logs", "delete", LOG, "--break-glass"], None);
    assert_eq!(out.code, Some(0), "{out:?}");

    // The same name again is a new history: its checkpoints do not clash with the old ones.
    let t = Instant::now();
    loop {
        let created = client
            .create_log(
                LOG,
                v1::LogConfig {
                    integrity: v1::Integrity::Ledger as i32,
                    segment_bytes: Some(64 << 10),
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => break,
            // The deletion is still being applied: retry.
            Err(_) if t.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("create again: {e}"),
        }
    }
    produce(&client, 0..500).await;
    await_archived(&client, &node).await;
    let out = verify_clean(&node, &prefix, &key);
    assert!(out.stdout.contains("500 records"), "{out:?}");
}

/// The leader of partition 0 as node `ask` sees it, once it is not `not`.
async fn leader(cluster: &TestCluster, ask: u64, not: Option<u64>) -> u64 {
    let t = Instant::now();
    loop {
        if let Ok(c) = cluster.client(ask).await {
            if let Ok(d) = c.describe_log(LOG).await {
                let l = d.partitions[0].leader.as_ref().map(|(id, _)| *id);
                if let Some(l) = l.filter(|l| Some(*l) != not) {
                    if d.partitions[0].isr.len() >= 2 {
                        return l;
                    }
                }
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "no leader\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Three nodes on the S3 test server sharing one signing key (whichever node leads signs with
/// it), and the ledger log [`LOG`] on them: RF 3, min ISR 2, segments of `segment_bytes`.
async fn ledger_cluster(
    prefix: &str,
    key_file: &std::path::Path,
    segment_bytes: u64,
) -> TestCluster {
    let mut env = ColdStore::S3.node_env(prefix);
    env.push((
        "PYRALOG_COLD_TIER__LEDGER_SIGNING_KEY".into(),
        key_file.display().to_string(),
    ));
    let cluster = TestCluster::start(3, &env);
    let client = cluster.client(1).await.expect("connect");
    let t = Instant::now();
    loop {
        let created = client
            .create_log(
                LOG,
                v1::LogConfig {
                    replication_factor: Some(3),
                    min_in_sync_replicas: Some(2),
                    segment_bytes: Some(segment_bytes),
                    integrity: v1::Integrity::Ledger as i32,
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => return cluster,
            Err(e) if e.is_retriable() && t.elapsed() < Duration::from_secs(30) => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("create: {e}\n{}", cluster.logs()),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_proof_made_before_a_leader_failover_holds_against_a_checkpoint_made_after_it() {
    let prefix = unique("ledger-failover");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key_file, key) = keygen(keys.path());
    let mut cluster = ledger_cluster(&prefix, &key_file, 64 << 10).await;
    let first = leader(&cluster, 1, None).await;
    let on_leader = cluster.client(first).await.expect("connect");
    produce(&on_leader, 0..2_000).await;
    await_archived(&on_leader, &cluster.nodes[0]).await;
    let node = &cluster.nodes[0];
    verify_clean(node, &prefix, &key);
    let dir = tempfile::tempdir().expect("tempdir");
    let early = dir.path().join("early.json");
    let early_s = early.to_str().expect("path");
    let out = ledger(
        node,
        &[
            "proof",
            LOG,
            "--partition",
            "0",
            "--offset",
            "17",
            "--out",
            early_s,
        ],
        &prefix,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let early_json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&early).expect("proof")).expect("json");
    let early_size = early_json["checkpoint"]["checkpoint"]["tree_size"]
        .as_u64()
        .expect("tree size");

    // kill -9 the leader; another replica leads, archives and checkpoints from here.
    cluster.node(first).kill9();
    let ask = if first == 1 { 2 } else { 1 };
    let second = leader(&cluster, ask, Some(first)).await;
    let on_leader = cluster.client(second).await.expect("connect");
    produce(&on_leader, 2_000..4_000).await;
    await_archived(&on_leader, &cluster.nodes[(second - 1) as usize]).await;
    let node = &cluster.nodes[(second - 1) as usize];
    let out = verify_clean(node, &prefix, &key);
    assert!(out.stdout.contains("4000 records"), "{out:?}");
    let report = ledger(
        node,
        &["verify", LOG, "--public-key", &key, "--json"],
        &prefix,
    );
    let report: serde_json::Value = serde_json::from_str(&report.stdout).expect("json");
    let newest = report["partitions"][0]["newest_checkpoint"]["tree_size"]
        .as_u64()
        .expect("a newest checkpoint");
    assert!(newest > early_size, "{report}");
    let link = dir.path().join("link.json");
    let link_s = link.to_str().expect("path");
    let out = ledger(
        node,
        &[
            "consistency",
            LOG,
            "--partition",
            "0",
            "--from",
            &early_size.to_string(),
            "--to",
            &newest.to_string(),
            "--out",
            link_s,
        ],
        &prefix,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    for proof in [early_s, link_s] {
        let check = node.cli(
            &["ledger", "check-proof", proof, "--public-key", &key],
            None,
        );
        assert_eq!(check.code, Some(0), "{proof}: {check:?}");
    }
}

/// Changes `from` into `to` (same length) in the partition's segment that holds it and
/// recomputes every batch CRC of that file: damage no CRC check can see.
fn alter_on_disk(dir: &std::path::Path, from: &str, to: &str) {
    assert_eq!(from.len(), to.len());
    for entry in std::fs::read_dir(dir).expect("partition dir") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "log") {
            continue;
        }
        let mut bytes = std::fs::read(&path).expect("segment");
        let Some(at) = bytes.windows(from.len()).position(|w| w == from.as_bytes()) else {
            continue;
        };
        bytes[at..at + to.len()].copy_from_slice(to.as_bytes());
        let mut pos = 0;
        while pos < bytes.len() {
            let size = pyralog_types::batch::peek_size(&bytes[pos..]).expect("framing");
            pyralog_types::batch::reseal(&mut bytes[pos..pos + size]);
            pos += size;
        }
        std::fs::write(&path, bytes).expect("write segment");
        return;
    }
    panic!("no segment in {} holds {from}", dir.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_record_altered_on_a_replicas_disk_is_named_and_never_archived() {
    let prefix = unique("ledger-hot");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key_file, key) = keygen(keys.path());
    let mut env = ColdStore::S3.node_env(&prefix);
    env.push((
        "PYRALOG_COLD_TIER__LEDGER_SIGNING_KEY".into(),
        key_file.display().to_string(),
    ));
    let mut node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            LOG,
            v1::LogConfig {
                segment_bytes: Some(256 << 10),
                integrity: v1::Integrity::Ledger as i32,
                ..Default::default()
            },
        )
        .await
        .expect("create the ledger");
    produce(&client, 0..300).await;
    await_archived(&client, &node).await;
    // 300..900 stay in the active segment (not archived); then the node stops and record 700
    // is changed on its disk, CRC and all.
    produce_unrolled(&client, 300..900).await;
    node.stop();
    let dir = node.data_dir().join("logs").join(LOG).join("0");
    alter_on_disk(
        &dir,
        "{\"n\":700,\"amount\":4900",
        "{\"n\":700,\"amount\":9900",
    );
    node.restart();
    let client = node.client().await;

    // The segment closes; the archiver recomputes its chain, finds the altered batch and
    // stops before it: the archive still ends at 300, and the node names the batch.
    client.roll_segments(LOG, Vec::new()).await.expect("roll");
    let t = Instant::now();
    let (at, detail) = loop {
        let d = client.describe_log(LOG).await.expect("describe");
        if let Some(c) = d.partitions[0].corrupt.clone() {
            break c;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no corruption flag: {d:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        (300..=700).contains(&at.0) && detail.contains("ledger chain"),
        "{at}: {detail}"
    );
    assert!(
        detail.contains(&format!("{at}..")),
        "names the batch: {detail}"
    );
    let d = client.describe_log(LOG).await.expect("describe");
    let archived = d.partitions[0].archive.as_ref().map(|a| a.end_offset);
    assert_eq!(archived, Some(LogOffset(300)), "{d:?}");
    let out = node.cli(&["logs", "describe", LOG], None);
    assert!(
        out.stdout.contains("CORRUPT partition 0") && out.stdout.contains("ledger chain"),
        "{}",
        out.stdout
    );

    // Consumers get every record before the altered batch, then CORRUPT_DATA: never the
    // altered record.
    let mut c = pyralog_client::PartitionConsumer::new(
        client.clone(),
        LOG,
        0,
        LogOffset::ZERO,
        pyralog_client::ConsumerConfig {
            wait: Duration::ZERO,
            ..Default::default()
        },
    );
    let mut next = 0u64;
    let err = loop {
        match c.poll().await {
            Ok(records) => {
                assert!(!records.is_empty(), "stalled at {next}");
                for r in records {
                    assert_eq!(r.offset.0, next);
                    next += 1;
                }
            }
            Err(e) => break e,
        }
    };
    assert_eq!(next, at.0, "every record before the altered batch");
    assert_eq!(
        err.reason(),
        Some(pyralog_types::Reason::CorruptData),
        "{err}"
    );

    // The bucket holds only what was written: it verifies clean.
    let out = verify_clean(&node, &prefix, &key);
    assert!(out.stdout.contains("300 records"), "{out:?}");
    // A single replica cannot repair itself; it says where the damage starts.
    let out = node.cli(&["logs", "repair", LOG, "--partition", "0"], None);
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(
        format!("{}{}", out.stdout, out.stderr).contains(&format!("offset {at}")),
        "{out:?}"
    );
}

/// Waits until the leader lists all three replicas in the ISR with every record produced.
async fn await_isr(cluster: &TestCluster, leader: u64, len: usize, hw: u64) {
    let client = cluster.client(leader).await.expect("connect");
    let t = Instant::now();
    loop {
        let d = client.describe_log(LOG).await.expect("describe");
        let p = &d.partitions[0];
        if p.isr.len() == len && p.high_watermark == LogOffset(hw) {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "ISR of {len} at {hw} never reached: {d:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_followers_altered_copy_is_repaired_and_a_rewritten_one_is_not_extended() {
    let prefix = unique("ledger-replicas");
    let keys = tempfile::tempdir().expect("tempdir");
    let (key_file, _key) = keygen(keys.path());
    let mut cluster = ledger_cluster(&prefix, &key_file, 256 << 10).await;
    let first = leader(&cluster, 1, None).await;
    let on_leader = cluster.client(first).await.expect("connect");
    produce_unrolled(&on_leader, 0..600).await;
    await_isr(&cluster, first, 3, 600).await;
    let f = if first == 1 { 2 } else { 1 };
    let f_dir = cluster.nodes[(f - 1) as usize]
        .data_dir()
        .join("logs")
        .join(LOG)
        .join("0");

    // A follower's copy altered on its disk (CRC recomputed, its chain journal untouched):
    // it rejoins, and `logs repair` names the altered batch, cuts it and copies it again.
    cluster.node(f).stop();
    alter_on_disk(
        &f_dir,
        "{\"n\":400,\"amount\":2800",
        "{\"n\":400,\"amount\":2801",
    );
    cluster.node(f).restart();
    await_isr(&cluster, first, 3, 600).await;
    let out = cluster.cli(f, &["logs", "repair", LOG, "--partition", "0"], None);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", cluster.logs());
    let line = out
        .stdout
        .lines()
        .find(|l| l.starts_with(&format!("node {f}: damaged from offset")))
        .unwrap_or_else(|| panic!("{out:?}"));
    assert!(line.contains("ledger chain mismatch"), "{line}");
    let at: u64 = line
        .split("damaged from offset ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{line}"));
    assert!((300..=400).contains(&at), "the batch holding 400: {line}");
    assert_eq!(
        out.stdout.matches("healthy, nothing to repair").count(),
        2,
        "{out:?}"
    );
    // The copy fetched again hashes to the leader's chain: asked again, all are healthy.
    let t = Instant::now();
    loop {
        let out = cluster.cli(first, &["logs", "repair", LOG, "--partition", "0"], None);
        if out.code == Some(0) && out.stdout.matches("healthy, nothing to repair").count() == 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "{out:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Someone rewrites the follower's segment *and* its chain journal consistently: its own
    // copy agrees with itself, but not with the leader's chain, so it refuses to extend it.
    let first = leader(&cluster, first, None).await;
    let on_leader = cluster.client(first).await.expect("connect");
    let f = (1..=3).find(|n| *n != first).expect("a follower");
    let f_dir = cluster.nodes[(f - 1) as usize]
        .data_dir()
        .join("logs")
        .join(LOG)
        .join("0");
    await_isr(&cluster, first, 3, 600).await;
    cluster.node(f).stop();
    alter_on_disk(
        &f_dir,
        "{\"n\":500,\"amount\":3500",
        "{\"n\":500,\"amount\":3501",
    );
    std::fs::remove_file(f_dir.join("ledger.chain")).expect("remove the journal");
    cluster.node(f).restart();
    produce_unrolled(&on_leader, 600..700).await;
    let t = Instant::now();
    loop {
        let log = cluster.nodes[(f - 1) as usize].log();
        let d = on_leader.describe_log(LOG).await.expect("describe");
        let isr = &d.partitions[0].isr;
        if log.contains("this replica's head after offset 600") && !isr.contains(&f) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "node {f} (isr {isr:?}):\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
