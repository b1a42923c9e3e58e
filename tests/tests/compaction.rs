//! Compaction end to end: real `pyralog` processes, each object store of the suite (the S3
//! and Azure servers that `scripts/test.sh` starts, a local folder; see
//! `pyralog_e2e::stores`), and the standalone compactor killed mid-rewrite.
//!
//! - The standalone compactor (`pyralog compactor --config`) is `kill -9`ed at random points
//!   of its passes, 20 times or more (until 5 kills landed inside a pass), with new updates
//!   before each run. After each kill a node restarted on the bucket reads a valid state
//!   (every record is the one written at its offset, the latest record of every key is
//!   there); after the compactor is restarted and finishes a pass, the log reads exactly as
//!   the model: one record per key, the latest.
//! - Orphans of the killed runs are collected: the bucket ends up holding exactly the objects
//!   the manifest names.
//! - `pyralog compaction run` and `status` report the pass.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use pyralog_client::{
    ConsumerConfig, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
};
use pyralog_e2e::{pyralog_bin, unique, ColdStore, TestNode};
use pyralog_proto::v1;

/// Update `i`: 500 keys, 2% tombstones.
fn update(i: u64) -> (String, Option<String>) {
    let key = format!("k{:03}", (i * 7919) % 500);
    let value = (i % 50 != 7).then(|| format!("{{\"i\":{i},\"pad\":\"{}\"}}", "p".repeat(64)));
    (key, value)
}

/// Everything from offset 0 to `end`, as (offset, key, value).
async fn read_log(node: &TestNode, end: u64) -> Vec<(u64, String, Option<String>)> {
    let client = node.client().await;
    let mut c = PartitionConsumer::new(client, "state", 0, LogOffset(0), ConsumerConfig::default());
    let mut out = Vec::new();
    let t = Instant::now();
    loop {
        let records = c.poll().await.expect("poll");
        if records.is_empty() && c.position().0 >= end {
            return out;
        }
        assert!(t.elapsed() < Duration::from_secs(120), "read stalled");
        for r in records {
            let key = String::from_utf8(r.key.expect("key").to_vec()).expect("utf8");
            let value = r
                .value
                .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
            out.push((r.offset.0, key, value));
        }
    }
}

/// A valid state of the log: increasing offsets, each record the one written there, and the
/// latest record of every key present.
fn check_valid(read: &[(u64, String, Option<String>)], written: &[(String, Option<String>)]) {
    let mut latest: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, (k, _)) in written.iter().enumerate() {
        latest.insert(k, i as u64);
    }
    let mut prev = None;
    for (o, k, v) in read {
        assert!(prev < Some(*o), "offsets increase");
        prev = Some(*o);
        let (wk, wv) = &written[*o as usize];
        assert_eq!((k, v), (wk, wv), "record at offset {o}");
    }
    let offsets: std::collections::BTreeSet<u64> = read.iter().map(|r| r.0).collect();
    for (k, o) in &latest {
        assert!(
            offsets.contains(o),
            "the latest record of {k} (offset {o}) is readable"
        );
    }
}

/// Exactly the model: one record per key, the latest, at its offset.
fn check_model(read: &[(u64, String, Option<String>)], written: &[(String, Option<String>)]) {
    check_valid(read, written);
    let mut model: BTreeMap<&str, u64> = BTreeMap::new();
    for (i, (k, _)) in written.iter().enumerate() {
        model.insert(k, i as u64);
    }
    let mut want: Vec<u64> = model.values().copied().collect();
    want.sort_unstable();
    assert_eq!(
        read.iter().map(|r| r.0).collect::<Vec<_>>(),
        want,
        "exactly the latest record per key"
    );
}

/// Produces `count` more updates, rolls, and waits until all of it is archived and off the disk.
async fn produce_more(node: &TestNode, written: &mut Vec<(String, Option<String>)>, count: u64) {
    let client = node.client().await;
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut acks = Vec::new();
    let from = written.len() as u64;
    for i in from..from + count {
        let (k, v) = update(i);
        let record = ProduceRecord {
            key: Some(Bytes::from(k.clone())),
            value: v.clone().map(Bytes::from),
            headers: Vec::new(),
            timestamp: None,
            partition: Some(0),
            dedup_id: None,
        };
        acks.push(producer.send("state", record).await.expect("send"));
        written.push((k, v));
    }
    producer.flush().await.expect("flush");
    for ack in acks {
        ack.await.expect("ack");
    }
    producer.close().await.expect("close");
    client
        .roll_segments("state", Vec::new())
        .await
        .expect("roll");
    let t = Instant::now();
    loop {
        let d = client.describe_log("state").await.expect("describe");
        if d.partitions[0].local_segments == 1 {
            return;
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "archiving never finished"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_standalone_compactor_mid_rewrite_never_breaks_the_log_on_s3() {
    killing_the_compactor_mid_rewrite(ColdStore::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_standalone_compactor_mid_rewrite_never_breaks_the_log_on_azure() {
    killing_the_compactor_mid_rewrite(ColdStore::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_standalone_compactor_mid_rewrite_never_breaks_the_log_on_a_local_folder() {
    killing_the_compactor_mid_rewrite(ColdStore::LocalFolder).await;
}

async fn killing_the_compactor_mid_rewrite(store: ColdStore) {
    let prefix = unique("compactor-kill");
    let mut env = store.node_env(&prefix);
    // Only the standalone compactor compacts here.
    env.push(("PYRALOG_COMPACTION__ENABLED".into(), "false".into()));
    let mut node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            "state",
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(1 << 20),
                compaction: v1::CompactionMode::KeyBased as i32,
                retention: Some(v1::Retention::default()),
                // Archived segments leave the disk: reads come from the bucket.
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");

    let mut written: Vec<(String, Option<String>)> = Vec::new();
    produce_more(&node, &mut written, 40_000).await;
    check_valid(&read_log(&node, written.len() as u64).await, &written);

    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("compactor.toml");
    std::fs::write(
        &config,
        format!("interval = \"20ms\"\n{}", store.toml(&prefix)),
    )
    .expect("write config");
    let compactor_log = root.path().join("compactor.log");
    let spawn = |once: bool| {
        let mut cmd = Command::new(pyralog_bin());
        cmd.arg("compactor").arg("--config").arg(&config);
        if once {
            cmd.arg("--once");
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&compactor_log)
            .expect("log");
        cmd.env("RUST_LOG", "info,pyralog_compactor=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn compactor")
    };
    // How long one whole run takes (start-up and one pass over everything): kills land
    // uniformly inside that window.
    let t = Instant::now();
    assert!(spawn(true).wait().expect("calibration run").success());
    let window = t.elapsed().as_millis() as u64 + 1;
    // At least 20 kills, and more (up to 60) until 5 landed inside a pass: on a fast store
    // (a local folder) the pass is a small part of the window.
    let mut mid_pass = 0;
    let mut kills = 0;
    for round in 0..60u64 {
        if kills >= 20 && mid_pass >= 5 {
            break;
        }
        kills += 1;
        // New updates to every key each round: every segment has records to drop, so each
        // pass rewrites the whole archive and a kill lands inside a rewrite.
        produce_more(&node, &mut written, 3_000).await;
        let before = std::fs::read_to_string(&compactor_log)
            .unwrap_or_default()
            .len();
        let mut child = spawn(false);
        let nanos = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(round);
        std::thread::sleep(Duration::from_millis(nanos % window));
        child.kill().expect("kill -9");
        child.wait().expect("reap");
        let log = std::fs::read_to_string(&compactor_log).unwrap_or_default();
        if !log[before..].contains("compactor pass done") {
            mid_pass += 1;
        }
        // A node that has just loaded the manifest serves exactly what the bucket says: a
        // valid state wherever the kill landed.
        node.stop();
        node.restart();
        check_valid(&read_log(&node, written.len() as u64).await, &written);
        // The compactor restarted (one pass to completion): the log reads as the model.
        let status = spawn(true).wait().expect("compactor --once");
        assert!(status.success(), "restarted compactor failed");
        node.stop();
        node.restart();
        check_model(&read_log(&node, written.len() as u64).await, &written);
    }
    println!("{kills} kills in a {window} ms window, {mid_pass} before the first pass finished");
    assert!(
        mid_pass >= 5,
        "too few kills inside a pass ({mid_pass}) to mean anything"
    );

    // And once more at the end, from the last state.
    let status = spawn(true).wait().expect("compactor --once");
    assert!(
        status.success(),
        "compactor failed:\n{}",
        std::fs::read_to_string(&compactor_log).unwrap_or_default()
    );
    node.stop();
    node.restart();
    check_model(&read_log(&node, written.len() as u64).await, &written);

    // Objects left by the killed runs (uploaded, never committed) are collected: with no
    // grace period, and no Iceberg snapshot kept but the current one (older snapshots list
    // the replaced objects, which orphan collection keeps while they are readable), the
    // partition's directory holds exactly what the manifest names.
    std::fs::write(
        &config,
        format!(
            "interval = \"20ms\"\norphan_grace = \"0s\"\n{}[iceberg]\nmax_snapshot_age = \"0s\"\n",
            store.toml(&prefix)
        ),
    )
    .expect("write config");
    assert!(spawn(true).wait().expect("gc run").success());
    let store_cfg = store.config(&prefix);
    let objects = pyralog_cold_tier::open_store(&store_cfg).expect("store");
    let layout = store_cfg.layout().expect("layout");
    let log_id = pyralog_types::LogId::new("state").expect("log id");
    let (manifest, _) = pyralog_cold_tier::ManifestStore::new(objects.clone(), layout.clone())
        .load(&log_id, 0)
        .await
        .expect("load manifest")
        .expect("a manifest");
    let named: std::collections::BTreeSet<String> =
        manifest.segments.iter().map(|s| s.key.clone()).collect();
    let listed: Vec<object_store::ObjectMeta> =
        futures::TryStreamExt::try_collect(objects.list(Some(&layout.partition_dir(&log_id, 0))))
            .await
            .expect("list");
    let listed: std::collections::BTreeSet<String> =
        listed.into_iter().map(|o| o.location.to_string()).collect();
    assert_eq!(
        listed,
        named,
        "only committed segments remain in the bucket; compactor log:\n{}",
        std::fs::read_to_string(&compactor_log).unwrap_or_default()
    );

    // The admin path: a pass through the node finds nothing left, and status reports it.
    let run = node.cli(&["compaction", "run", "state"], None);
    assert_eq!(run.code, Some(0), "{}{}", run.stdout, run.stderr);
    let status = node.cli(&["compaction", "status", "state"], None);
    assert_eq!(status.code, Some(0), "{}", status.stderr);
    assert!(status.stdout.contains("key_based"), "{}", status.stdout);
    let unknown = node.cli(&["compaction", "run", "nope"], None);
    assert_eq!(unknown.code, Some(2), "unknown log is bad input");
    node.stop();
}
