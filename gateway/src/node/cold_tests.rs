//! The node with a cold tier: archiving, reads across tiers, restores from the bucket, faults.
//!
//! The store is the S3-compatible server of `localstack/s3-server.sh` when
//! `PYRALOG_S3_ENDPOINT` is set (as `scripts/test.sh` does), else an in-memory store; the
//! round trip and the faults also run on the Azure Blob server of
//! `localstack/azure-server.sh` (when `PYRALOG_AZURE_ENDPOINT` is set) and on a local folder.
//! Each test uses its own prefix.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::ObjectStore;
use pyralog_cold_tier::{Fault, FaultyStore, ObjectStoreConfig, OpKind};
use pyralog_types::batch::{split_batches, NewRecord};
use pyralog_types::{AckPolicy, LogConfig, LogOffset, Record, Retention};

use super::*;
use crate::config::ColdTierSettings;

/// The Azure Blob server's config, or None (the test is skipped) when it is not running.
fn azure_config(test: &str) -> Option<ObjectStoreConfig> {
    let run = format!("{test}-{:x}", rand::random::<u64>());
    let container = std::env::var("PYRALOG_AZURE_CONTAINER").unwrap_or_else(|_| "pyralog".into());
    Some(ObjectStoreConfig {
        endpoint: Some(std::env::var("PYRALOG_AZURE_ENDPOINT").ok()?),
        allow_http: true,
        access_key_id: Some(std::env::var("PYRALOG_AZURE_ACCOUNT").ok()?),
        secret_access_key: Some(std::env::var("PYRALOG_AZURE_KEY").ok()?),
        ..ObjectStoreConfig::for_url(format!("az://{container}/{run}"))
    })
}

/// A local folder under `dir`.
fn folder_config(dir: &std::path::Path) -> ObjectStoreConfig {
    ObjectStoreConfig::for_url(format!("file://{}", dir.join("objects").display()))
}

pub(super) fn store_config(test: &str) -> ObjectStoreConfig {
    let run = format!("{test}-{:x}", rand::random::<u64>());
    match std::env::var("PYRALOG_S3_ENDPOINT") {
        Ok(endpoint) => {
            let bucket = std::env::var("PYRALOG_S3_BUCKET").unwrap_or_else(|_| "pyralog".into());
            ObjectStoreConfig {
                endpoint: Some(endpoint),
                allow_http: true,
                region: Some("us-east-1".into()),
                ..ObjectStoreConfig::for_url(format!("s3://{bucket}/{run}"))
            }
        }
        Err(_) => ObjectStoreConfig::for_url(format!("memory:///{run}")),
    }
}

pub(super) fn node_config(dir: &std::path::Path, store: &ObjectStoreConfig) -> NodeConfig {
    let mut cold = ColdTierSettings {
        store: store.clone(),
        archive_interval: Duration::from_millis(50),
        ..Default::default()
    };
    cold.cache.memory_bytes = 4 << 20;
    cold.cache.disk_bytes = 16 << 20;
    NodeConfig {
        data_dir: dir.to_path_buf(),
        maintenance_interval: Duration::from_millis(10),
        retention_check_interval: Duration::from_millis(100),
        cold_tier: Some(cold),
        ..Default::default()
    }
}

fn log_config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        max_batch_bytes: 64 << 10,
        max_record_bytes: 32 << 10,
        retention: Retention::Infinite,
        local_retention: Retention::Size(128 << 10),
        ..LogConfig::default()
    }
}

fn record(i: u64) -> NewRecord {
    NewRecord {
        timestamp: 1_700_000_000_000_000 + i as i64 * 1000,
        key: Some(Bytes::from(format!("key-{}", i % 17))),
        value: Some(Bytes::from(format!(
            "{{\"n\":{i},\"pad\":\"{}\"}}",
            "x".repeat((i % 400) as usize)
        ))),
        headers: vec![pyralog_types::Header {
            key: "i".into(),
            value: Bytes::from(i.to_le_bytes().to_vec()),
        }],
    }
}

async fn produce_n(node: &Node, log: &str, from: u64, n: u64) {
    let mut i = from;
    while i < from + n {
        let batch: Vec<NewRecord> = (i..(i + 20).min(from + n)).map(record).collect();
        i += batch.len() as u64;
        node.produce(
            log,
            0,
            ProducePayload::Records(batch),
            AckPolicy::Leader,
            None,
        )
        .await
        .expect("produce");
    }
}

/// Reads every record from `from` to the HW, following `next_offset` like a consumer.
pub(super) async fn consume_all(
    node: &Node,
    log: &str,
    from: u64,
) -> Result<Vec<Record>, GatewayError> {
    let mut out = Vec::new();
    let mut at = from;
    loop {
        let f = node
            .fetch(FetchSpec {
                log: log.into(),
                partition: 0,
                start: FetchStart::Offset(at),
                max_bytes: 32 << 10,
                wait: Duration::ZERO,
            })
            .await?;
        if f.batches.is_empty() && f.next_offset >= f.high_watermark {
            return Ok(out);
        }
        for b in split_batches(f.batches.clone()) {
            let b = b.expect("batch");
            out.extend(
                b.records()
                    .expect("records")
                    .into_iter()
                    .filter(|r| r.offset.0 >= at),
            );
        }
        at = f.next_offset.0.max(at);
    }
}

fn check_model(records: &[Record], range: std::ops::Range<u64>) {
    let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
    assert_eq!(
        offsets,
        range.clone().collect::<Vec<_>>(),
        "dense, in order, exactly once"
    );
    for r in records {
        let want = record(r.offset.0);
        assert_eq!(
            (r.timestamp, &r.key, &r.value),
            (want.timestamp, &want.key, &want.value)
        );
        assert_eq!(r.headers, want.headers);
    }
}

pub(super) async fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(
            t.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub(super) fn partition_of(node: &Node, log: &str) -> Arc<Partition> {
    node.partition(log, 0).expect("partition")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cross_tiers_and_a_wiped_node_serves_the_archive() {
    reads_cross_tiers_and_restore(store_config("cross")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cross_tiers_and_a_wiped_node_serves_the_archive_on_azure() {
    let Some(cfg) = azure_config("cross") else {
        println!("skipped: no Azure endpoint");
        return;
    };
    reads_cross_tiers_and_restore(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_cross_tiers_and_a_wiped_node_serves_the_archive_on_a_local_folder() {
    let objects = tempfile::tempdir().expect("tempdir");
    reads_cross_tiers_and_restore(folder_config(objects.path())).await;
}

async fn reads_cross_tiers_and_restore(store_cfg: ObjectStoreConfig) {
    let store: Arc<dyn ObjectStore> = pyralog_cold_tier::open_store(&store_cfg).expect("store");
    let dir = tempfile::tempdir().expect("tempdir");
    let components = NodeComponents {
        object_store: Some(store.clone()),
        ..NodeComponents::default()
    };
    let node = Node::open(node_config(dir.path(), &store_cfg), components.clone())
        .await
        .expect("open");
    node.create_log("tiered", log_config())
        .await
        .expect("create");
    produce_n(&node, "tiered", 0, 3000).await;
    let p = partition_of(&node, "tiered");
    wait_until("local retention after archiving", || {
        p.start_offset() > LogOffset::ZERO && p.log().segments().len() <= 4
    })
    .await;
    let archived = p.cold().and_then(|c| c.end_offset()).expect("archived");
    assert!(
        p.start_offset() <= archived,
        "nothing is deleted before it is archived"
    );
    assert_eq!(
        node.list_offsets("tiered", &[0], None)
            .await
            .expect("offsets")[0]
            .earliest,
        LogOffset::ZERO
    );

    // One consumer from offset 0 crosses from cold to hot.
    let all = consume_all(&node, "tiered", 0).await.expect("consume");
    check_model(&all, 0..3000);
    // Timestamp lookup finds archived records too.
    let ts = record(123).timestamp;
    let f = node
        .fetch(FetchSpec {
            log: "tiered".into(),
            partition: 0,
            start: FetchStart::Timestamp(ts),
            max_bytes: 0,
            wait: Duration::ZERO,
        })
        .await
        .expect("fetch by time");
    assert_eq!(f.from, LogOffset(123));

    // Wipe the disk; a new node on the same bucket recreates the log and serves the archive.
    node.shutdown().await;
    drop(node);
    drop(dir);
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Node::open(node_config(dir.path(), &store_cfg), components)
        .await
        .expect("reopen");
    // Archiving went on until shutdown: the restored end is what was committed by then.
    let archived = partition_of(&node, "tiered")
        .cold()
        .and_then(|c| c.end_offset())
        .expect("archive");
    let restored = consume_all(&node, "tiered", 0)
        .await
        .expect("consume restored");
    check_model(&restored, 0..archived.0);
    // New records continue after the archive, in a newer epoch.
    let produced = node
        .produce(
            "tiered",
            0,
            ProducePayload::Records(vec![record(archived.0)]),
            AckPolicy::Leader,
            None,
        )
        .await
        .expect("produce after restore");
    assert_eq!(produced.base_offset, archived);
    assert!(produced.epoch > all[0].epoch);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_faults_delay_archiving_but_never_lose_or_corrupt() {
    faults_delay_archiving_but_never_lose(store_config("faults")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_faults_delay_archiving_but_never_lose_or_corrupt_on_azure() {
    let Some(cfg) = azure_config("faults") else {
        println!("skipped: no Azure endpoint");
        return;
    };
    faults_delay_archiving_but_never_lose(cfg).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_store_faults_delay_archiving_but_never_lose_or_corrupt_on_a_local_folder() {
    let objects = tempfile::tempdir().expect("tempdir");
    faults_delay_archiving_but_never_lose(folder_config(objects.path())).await;
}

async fn faults_delay_archiving_but_never_lose(store_cfg: ObjectStoreConfig) {
    let inner = pyralog_cold_tier::open_store(&store_cfg).expect("store");
    let faulty = Arc::new(FaultyStore::new(inner));
    let plan = faulty.plan().clone();
    let dir = tempfile::tempdir().expect("tempdir");
    let components = NodeComponents {
        object_store: Some(faulty),
        ..NodeComponents::default()
    };
    let node = Node::open(node_config(dir.path(), &store_cfg), components)
        .await
        .expect("open");
    node.create_log("faulty", log_config())
        .await
        .expect("create");
    // Uploads fail, time out, and succeed-but-report-failure; manifests too.
    plan.inject(OpKind::Put, Fault::Error, 6);
    plan.inject(OpKind::Put, Fault::FailAfterPut, 4);
    plan.inject(OpKind::Put, Fault::Timeout(Duration::from_millis(50)), 3);
    produce_n(&node, "faulty", 0, 2000).await;
    let p = partition_of(&node, "faulty");
    let t = Instant::now();
    loop {
        let archived = p
            .cold()
            .and_then(|c| c.end_offset())
            .unwrap_or(LogOffset::ZERO);
        assert!(
            p.start_offset() <= archived.max(LogOffset::ZERO),
            "local data deleted before its archive committed"
        );
        if p.start_offset() > LogOffset::ZERO && p.log().segments().len() <= 4 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(90),
            "archiving never recovered"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        plan.stats().injected >= 13,
        "every planned fault fired: {:?}",
        plan.stats()
    );
    check_model(
        &consume_all(&node, "faulty", 0).await.expect("consume"),
        0..2000,
    );

    // Reads of archived data during store failures: a retriable error, never wrong data.
    plan.inject(OpKind::Get, Fault::Error, 1000);
    match consume_all(&node, "faulty", 0).await {
        Err(e) => assert_eq!(e.reason(), pyralog_types::Reason::StorageError, "{e}"),
        Ok(records) => check_model(&records, 0..2000), // served from the read cache
    }
    plan.clear();
    check_model(
        &consume_all(&node, "faulty", 0).await.expect("consume"),
        0..2000,
    );
    node.shutdown().await;
}
