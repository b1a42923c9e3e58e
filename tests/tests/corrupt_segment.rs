//! A damaged batch in a closed segment costs only its own range: a consumer from offset 0
//! with the default `max_bytes` reads every intact record before it, then gets CORRUPT_DATA
//! naming the damaged offset; the archiver archives the segments before it, says so once in
//! its log, in `pyralog_corrupt_segments` and in `logs describe`, and local retention frees
//! the archived segments as usual. `pyralog logs repair` restores a damaged replica from an
//! in-sync one (the damaged leader hands over first), and refuses when there is none.

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Client, ConsumerConfig, LogOffset, PartitionConsumer};
use pyralog_e2e::{TestCluster, TestNode};
use pyralog_proto::v1;
use pyralog_types::Reason;

const LOG: &str = "damaged";

/// One batch of 10 records (`"r{offset}"`) for `log`, partition 0, from offset `first`.
fn ten_records(log: &str, first: u64) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: log.to_owned(),
        partition: 0,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: (first..first + 10)
                .map(|o| v1::NewRecord {
                    value: Some(Bytes::from(format!("r{o}"))),
                    ..Default::default()
                })
                .collect(),
        })),
        ..Default::default()
    }
}

/// Appends one batch of 10 records to [`LOG`] and checks its offsets.
async fn produce_batch(client: &Client, first: u64) {
    let resp = client
        .produce_raw(ten_records(LOG, first))
        .await
        .expect("produce");
    assert_eq!(resp.base_offset, first);
}

/// Flips a byte inside the records of the batch whose base offset is `base` (covered by the
/// batch CRC only), in the segment file `path`.
fn damage_batch(path: &Path, base: u64) {
    let mut bytes = std::fs::read(path).expect("read segment");
    let mut pos = 0usize;
    loop {
        let size = pyralog_types::batch::peek_size(&bytes[pos..]).expect("batch framing");
        let at = u64::from_le_bytes(bytes[pos..pos + 8].try_into().expect("8 bytes"));
        if at == base {
            bytes[pos + size - 2] ^= 0x5a;
            std::fs::write(path, &bytes).expect("write segment");
            return;
        }
        pos += size;
        assert!(pos < bytes.len(), "no batch at offset {base}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_batch_costs_only_its_range_and_the_archiver_reports_it() {
    // No archiving while the data is written: the damage must reach the disk first.
    let mut node = TestNode::start_with_env(&[("PYRALOG_COLD_TIER__ARCHIVE_INTERVAL", "1h")]);
    let client = node.client().await;
    client
        .create_log(
            LOG,
            v1::LogConfig {
                partition_count: Some(1),
                // Archived segments leave the disk at once.
                local_retention: Some(v1::Retention {
                    max_age_ms: None,
                    max_bytes: Some(1),
                }),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    // Segments [0, 100), [100, 300) (damaged at 180..190 below), and the active [300, 350).
    for (from, to) in [(0u64, 100u64), (100, 300), (300, 350)] {
        for first in (from..to).step_by(10) {
            produce_batch(&client, first).await;
        }
        if to < 350 {
            client.roll_segments(LOG, vec![]).await.expect("roll");
        }
    }
    assert_eq!(node.stop(), Some(0), "clean exit");
    let dir = node.data_dir().join("logs").join(LOG).join("0");
    damage_batch(&dir.join("00000000000000000100.log"), 180);

    node.set_env("PYRALOG_COLD_TIER__ARCHIVE_INTERVAL", "200ms");
    node.restart();
    let client = node.client().await;

    // One consumer from 0 with the default max_bytes (which spans the damage) gets every
    // record before the damaged batch, then CORRUPT_DATA naming its offset.
    let mut c = PartitionConsumer::new(
        client.clone(),
        LOG,
        0,
        LogOffset::ZERO,
        ConsumerConfig {
            wait: Duration::ZERO,
            ..Default::default()
        },
    );
    let mut got = Vec::new();
    let err = loop {
        match c.poll().await {
            Ok(records) => {
                assert!(!records.is_empty(), "stalled at {:?}", c.position());
                got.extend(records);
            }
            Err(e) => break e,
        }
    };
    assert_eq!(err.reason(), Some(Reason::CorruptData), "{err}");
    assert!(err.to_string().contains("offset 180"), "{err}");
    assert_eq!(
        got.iter().map(|r| r.offset.0).collect::<Vec<_>>(),
        (0..180).collect::<Vec<_>>(),
        "every intact record before the damage, in order"
    );
    for r in &got {
        assert_eq!(
            r.value.as_deref(),
            Some(format!("r{}", r.offset.0).as_bytes())
        );
    }

    // The archiver archives [0, 100), flags the damaged segment, and local retention
    // deletes the archived segment from the disk.
    let t = Instant::now();
    let corrupt = loop {
        let d = client.describe_log(LOG).await.expect("describe");
        let first_local = dir.join("00000000000000000000.log");
        if let Some(c) = d.partitions[0].corrupt.clone() {
            if !first_local.exists() {
                break c;
            }
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no corruption flag or local segment kept: {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(corrupt.0, LogOffset(180), "{corrupt:?}");
    let objects: Vec<String> = std::fs::read_dir(
        node.data_dir()
            .join("objects")
            .join(format!("log={LOG}"))
            .join("partition=0"),
    )
    .expect("archive folder")
    .filter_map(|e| e.ok())
    .map(|e| e.file_name().to_string_lossy().into_owned())
    .collect();
    assert_eq!(
        objects,
        vec!["00000000000000000000-00000000000000000099.parquet".to_owned()],
        "the segment before the damage is archived, nothing at or after it"
    );
    let out = node.cli(&["logs", "describe", LOG], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(
        out.stdout.contains("CORRUPT partition 0") && out.stdout.contains("offset 180"),
        "{}",
        out.stdout
    );
    assert!(
        node.scrape_metrics()
            .contains("pyralog_corrupt_segments{log=\"damaged\",partition=\"0\"} 1"),
        "{}",
        node.scrape_metrics()
    );
    // Still readable from the archive, then the hot tier, up to the damage.
    let mut c = PartitionConsumer::new(
        client.clone(),
        LOG,
        0,
        LogOffset::ZERO,
        ConsumerConfig {
            wait: Duration::ZERO,
            ..Default::default()
        },
    );
    let mut next = 0u64;
    while next < 180 {
        for r in c.poll().await.expect("intact data serves") {
            assert_eq!(r.offset.0, next);
            next += 1;
        }
    }
    assert_eq!(
        c.poll().await.expect_err("the damage").reason(),
        Some(Reason::CorruptData)
    );

    // Several archive intervals later the damage has been logged once, not per interval.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = node.log().matches("damaged local segment").count();
    assert_eq!(lines, 1, "{}", node.log());

    // With no other replica to copy from, repair refuses, says what else can be done, and
    // cuts nothing.
    let out = node.cli(&["logs", "repair", LOG, "--partition", "0"], None);
    assert_ne!(out.code, Some(0), "{out:?}");
    let text = format!("{}{}", out.stdout, out.stderr);
    assert!(
        text.contains("offset 180") && text.contains("reset-offsets"),
        "{text}"
    );
    let d = client.describe_log(LOG).await.expect("describe");
    assert_eq!(d.partitions[0].high_watermark, LogOffset(350), "{d:?}");
    assert_eq!(
        d.partitions[0].corrupt.as_ref().map(|c| c.0),
        Some(LogOffset(180))
    );
}

/// The records a node holds itself for partition 0 of `log`, read from its own listener
/// from `from` until it has nothing more or fails (the error, if it failed).
async fn read_local(
    cluster: &TestCluster,
    id: u64,
    log: &str,
    until: u64,
) -> (Vec<(u64, Vec<u8>)>, Option<tonic::Status>) {
    let mut rpc = v1::consumer_client::ConsumerClient::new(cluster.channel(id))
        .max_decoding_message_size(64 << 20);
    let mut out = Vec::new();
    let mut at = 0u64;
    while at < until {
        let resp = match rpc
            .fetch(v1::FetchRequest {
                log: log.to_owned(),
                partition: 0,
                start: Some(v1::fetch_request::Start::Offset(at)),
                format: v1::FetchFormat::Records as i32,
                ..Default::default()
            })
            .await
        {
            Ok(r) => r.into_inner(),
            Err(s) => return (out, Some(s)),
        };
        if resp.records.is_empty() {
            break;
        }
        for r in resp.records {
            out.push((r.offset, r.value.map(|v| v.to_vec()).unwrap_or_default()));
        }
        at = resp.next_offset;
    }
    (out, None)
}

/// The closed segment of `dir` that holds `offset` (the one with the largest base at or
/// below it).
fn segment_holding(dir: &Path, offset: u64) -> std::path::PathBuf {
    let mut bases: Vec<u64> = std::fs::read_dir(dir)
        .expect("partition dir")
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.strip_suffix(".log").and_then(|b| b.parse().ok())
        })
        .collect();
    bases.sort_unstable();
    let base = bases
        .iter()
        .rev()
        .find(|b| **b <= offset)
        .copied()
        .expect("a segment");
    assert!(
        bases.last() != Some(&base),
        "offset {offset} is in the active segment"
    );
    dir.join(format!("{base:020}.log"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_restores_a_damaged_leader_replica_from_an_in_sync_follower() {
    let cluster = TestCluster::start::<&str, &str>(3, &[]);
    let client = cluster.client(1).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = client
            .create_log(
                "fix",
                v1::LogConfig {
                    partition_count: Some(1),
                    replication_factor: Some(3),
                    min_in_sync_replicas: Some(2),
                    segment_bytes: Some(4096),
                    max_batch_bytes: Some(4096),
                    ..Default::default()
                },
            )
            .await;
        match created {
            Ok(_) => break,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("create: {e}\n{}", cluster.logs()),
        }
    }
    for first in (0..300u64).step_by(10) {
        let resp = client
            .produce_raw(v1::ProduceRequest {
                acks: v1::AckPolicy::All as i32,
                ..ten_records("fix", first)
            })
            .await
            .unwrap_or_else(|e| panic!("produce: {e}\n{}", cluster.logs()));
        assert_eq!(resp.base_offset, first);
    }
    let info = client.describe_log("fix").await.expect("describe");
    let leader = info.partitions[0].leader.as_ref().expect("a leader").0;
    assert_eq!(info.partitions[0].isr.len(), 3, "{info:?}");

    // Bit rot under the running leader, in a closed segment.
    let dir = cluster.nodes[(leader - 1) as usize]
        .data_dir()
        .join("logs/fix/0");
    damage_batch(&segment_holding(&dir, 180), 180);
    let (before, err) = read_local(&cluster, leader, "fix", 300).await;
    assert_eq!(
        before.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..180).collect::<Vec<_>>()
    );
    let err = err.expect("the damage is reported");
    assert!(err.message().contains("offset 180"), "{err:?}");

    // The repair: the leader hands over, cuts its copy at 180 and fetches it again.
    let out = cluster.cli(1, &["logs", "repair", "fix", "--partition", "0"], None);
    assert_eq!(out.code, Some(0), "{out:?}\n{}", cluster.logs());
    assert!(
        out.stdout
            .contains(&format!("node {leader}: damaged from offset 180")),
        "{out:?}"
    );
    assert_eq!(
        out.stdout.matches("healthy, nothing to repair").count(),
        2,
        "{out:?}"
    );
    let t = Instant::now();
    loop {
        let info = client.describe_log("fix").await.expect("describe");
        let p = &info.partitions[0];
        let new_leader = p.leader.as_ref().map(|l| l.0);
        if new_leader.is_some_and(|l| l != leader) && p.isr.len() == 3 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "no handover and rejoin: {info:?}\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The repaired replica holds every record again, byte for byte. (The ISR can list it
    // for a moment before it cut its copy, so wait for its data, not for the ISR.)
    let t = Instant::now();
    let after = loop {
        let (after, err) = read_local(&cluster, leader, "fix", 300).await;
        if err.is_none() && after.len() == 300 {
            break after;
        }
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "the repaired replica holds {} records, error {err:?}\n{}",
            after.len(),
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for (o, v) in &after {
        assert_eq!(v, format!("r{o}").as_bytes(), "offset {o}");
    }
    // Asked again, every replica is healthy.
    let out = cluster.cli(2, &["logs", "repair", "fix", "--partition", "0"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert_eq!(
        out.stdout.matches("healthy, nothing to repair").count(),
        3,
        "{out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repair_requests_with_bad_names_or_partitions_get_clear_errors() {
    let node = TestNode::start();
    let client = node.client().await;
    client
        .create_log(
            "ok",
            v1::LogConfig {
                partition_count: Some(1),
                ..Default::default()
            },
        )
        .await
        .expect("create");
    let mut rpc = v1::admin_client::AdminClient::connect(node.url().to_owned())
        .await
        .expect("connect");
    for (log, partition, reason) in [
        ("Bad/Name", 0, "INVALID_LOG_NAME"),
        ("", 0, "INVALID_LOG_NAME"),
        ("missing", 0, "LOG_NOT_FOUND"),
        ("ok", 7, "PARTITION_NOT_FOUND"),
        ("ok", u32::MAX, "PARTITION_NOT_FOUND"),
    ] {
        let status = rpc
            .repair_partition(v1::RepairPartitionRequest {
                log: log.to_owned(),
                partition,
            })
            .await
            .expect_err(log);
        let got = pyralog_proto::status::reason_of(&status).map(|(r, _)| r.as_str());
        assert_eq!(got, Some(reason), "{log}/{partition}: {status:?}");
    }
    // A healthy copy is left alone.
    let healthy = rpc
        .repair_partition(v1::RepairPartitionRequest {
            log: "ok".into(),
            partition: 0,
        })
        .await
        .expect("healthy")
        .into_inner();
    assert!(!healthy.damaged, "{healthy:?}");
}
