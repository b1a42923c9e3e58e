//! Every archived log is an Iceberg table that SQL engines read without knowing Pyralog:
//! pyiceberg and DuckDB's iceberg extension (installed by `scripts/test.sh` into their own
//! virtualenv, `PYRALOG_LAKEHOUSE_PYTHON`) against the S3 test server.
//!
//! - After archiving, both engines count and sum exactly what was produced, on every
//!   partition, through the table's version hint as a static reader finds it.
//! - A filter on `timestamp` plans only the files of the matching day (records span three
//!   days, and objects are single-day files under the day partition spec).
//! - `DescribeLog` (and `pyralog logs describe`) report each partition's archive (start,
//!   archived-through offset, objects, bytes, last commit, whether the table has it) and the
//!   table's metadata file and snapshot.
//! - After key-based compaction (the standalone compactor) both engines return exactly the
//!   live records (the latest of every key), while the replaced objects are still in the
//!   bucket.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{ProduceRecord, Producer, ProducerConfig};
use pyralog_e2e::{env_or, pyralog_bin, unique, ColdStore, TestNode};
use pyralog_proto::v1;
use serde_json::Value;

const DAY_US: i64 = 86_400_000_000;
/// 2026-12-01T00:00:00Z.
const DAY0: i64 = 1_796_083_200_000_000;
const RECORDS: u64 = 6_000;
const PER_DAY: u64 = 2_000;
const KEYS: u64 = 40;

fn python() -> String {
    std::env::var("PYRALOG_LAKEHOUSE_PYTHON").unwrap_or_else(|_| {
        panic!(
            "PYRALOG_LAKEHOUSE_PYTHON is not set: scripts/test.sh installs pyiceberg and DuckDB \
             (tests/python/lakehouse-requirements.txt) into a virtualenv and sets it"
        )
    })
}

/// Runs `tests/python/iceberg_reader.py` on the log's table; `None` while the table is not
/// there yet (or not readable).
fn read_table(table_uri: &str, day: Option<&str>) -> Result<Value, String> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python());
    cmd.arg(here.join("python/iceberg_reader.py"))
        .arg(table_uri)
        .arg(env_or("PYRALOG_S3_ENDPOINT", ""))
        .arg(env_or("AWS_ACCESS_KEY_ID", "pyralog"))
        .arg(env_or("AWS_SECRET_ACCESS_KEY", "pyralog-secret"));
    if let Some(d) = day {
        cmd.arg(d);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

/// Polls the table until `done` holds for what the engines report (the table is published
/// right after each archive commit, in the background).
fn await_table(
    table_uri: &str,
    day: Option<&str>,
    done: impl Fn(&Value) -> bool,
    node: &TestNode,
) -> Value {
    let t = Instant::now();
    loop {
        let last = match read_table(table_uri, day) {
            Ok(v) if done(&v) => return v,
            Ok(v) => v.to_string(),
            Err(e) => e,
        };
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the table never got there; last read: {last}\nnode log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Record `i`: one of `KEYS` keys, `amount = 3 i`, three days of timestamps.
fn record(i: u64) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(format!("k{:02}", i % KEYS))),
        value: Some(Bytes::from(format!(
            "{{\"n\":{i},\"amount\":{},\"pad\":\"{}\"}}",
            i * 3,
            "x".repeat(200)
        ))),
        headers: Vec::new(),
        timestamp: Some(DAY0 + (i / PER_DAY) as i64 * DAY_US + (i % PER_DAY) as i64 * 1_000),
        partition: None,
        dedup_id: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_engines_read_exactly_the_live_records_before_and_after_compaction() {
    let prefix = unique("iceberg");
    let store = ColdStore::S3;
    let mut env = store.node_env(&prefix);
    // The standalone compactor compacts, once, when the test says.
    env.push(("PYRALOG_COMPACTION__ENABLED".into(), "false".into()));
    let node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            "orders",
            v1::LogConfig {
                partition_count: Some(2),
                segment_bytes: Some(64 << 10),
                compaction: v1::CompactionMode::KeyBased as i32,
                min_compaction_lag_ms: Some(0),
                retention: Some(v1::Retention::default()),
                // Archived segments leave the disk: consumers read what the archive holds.
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 16 << 10,
            ..ProducerConfig::default()
        },
    );
    let mut acks = Vec::new();
    for i in 0..RECORDS {
        acks.push(producer.send("orders", record(i)).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("ack");
    }
    producer.close().await.expect("close");
    client
        .roll_segments("orders", Vec::new())
        .await
        .expect("roll");

    let bucket = env_or("PYRALOG_S3_BUCKET", "pyralog");
    let table = format!("s3://{bucket}/{prefix}/log=orders");
    let expected_sum: u64 = (0..RECORDS).map(|i| i * 3).sum();
    let all = await_table(
        &table,
        Some("2026-12-02"),
        |v| v["pyiceberg"]["rows"] == RECORDS && v["duckdb"]["rows"] == RECORDS,
        &node,
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_eq!(all[engine]["sum"], expected_sum, "{engine}: {all}");
    }
    assert_eq!(
        all["pyiceberg"]["partitions"],
        serde_json::json!([0, 1]),
        "{all}"
    );
    assert_eq!(all["duckdb"]["partitions"], 2, "{all}");
    // The day filter: exactly that day's records, from a subset of the files.
    let files = all["pyiceberg"]["files"].as_u64().expect("files");
    let day_files = all["day"]["files"].as_u64().expect("day files");
    assert_eq!(all["day"]["rows"], PER_DAY, "{all}");
    assert!(
        day_files * 2 < files + 4,
        "a one-day filter plans about a third of the files, not {day_files} of {files}: {all}"
    );

    // DescribeLog says how far the archive reaches and which table snapshot holds it.
    let d = client.describe_log("orders").await.expect("describe");
    let table_info = d.table.as_ref().expect("the table is described");
    assert_eq!(
        table_info.metadata_location,
        format!("{table}/metadata/v{}.metadata.json", all["version"]),
        "{d:?}"
    );
    assert!(table_info.snapshot_id.is_some(), "{d:?}");
    let mut archived = 0;
    for p in &d.partitions {
        let a = p.archive.as_ref().expect("an archive per partition");
        assert_eq!(
            a.end_offset, p.high_watermark,
            "archived through the end: {a:?}"
        );
        assert!(a.objects > 0 && a.bytes > 0, "{a:?}");
        assert_eq!(a.in_table, Some(true), "{a:?}");
        let age_us = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map(|e| e.as_micros() as i64)
            .expect("clock")
            - a.committed_at_us;
        assert!(
            (0..120_000_000).contains(&age_us),
            "committed just now: {a:?}"
        );
        archived += a.end_offset.0 - a.start_offset.0;
    }
    assert_eq!(archived, RECORDS);
    let out = node.cli(&["logs", "describe", "orders"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    for expected in ["ARCHIVED_THROUGH", "IN_TABLE", "iceberg table: s3://"] {
        assert!(out.stdout.contains(expected), "{expected}: {}", out.stdout);
    }

    // Key-based compaction of the archive by the standalone compactor.
    let root = tempfile::tempdir().expect("tempdir");
    let config = root.path().join("compactor.toml");
    std::fs::write(&config, store.toml(&prefix)).expect("config");
    let out = Command::new(pyralog_bin())
        .args(["compactor", "--once", "--config"])
        .arg(&config)
        .output()
        .expect("compactor");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Key-based compaction keeps the latest record of every key: the last KEYS records.
    let live = KEYS;
    let live_sum: u64 = (RECORDS - KEYS..RECORDS).map(|i| i * 3).sum();
    let after = await_table(
        &table,
        None,
        |v| v["pyiceberg"]["rows"] == live && v["duckdb"]["rows"] == live,
        &node,
    );
    for engine in ["pyiceberg", "duckdb"] {
        assert_eq!(after[engine]["sum"], live_sum, "{engine}: {after}");
    }
    assert_eq!(
        after["pyiceberg"]["keys"], KEYS,
        "one record per key: {after}"
    );
    let objects = after["objects"].as_u64().expect("objects");
    let files = after["pyiceberg"]["files"].as_u64().expect("files");
    assert!(
        objects > files,
        "the replaced objects are still in the bucket ({objects} objects, {files} live): {after}"
    );
}

/// Retention removes the oldest archived objects from the log; the table's next snapshot
/// drops them too (a delete snapshot), while the objects stay in the bucket until orphan
/// collection, for the snapshots before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_retention_the_engines_see_exactly_the_retained_records() {
    let prefix = unique("iceberg-retention");
    let node = TestNode::start_with_env(&ColdStore::S3.node_env(&prefix));
    let client = node.client().await;
    client
        .create_log(
            "events",
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(64 << 10),
                // Two days: the old records (stamped two days ago, less 20 s) go 20 s after
                // they were produced, once archived; the new ones stay.
                retention: Some(v1::Retention {
                    max_age_ms: Some(2 * 86_400_000),
                    max_bytes: None,
                }),
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 16 << 10,
            ..ProducerConfig::default()
        },
    );
    let now = std::time::SystemTime::UNIX_EPOCH
        .elapsed()
        .map(|d| d.as_micros() as i64)
        .expect("clock");
    let (old, new) = (1_000u64, 1_500u64);
    let aging = now - 2 * DAY_US + 20_000_000;
    for (range, stamp) in [(0..old, aging), (old..old + new, now)] {
        let mut acks = Vec::new();
        for i in range {
            let mut r = record(i);
            r.timestamp = Some(stamp + i as i64);
            r.partition = Some(0);
            acks.push(producer.send("events", r).await.expect("send"));
        }
        producer.flush().await.expect("flush");
        for a in acks {
            a.await.expect("ack");
        }
        // Old and new records in segments of their own: retention removes whole segments.
        client
            .roll_segments("events", Vec::new())
            .await
            .expect("roll");
    }
    producer.close().await.expect("close");

    let bucket = env_or("PYRALOG_S3_BUCKET", "pyralog");
    let table = format!("s3://{bucket}/{prefix}/log=events");
    // First the whole archive (before the old records age out)...
    let all_sum: u64 = (0..old + new).map(|i| i * 3).sum();
    await_table(
        &table,
        None,
        |v| v["pyiceberg"]["rows"] == old + new && v["pyiceberg"]["sum"] == all_sum,
        &node,
    );
    // ...then exactly the retained records.
    let expected_sum: u64 = (old..old + new).map(|i| i * 3).sum();
    let after = await_table(
        &table,
        None,
        |v| {
            v["pyiceberg"]["rows"] == new
                && v["duckdb"]["rows"] == new
                && v["pyiceberg"]["sum"] == expected_sum
        },
        &node,
    );
    assert_eq!(after["duckdb"]["sum"], expected_sum, "{after}");
    let objects = after["objects"].as_u64().expect("objects");
    let files = after["pyiceberg"]["files"].as_u64().expect("files");
    assert!(
        objects > files,
        "the removed objects are still in the bucket ({objects} objects, {files} live): {after}"
    );
    let start = client
        .describe_log("events")
        .await
        .expect("describe")
        .partitions[0]
        .start_offset
        .0;
    assert!(start >= old, "retention moved the log start to {start}");
}

/// Runs `tests/python/iceberg_catalog.py` against the node's catalog.
fn ask_catalog(catalog: &str, token: Option<&str>) -> Result<Value, String> {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut cmd = Command::new(python());
    cmd.arg(here.join("python/iceberg_catalog.py"))
        .arg(catalog)
        .arg(env_or("PYRALOG_S3_ENDPOINT", ""))
        .arg(env_or("AWS_ACCESS_KEY_ID", "pyralog"))
        .arg(env_or("AWS_SECRET_ACCESS_KEY", "pyralog-secret"));
    if let Some(t) = token {
        cmd.arg(t);
    }
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    serde_json::from_slice(&out.stdout).map_err(|e| e.to_string())
}

fn await_catalog(
    catalog: &str,
    token: Option<&str>,
    done: impl Fn(&Value) -> bool,
    node: &TestNode,
) -> Value {
    let t = Instant::now();
    loop {
        let last = match ask_catalog(catalog, token) {
            Ok(v) if done(&v) => return v,
            Ok(v) => v.to_string(),
            Err(e) => e,
        };
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "the catalog never got there; last answer: {last}\nnode log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

async fn produce_orders(client: &pyralog_client::Client, n: u64) {
    let producer = Producer::new(
        client.clone(),
        ProducerConfig {
            batch_bytes: 16 << 10,
            ..ProducerConfig::default()
        },
    );
    let mut acks = Vec::new();
    for i in 0..n {
        acks.push(producer.send("orders", record(i)).await.expect("send"));
    }
    producer.flush().await.expect("flush");
    for a in acks {
        a.await.expect("ack");
    }
    producer.close().await.expect("close");
    client
        .roll_segments("orders", Vec::new())
        .await
        .expect("roll");
}

fn small_log(partitions: u32) -> v1::LogConfig {
    v1::LogConfig {
        partition_count: Some(partitions),
        segment_bytes: Some(64 << 10),
        retention: Some(v1::Retention::default()),
        ..Default::default()
    }
}

/// The node's REST catalog (`catalog_listen`) hands pyiceberg and DuckDB every log that has a
/// table, by URL, and refuses what a read-only catalog must.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_catalog_hands_every_archived_log_to_pyiceberg_and_duckdb() {
    let prefix = unique("iceberg-catalog");
    let port = pyralog_e2e::free_port();
    let mut env = ColdStore::S3.node_env(&prefix);
    env.push(("PYRALOG_CATALOG_LISTEN".into(), format!("127.0.0.1:{port}")));
    let node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log("orders", small_log(2))
        .await
        .expect("create");
    // A log with nothing archived has no table (yet): not listed.
    client
        .create_log("quiet", small_log(1))
        .await
        .expect("create");
    let n = 2_000;
    produce_orders(&client, n).await;

    let catalog = format!("http://127.0.0.1:{port}");
    let sum: u64 = (0..n).map(|i| i * 3).sum();
    let v = await_catalog(
        &catalog,
        None,
        |v| {
            v["pyiceberg"]["rows"] == n
                && v["duckdb"]["rows"] == n
                && v["http"]["load_orders"] == 200
                && v["http"]["tables"] == serde_json::json!(["orders"])
        },
        &node,
    );
    assert_eq!(v["pyiceberg"]["sum"], sum, "{v}");
    assert_eq!(v["duckdb"]["sum"], sum, "{v}");
    assert_eq!(
        v["pyiceberg"]["tables"],
        serde_json::json!(["orders"]),
        "{v}"
    );
    let http = &v["http"];
    assert_eq!(http["list"], 200, "{v}");
    assert_eq!(http["tables"], serde_json::json!(["orders"]), "{v}");
    assert_eq!(http["load_orders"], 200, "{v}");
    assert_eq!(http["load_missing"], 404, "{v}");
    assert_eq!(http["other_namespace"], 404, "{v}");
    assert_eq!(http["create"], 405, "a read-only catalog: {v}");
}

/// With auth on, the catalog takes the node's bearer tokens and ACLs: no token is 401, a
/// token that may not consume a log does not see its table and may not load it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_auth_the_catalog_shows_each_token_only_the_logs_it_may_consume() {
    use pyralog_e2e::secure::TOKENS;
    use pyralog_types::acl::{
        AclEntry, Operation, PatternKind, Permission, ResourceKind, ResourcePattern,
    };
    let secure = pyralog_e2e::Secure::new(1);
    let prefix = unique("iceberg-catalog-auth");
    let port = pyralog_e2e::free_port();
    let (cert, key) = secure.set.node_cert(1);
    let store = ColdStore::S3
        .toml(&prefix)
        .replace("[store]", "[cold_tier.store]");
    let config = format!(
        "catalog_listen = \"127.0.0.1:{port}\"\n\
         [cold_tier]\narchive_interval = \"200ms\"\n{store}\
         [security]\nclient_ca = {ca:?}\n\
         [security.tls]\ncert = {cert:?}\nkey = {key:?}\n\
         [security.auth]\nenabled = true\nsuperusers = [\"admin\"]\ntokens_file = {tokens:?}\n",
        ca = secure.set.ca,
        tokens = secure.tokens_file
    );
    let node = TestNode::start_serve(&config, secure.admin_options());
    let client = node.client().await;
    client
        .create_log("orders", small_log(1))
        .await
        .expect("create");
    produce_orders(&client, 500).await;
    let (carol, carol_token) = TOKENS[0];
    let dave_token = TOKENS[1].1;
    client
        .create_acls(&[AclEntry {
            principal: carol.to_owned(),
            permission: Permission::Allow,
            operation: Operation::Consume,
            resource: ResourcePattern {
                kind: ResourceKind::Log,
                pattern: PatternKind::Literal,
                name: "orders".into(),
            },
        }])
        .await
        .expect("grant carol");

    let catalog = format!("http://127.0.0.1:{port}");
    let allowed = await_catalog(
        &catalog,
        Some(carol_token),
        |v| v["http"]["tables"] == serde_json::json!(["orders"]),
        &node,
    );
    assert_eq!(allowed["http"]["load_orders"], 200, "{allowed}");
    let other = ask_catalog(&catalog, Some(dave_token)).expect("dave");
    assert_eq!(other["http"]["list"], 200, "{other}");
    assert_eq!(other["http"]["tables"], serde_json::json!([]), "{other}");
    assert_eq!(other["http"]["load_orders"], 403, "{other}");
    let anonymous = ask_catalog(&catalog, Some("not-a-token")).expect("bad token");
    assert_eq!(anonymous["http"]["list"], 401, "{anonymous}");
    assert_eq!(anonymous["http"]["load_orders"], 401, "{anonymous}");
}
