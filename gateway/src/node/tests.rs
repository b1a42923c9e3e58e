//! Node behaviour, driven directly (no gRPC).

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_types::batch::{split_batches, NewRecord};
use pyralog_types::{AckPolicy, LogConfig, LogOffset, ManualClock, Retention};

use super::*;

const HOUR_US: i64 = 3_600_000_000;

fn config(dir: &std::path::Path) -> NodeConfig {
    NodeConfig {
        data_dir: dir.to_path_buf(),
        maintenance_interval: Duration::from_millis(10),
        retention_check_interval: Duration::from_millis(20),
        ..Default::default()
    }
}

fn rec(ts: i64, value: &str) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: None,
        value: Some(Bytes::copy_from_slice(value.as_bytes())),
        headers: vec![],
    }
}

async fn produce(node: &Node, log: &str, records: Vec<NewRecord>) -> Produced {
    node.produce(
        log,
        0,
        ProducePayload::Records(records),
        AckPolicy::Leader,
        None,
    )
    .await
    .expect("produce")
}

fn values(f: &Fetched) -> Vec<String> {
    split_batches(f.batches.clone())
        .flat_map(|b| b.expect("batch").records().expect("records"))
        .filter(|r| r.offset >= f.from)
        .map(|r| String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned())
        .collect()
}

fn spec(log: &str, start: FetchStart, wait: Duration) -> FetchSpec {
    FetchSpec {
        log: log.into(),
        partition: 0,
        start,
        max_bytes: 0,
        wait,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_poll_wakes_when_data_arrives() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::open(config(dir.path()), NodeComponents::default())
        .await
        .expect("open");
    node.create_log("lp", LogConfig::default())
        .await
        .expect("create");
    let waiter = {
        let node = node.clone();
        tokio::spawn(async move {
            let t = Instant::now();
            let f = node
                .fetch(spec("lp", FetchStart::Offset(0), Duration::from_secs(20)))
                .await
                .expect("fetch");
            (f, t.elapsed())
        })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    produce(&node, "lp", vec![rec(1, "hello")]).await;
    let (f, waited) = waiter.await.expect("join");
    assert_eq!(values(&f), vec!["hello"]);
    assert!(waited < Duration::from_secs(20), "woken by the append");

    // Nothing arrives: an empty answer after the wait.
    let f = node
        .fetch(spec("lp", FetchStart::Offset(1), Duration::from_millis(50)))
        .await
        .expect("fetch");
    assert!(f.batches.is_empty());
    assert_eq!(f.next_offset, LogOffset(1));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_by_timestamp_and_tail() {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::open(config(dir.path()), NodeComponents::default())
        .await
        .expect("open");
    node.create_log("ts", LogConfig::default())
        .await
        .expect("create");
    produce(&node, "ts", vec![rec(1000, "a"), rec(2000, "b")]).await;
    produce(&node, "ts", vec![rec(3000, "c")]).await;

    let f = node
        .fetch(spec("ts", FetchStart::Timestamp(1500), Duration::ZERO))
        .await
        .expect("fetch");
    assert_eq!(f.from, LogOffset(1));
    assert_eq!(values(&f), vec!["b", "c"]);

    let f = node
        .fetch(spec("ts", FetchStart::Timestamp(9999), Duration::ZERO))
        .await
        .expect("fetch");
    assert_eq!(f.from, LogOffset(3), "after every record: the end");
    assert!(f.batches.is_empty());

    let offsets = node
        .list_offsets("ts", &[], Some(2500))
        .await
        .expect("offsets");
    assert_eq!(offsets[0].earliest, LogOffset(0));
    assert_eq!(offsets[0].latest, LogOffset(3));
    assert_eq!(offsets[0].for_timestamp, Some(LogOffset(2)));

    // Tail: u64::MAX means "from the end".
    let f = node
        .fetch(spec("ts", FetchStart::Offset(u64::MAX), Duration::ZERO))
        .await
        .expect("tail");
    assert_eq!(f.from, LogOffset(3));
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_retention_moves_the_start_offset() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(100 * HOUR_US);
    let components = NodeComponents {
        clock: clock.clone(),
        ..NodeComponents::default()
    };
    let node = Node::open(config(dir.path()), components)
        .await
        .expect("open");
    let cfg = LogConfig {
        retention: Retention::Time(Duration::from_secs(3600)),
        ..Default::default()
    };
    node.create_log("old", cfg).await.expect("create");
    produce(&node, "old", vec![rec(100 * HOUR_US, "old-1")]).await;
    node.roll("old", &[]).await.expect("roll");
    produce(&node, "old", vec![rec(100 * HOUR_US + 10, "old-2")]).await;
    node.roll("old", &[]).await.expect("roll");
    produce(&node, "old", vec![rec(103 * HOUR_US, "new")]).await;

    clock.set(102 * HOUR_US);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let start = node.list_offsets("old", &[], None).await.expect("offsets")[0].earliest;
        if start == LogOffset(2) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "retention did not run (start {start:?})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = node
        .fetch(spec("old", FetchStart::Offset(0), Duration::ZERO))
        .await
        .expect_err("deleted");
    match err {
        GatewayError::OffsetOutOfRange { earliest, .. } => assert_eq!(earliest, LogOffset(2)),
        other => panic!("expected OFFSET_OUT_OF_RANGE, got {other}"),
    }
    let f = node
        .fetch(spec("old", FetchStart::Offset(2), Duration::ZERO))
        .await
        .expect("fetch");
    assert_eq!(values(&f), vec!["new"]);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn data_survives_restart_and_the_dir_is_locked() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let node = Node::open(config(dir.path()), NodeComponents::default())
            .await
            .expect("open");
        let second = Node::open(config(dir.path()), NodeComponents::default()).await;
        match second {
            Err(NodeError::DataDir { detail, .. }) => assert!(detail.contains("in use")),
            other => panic!("second node on the same dir must fail: {other:?}"),
        }
        node.create_log(
            "keep",
            LogConfig {
                partition_count: 2,
                ..Default::default()
            },
        )
        .await
        .expect("create");
        produce(&node, "keep", vec![rec(5, "x"), rec(6, "y")]).await;
        node.shutdown().await;
    }
    let node = Node::open(config(dir.path()), NodeComponents::default())
        .await
        .expect("reopen");
    let status = node.describe_log("keep").await.expect("describe");
    assert_eq!(status.config.partition_count, 2);
    assert_eq!(status.partitions[0].high_watermark, LogOffset(2));
    let p = produce(&node, "keep", vec![rec(7, "z")]).await;
    assert_eq!(p.base_offset, LogOffset(2));
    node.delete_log("keep").await.expect("delete");
    assert!(!dir.path().join("logs/keep").exists());
    assert!(matches!(
        node.describe_log("keep").await,
        Err(GatewayError::LogNotFound(_))
    ));
    node.shutdown().await;
}
