//! The cold tier end to end: real `pyralog` processes archiving to the object stores of the
//! suite (`pyralog_e2e::stores`): the S3-compatible server and the Azure Blob server (Azurite)
//! that `scripts/test.sh` starts on loopback, and a local folder.
//!
//! - 2 GB (`PYRALOG_E2E_COLD_MB`) on S3, 256 MB (`PYRALOG_E2E_COLD_MB_OTHER_STORES`) on the
//!   others, produced with small segments and a small local retention: one consumer from
//!   offset 0 reads every record byte-identical, crossing cold → hot; then the node's data
//!   dir is wiped and a node on the same bucket serves the archive.
//! - `kill -9` while archiving, on every store: nothing lost, nothing twice.
//! - A bad bucket or endpoint refuses the start with exit code 2 and a message naming it.
//! - DuckDB, an engine no one here wrote, reads the archived Parquet over the hive layout.
//! - pyarrow reads a log as Arrow columns (`FETCH_FORMAT_ARROW`) across the tiers.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{
    ConsumerConfig, Header, LogOffset, PartitionConsumer, ProduceRecord, Producer, ProducerConfig,
};
use pyralog_e2e::{env_usize, payload, s3_env, unique, ColdStore, TestNode};
use pyralog_proto::v1;

const T0: i64 = 1_700_000_000_000_000;

fn record(i: u64, value_bytes: usize) -> ProduceRecord {
    ProduceRecord {
        key: Some(Bytes::from(format!("key-{i}"))),
        value: Some(Bytes::from(payload(i, value_bytes))),
        headers: vec![Header {
            key: "i".into(),
            value: Bytes::copy_from_slice(&i.to_le_bytes()),
        }],
        timestamp: Some(T0 + i as i64),
        partition: Some(0),
        dedup_id: None,
    }
}

/// Reads `[from, to)` of partition 0 and checks every field against the model.
async fn check_read(
    client: &pyralog_client::Client,
    log: &str,
    from: u64,
    to: u64,
    value_bytes: usize,
    epoch: Option<u64>,
) {
    let mut c = PartitionConsumer::new(
        client.clone(),
        log,
        0,
        LogOffset(from),
        ConsumerConfig::default(),
    );
    let mut next = from;
    let t = Instant::now();
    while next < to {
        let records = c.poll().await.expect("poll");
        assert!(
            !records.is_empty() || t.elapsed() < Duration::from_secs(120),
            "stalled at {next}"
        );
        for r in records {
            if r.offset.0 >= to {
                break;
            }
            assert_eq!(r.offset, LogOffset(next), "dense, in order, exactly once");
            let want = record(next, value_bytes);
            assert_eq!(r.key, want.key, "key of {next}");
            assert!(r.value == want.value, "value of {next}");
            assert_eq!(r.headers, want.headers, "headers of {next}");
            assert_eq!(r.timestamp, T0 + next as i64, "timestamp of {next}");
            if let Some(e) = epoch {
                assert_eq!(r.epoch.0, e, "epoch of {next}");
            }
            next += 1;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gigabytes_cross_from_cold_to_hot_and_survive_a_wiped_disk() {
    let mb = env_usize("PYRALOG_E2E_COLD_MB", 2048) as u64;
    cross_the_tiers_and_restore(ColdStore::S3, mb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cross_from_cold_to_hot_and_survive_a_wiped_disk_on_azure() {
    let mb = env_usize("PYRALOG_E2E_COLD_MB_OTHER_STORES", 256) as u64;
    cross_the_tiers_and_restore(ColdStore::Azure, mb).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_cross_from_cold_to_hot_and_survive_a_wiped_disk_on_a_local_folder() {
    let mb = env_usize("PYRALOG_E2E_COLD_MB_OTHER_STORES", 256) as u64;
    cross_the_tiers_and_restore(ColdStore::LocalFolder, mb).await;
}

/// `mb` produced with small segments and a small local retention; one consumer from offset 0
/// reads every record byte-identical, crossing cold → hot; then the data dir is wiped and a
/// node on the same bucket serves the archive.
async fn cross_the_tiers_and_restore(store: ColdStore, mb: u64) {
    let value_bytes = 4096usize;
    let n = mb * 1024 * 1024 / value_bytes as u64;
    let env = store.node_env(&unique("cross"));
    let mut node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            "archive",
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(16 << 20),
                fsync: Some("100ms".into()),
                retention: Some(v1::Retention::default()),
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(64 << 20),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");

    let t = Instant::now();
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let mut pending = VecDeque::new();
    for i in 0..n {
        pending.push_back(
            producer
                .send("archive", record(i, value_bytes))
                .await
                .expect("send"),
        );
        while pending.len() > 2_000 {
            if let Some(ack) = pending.pop_front() {
                ack.await.expect("ack");
            }
        }
    }
    producer.flush().await.expect("flush");
    while let Some(ack) = pending.pop_front() {
        ack.await.expect("ack");
    }
    producer.close().await.expect("close");
    let produce_secs = t.elapsed().as_secs_f64();

    // Wait until archiving and local retention have moved most of the log off the disk.
    let t = Instant::now();
    let local_start = loop {
        let d = client.describe_log("archive").await.expect("describe");
        let local = local_segments_of(&node, "archive");
        if local.len() <= 6 && local.first().is_some_and(|&b| b > 0) {
            assert_eq!(
                d.partitions[0].start_offset,
                LogOffset::ZERO,
                "earliest is the archive's start"
            );
            break local[0];
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "archiving did not catch up: {local:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let archive_secs = t.elapsed().as_secs_f64();
    assert!(
        local_start > 0,
        "part of the log is cold (local start {local_start} of {n})"
    );

    let t = Instant::now();
    check_read(&client, "archive", 0, n, value_bytes, Some(1)).await;
    let consume_secs = t.elapsed().as_secs_f64();
    println!(
        "FIGURES cold e2e ({store:?}): {mb} MB in {n} records; produce {:.1} MB/s; archive caught up {archive_secs:.1}s after; \
         consume from 0 (cold {local_start} records, then hot) {:.1} MB/s",
        mb as f64 / produce_secs,
        mb as f64 / consume_secs
    );

    // Wipe the disk; the same bucket brings every archived record back.
    node.stop();
    std::fs::remove_dir_all(node.data_dir()).expect("wipe data dir");
    node.restart();
    let client = node.client().await;
    let d = client
        .describe_log("archive")
        .await
        .expect("log restored from the bucket");
    let archived_end = d.partitions[0].high_watermark.0;
    assert!(
        archived_end >= local_start,
        "archive ends at {archived_end}"
    );
    check_read(&client, "archive", 0, archived_end, value_bytes, Some(1)).await;
    node.stop();
}

fn start_fails(env: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("stderr");
    let mut child = std::process::Command::new(pyralog_e2e::pyralog_bin())
        .args([
            "dev",
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .envs(env.iter().copied())
        .env("PYRALOG_COLD_TIER__STORE__CONNECT_TIMEOUT", "2s")
        .env("PYRALOG_COLD_TIER__STORE__REQUEST_TIMEOUT", "5s")
        .env("PYRALOG_COLD_TIER__STORE__MAX_RETRIES", "0")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).expect("stderr file"))
        .spawn()
        .expect("run pyralog");
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "the node started instead of refusing: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = std::fs::read_to_string(&log).unwrap_or_default();
    assert_eq!(status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn a_bad_bucket_or_endpoint_refuses_to_start_with_exit_code_2() {
    let env = s3_env(&unique("bad"));
    let mut env_refs: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    env_refs[0] = (
        "PYRALOG_COLD_TIER__STORE__URL",
        "s3://no-such-bucket-pyralog/x",
    );
    let err = start_fails(&env_refs);
    assert!(
        err.contains("no-such-bucket-pyralog"),
        "names the bucket: {err}"
    );

    let mut env_refs: Vec<(&str, &str)> =
        env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let closed_url = format!("http://{}", closed.local_addr().expect("addr"));
    drop(closed);
    env_refs[1] = ("PYRALOG_COLD_TIER__STORE__ENDPOINT", closed_url.as_str());
    let err = start_fails(&env_refs);
    assert!(
        err.contains("endpoint") || err.contains(&closed_url),
        "names the endpoint: {err}"
    );

    let err = start_fails(&[("PYRALOG_COLD_TIER__STORE__URL", "ftp://nowhere/x")]);
    assert!(err.contains("ftp"), "names the scheme: {err}");
}

#[test]
fn a_missing_azure_container_or_a_wrong_key_refuses_to_start_with_exit_code_2() {
    let env = ColdStore::Azure.node_env(&unique("bad"));
    let with = |key: &str, value: &str| -> Vec<(String, String)> {
        env.iter()
            .map(|(k, v)| match k.as_str() {
                k2 if k2 == key => (k.clone(), value.to_string()),
                _ => (k.clone(), v.clone()),
            })
            .collect()
    };
    let run = |e: Vec<(String, String)>| {
        let pairs: Vec<(&str, &str)> = e.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        start_fails(&pairs)
    };
    let err = run(with(
        "PYRALOG_COLD_TIER__STORE__URL",
        "az://no-such-container-pyralog/x",
    ));
    assert!(
        err.contains("bucket missing") && err.contains("no-such-container-pyralog"),
        "names the container: {err}"
    );
    // A well-formed key that is not the account's: the server rejects the signature.
    let wrong_key = "d3Jvbmcta2V5LW5vdC10aGUtYWNjb3VudHMta2V5LXBhZGRpbmctcGFkZGluZw==";
    let err = run(with(
        "PYRALOG_COLD_TIER__STORE__SECRET_ACCESS_KEY",
        wrong_key,
    ));
    assert!(
        err.contains("credentials rejected"),
        "names the credentials: {err}"
    );
    assert!(!err.contains(wrong_key), "never prints the key: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duckdb_reads_the_archive_over_the_hive_layout() {
    // `pyralog dev` archives to a local folder, <data_dir>/objects, by default.
    let node = TestNode::start_with_env(&[("PYRALOG_COLD_TIER__ARCHIVE_INTERVAL", "100ms")]);
    let out = node.cli(
        &[
            "logs",
            "create",
            "orders",
            "--partitions",
            "2",
            "--segment-bytes",
            "65536",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let lines: String = (0..3000)
        .map(|i| format!("user-{}:{{\"order\":{i},\"amount\":{}}}\n", i % 10, i * 3))
        .collect();
    let out = node.cli(
        &["produce", "orders", "--key-separator", ":"],
        Some(lines.as_bytes()),
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let out = node.cli(&["logs", "roll", "orders"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let glob = format!(
        "{}/log=orders/partition=*/*.parquet",
        node.data_dir().join("objects").display()
    );
    let script = format!(
        r#"
import duckdb
con = duckdb.connect()
src = "read_parquet('{glob}', hive_partitioning = true)"
row = con.execute(f"""
  select count(*), count(distinct partition), min("offset"),
         sum(cast(json_extract(decode(value), '$.amount') as bigint)),
         max(decode(key))
  from {{src}}""").fetchone()
print("|".join(str(x) for x in row))
print(con.execute(f"""select decode(value), epoch, typeof(timestamp) from {{src}}
  where decode(value) like '{{{{"order":7,%'""").fetchall())
"#
    );
    let expected_sum: u64 = (0..3000u64).map(|i| i * 3).sum();
    let t = Instant::now();
    loop {
        let out = std::process::Command::new("python3")
            .arg("-c")
            .arg(&script)
            .output()
            .expect("python3");
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !stderr.contains("No module named 'duckdb'"),
            "duckdb is missing: scripts/test.sh installs it (pip install duckdb)"
        );
        if out.status.success() && stdout.starts_with(&format!("3000|2|0|{expected_sum}|user-9")) {
            assert!(
                stdout.contains(r#"('{"order":7,"amount":21}', 1, 'TIMESTAMP WITH TIME ZONE')"#),
                "{stdout}"
            );
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "DuckDB never saw the whole archive: {stdout} {stderr}\nnode log:\n{}",
            node.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// FETCH_FORMAT_ARROW end to end: pyarrow, through a client generated from the .proto alone,
/// reads a log whose first part only the archive holds and whose tail is hot, and gets every
/// record's columns exactly as produced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pyarrow_reads_a_log_as_columns_across_the_tiers() {
    let value_bytes = 1024usize;
    let node = TestNode::start_with_env(&s3_env(&unique("arrow")));
    let client = node.client().await;
    client
        .create_log(
            "columns",
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(1 << 20),
                retention: Some(v1::Retention::default()),
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(2 << 20),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let producer = Producer::new(client.clone(), ProducerConfig::default());
    let send = |from: u64, to: u64| {
        let producer = &producer;
        async move {
            let mut acks = Vec::new();
            for i in from..to {
                acks.push(
                    producer
                        .send("columns", record(i, value_bytes))
                        .await
                        .expect("send"),
                );
            }
            producer.flush().await.expect("flush");
            for ack in acks {
                ack.await.expect("ack");
            }
        }
    };
    // ~10 MiB, then wait until the archive alone holds the start of the log.
    let cold_end = 10_000u64;
    send(0, cold_end).await;
    let t = Instant::now();
    let local_start = loop {
        let local = local_segments_of(&node, "columns");
        if local.first().is_some_and(|&b| b > 0) {
            break local[0];
        }
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "archiving did not move the start off the disk: {local:?}\n{}",
            node.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // A hot tail that is not archived yet.
    let end = cold_end + 500;
    send(cold_end, end).await;

    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let values = tempfile::NamedTempFile::new().expect("temp file");
    let out = std::process::Command::new("python3")
        .arg(here.join("python/arrow_consumer.py"))
        .arg(here.join("../proto/proto"))
        .arg(node.url().trim_start_matches("http://"))
        .arg("columns")
        .arg(end.to_string())
        .arg(T0.to_string())
        .arg(values.path())
        .output()
        .expect("python3");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pyarrow consumer failed (needs `pip install pyarrow grpcio grpcio-tools`, which \
         scripts/test.sh does): {stderr}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("one line of JSON from the python client");
    println!("pyarrow consumer (local start {local_start}): {report}");
    assert_eq!(report["records"], end);
    assert!(report["largest_response"].as_u64().expect("size") <= 3 << 20);
    assert!(report["largest_64k"].as_u64().expect("size") <= 64 << 10);
    let got = std::fs::read(values.path()).expect("values");
    let want: Vec<u8> = (0..end).flat_map(|i| payload(i, value_bytes)).collect();
    assert!(got == want, "values differ from what was produced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_archiving_loses_and_duplicates_nothing() {
    kill9_while_archiving(ColdStore::S3).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_archiving_loses_and_duplicates_nothing_on_azure() {
    kill9_while_archiving(ColdStore::Azure).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_while_archiving_loses_and_duplicates_nothing_on_a_local_folder() {
    kill9_while_archiving(ColdStore::LocalFolder).await;
}

async fn kill9_while_archiving(store: ColdStore) {
    let value_bytes = 4096usize;
    let mut env = store.node_env(&unique("kill"));
    env.retain(|(k, _)| k != "PYRALOG_COLD_TIER__ARCHIVE_INTERVAL");
    env.push(("PYRALOG_COLD_TIER__ARCHIVE_INTERVAL".into(), "20ms".into()));
    let mut node = TestNode::start_with_env(&env);
    let client = node.client().await;
    client
        .create_log(
            "crashy",
            v1::LogConfig {
                partition_count: Some(1),
                segment_bytes: Some(1 << 20),
                retention: Some(v1::Retention::default()),
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(2 << 20),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let mut next = 0u64;
    for round in 0..8u64 {
        let client = node.client().await;
        let producer = Producer::new(client.clone(), ProducerConfig::default());
        let mut acks = Vec::new();
        for _ in 0..1500 {
            acks.push(
                producer
                    .send("crashy", record(next, value_bytes))
                    .await
                    .expect("send"),
            );
            next += 1;
        }
        producer.flush().await.expect("flush");
        for ack in acks {
            ack.await.expect("acknowledged (fsync every batch)");
        }
        producer.close().await.expect("close");
        // Die somewhere inside the archiver's read → encode → upload → commit → delete cycle.
        let nanos = std::time::SystemTime::UNIX_EPOCH
            .elapsed()
            .map(|d| u64::from(d.subsec_nanos()))
            .unwrap_or(round);
        tokio::time::sleep(Duration::from_millis(nanos % 250)).await;
        node.kill9();
        node.restart();
    }
    let client = node.client().await;
    let t = Instant::now();
    while local_segments_of(&node, "crashy").len() > 4 {
        assert!(
            t.elapsed() < Duration::from_secs(120),
            "archiving never caught up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        local_segments_of(&node, "crashy")[0] > 0,
        "part of the log is only in the archive"
    );
    check_read(&client, "crashy", 0, next, value_bytes, Some(1)).await;
    node.stop();
}

fn local_segments_of(node: &TestNode, log: &str) -> Vec<u64> {
    let dir = node.data_dir().join("logs").join(log).join("0");
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    bases.sort_unstable();
    bases
}
