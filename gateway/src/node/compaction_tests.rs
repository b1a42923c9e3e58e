//! Compaction and retention on a node with a cold tier: the must-holds of the compactor issue.
//!
//! The store is the S3-compatible server of `localstack/s3-server.sh` when
//! `PYRALOG_S3_ENDPOINT` is set (as `scripts/test.sh` does), else an in-memory store. The
//! node's compaction ticker is off; each test runs passes explicitly (`run_compaction`, the
//! code path of `pyralog compaction run`), and a manual clock decides what is old.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_compactor::{BucketValue, BUCKET_HEADER};
use pyralog_types::batch::NewRecord;
use pyralog_types::{
    AckPolicy, CompactionMode, DownsampleTier, FsyncPolicy, LogConfig, LogOffset, ManualClock,
    Record, Retention, TimeSeriesSpec,
};

use super::cold_tests::{consume_all, node_config, partition_of, store_config, wait_until};
use super::*;

const SEC: i64 = 1_000_000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;
/// "Now" for the manual clock: a round number of days, so bucket edges are easy to reason about.
const NOW: i64 = 20_000 * DAY;

struct TestNode {
    node: Arc<Node>,
    store: Arc<dyn ObjectStore>,
    store_cfg: pyralog_cold_tier::ObjectStoreConfig,
    clock: Arc<ManualClock>,
    _dir: tempfile::TempDir,
}

async fn start(test: &str, retention_check: Duration) -> TestNode {
    let store_cfg = store_config(test);
    let store: Arc<dyn ObjectStore> = pyralog_cold_tier::open_store(&store_cfg).expect("store");
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(NOW);
    let node = open_node(dir.path(), &store_cfg, &store, &clock, retention_check).await;
    TestNode {
        node,
        store,
        store_cfg,
        clock,
        _dir: dir,
    }
}

async fn open_node(
    dir: &std::path::Path,
    store_cfg: &pyralog_cold_tier::ObjectStoreConfig,
    store: &Arc<dyn ObjectStore>,
    clock: &Arc<ManualClock>,
    retention_check: Duration,
) -> Arc<Node> {
    let mut config = node_config(dir, store_cfg);
    config.compaction.enabled = false;
    config.retention_check_interval = retention_check;
    let components = NodeComponents {
        clock: clock.clone(),
        object_store: Some(store.clone()),
        ..NodeComponents::default()
    };
    Node::open(config, components).await.expect("open node")
}

fn base_config(mode: CompactionMode) -> LogConfig {
    LogConfig {
        segment_bytes: 1 << 20,
        max_batch_bytes: 1 << 20,
        max_record_bytes: 64 << 10,
        fsync: FsyncPolicy::Never,
        retention: Retention::Infinite,
        local_retention: Retention::Infinite,
        compaction: mode,
        delete_retention: Duration::from_secs(3600),
        ..LogConfig::default()
    }
}

async fn produce(node: &Node, log: &str, records: Vec<NewRecord>) {
    for chunk in records.chunks(1000) {
        node.produce(
            log,
            0,
            ProducePayload::Records(chunk.to_vec()),
            AckPolicy::Leader,
            None,
        )
        .await
        .expect("produce");
    }
}

/// Rolls, then waits until everything is archived (and, with a local retention, deleted
/// locally down to `hot_start_at_least`).
async fn archive_everything(node: &Node, log: &str, hot_start_at_least: u64) {
    node.roll(log, &[]).await.expect("roll");
    let p = partition_of(node, log);
    let end = p.high_watermark();
    wait_until("everything archived", || {
        p.cold().and_then(|c| c.end_offset()) == Some(end)
            && p.start_offset() >= LogOffset(hot_start_at_least)
    })
    .await;
}

async fn compact(node: &Node, log: &str) -> pyralog_compactor::CompactionReport {
    let mut passes = node.run_compaction(log).await.expect("run compaction");
    let (_, res) = passes.pop().expect("one partition");
    res.expect("compaction pass")
}

fn rec(ts: i64, key: &str, value: Option<&str>) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: Some(Bytes::from(key.to_owned())),
        value: value.map(|v| Bytes::from(v.to_owned())),
        headers: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_user_profile_example_keeps_offsets_30_and_40() {
    let t = start("profiles", Duration::from_secs(3600)).await;
    t.node
        .create_log("profiles", base_config(CompactionMode::KeyBased))
        .await
        .expect("create");
    // Offsets 10, 20, 30, 40 are the profile updates; every other offset is an old tombstone
    // of a throwaway key (gone once past delete_retention), so only the profiles can remain.
    let old = NOW - 2 * DAY;
    let records: Vec<NewRecord> = (0..=40)
        .map(|o| match o {
            10 => rec(old, "user-1", Some("{\"name\":\"Ann\",\"city\":\"Oslo\"}")),
            20 => rec(old, "user-2", Some("{\"name\":\"Bob\",\"city\":\"Rome\"}")),
            30 => rec(
                old,
                "user-1",
                Some("{\"name\":\"Ann\",\"city\":\"Bergen\"}"),
            ),
            40 => rec(old, "user-2", Some("{\"name\":\"Bob\",\"city\":\"Milan\"}")),
            _ => rec(old, &format!("noise-{o}"), None),
        })
        .collect();
    for r in records {
        produce(&t.node, "profiles", vec![r]).await;
    }
    archive_everything(&t.node, "profiles", 0).await;
    let report = compact(&t.node, "profiles").await;
    assert_eq!(report.records_read, 41 * 2, "read once per tier");
    assert_eq!(
        report.segments_rewritten(),
        2,
        "the archived copy and the local one"
    );

    let want = |records: &[Record]| {
        let got: Vec<(u64, &[u8], &[u8])> = records
            .iter()
            .map(|r| {
                (
                    r.offset.0,
                    r.key.as_deref().unwrap_or_default(),
                    r.value.as_deref().unwrap_or_default(),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                (
                    30,
                    &b"user-1"[..],
                    &b"{\"name\":\"Ann\",\"city\":\"Bergen\"}"[..]
                ),
                (
                    40,
                    &b"user-2"[..],
                    &b"{\"name\":\"Bob\",\"city\":\"Milan\"}"[..]
                ),
            ]
        );
    };
    want(&consume_all(&t.node, "profiles", 0).await.expect("consume"));
    // The archive alone says the same: a node on an empty disk and the same bucket.
    let dir = tempfile::tempdir().expect("tempdir");
    t.node.shutdown().await;
    let fresh = open_node(
        dir.path(),
        &t.store_cfg,
        &t.store,
        &t.clock,
        Duration::from_secs(3600),
    )
    .await;
    want(
        &consume_all(&fresh, "profiles", 0)
            .await
            .expect("consume archive"),
    );
    fresh.shutdown().await;
}

/// The key and value of update `i`: 1,000 keys, 1% tombstones.
fn update(i: u64, keys: u64) -> (String, Option<String>) {
    let key = format!("key-{:04}", (i * 7919) % keys);
    let value = (i % 100 != 37).then(|| format!("{{\"update\":{i},\"pad\":\"{:020}\"}}", i));
    (key, value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_updates_compact_to_the_latest_value_per_key_then_tombstones_go() {
    let n: u64 = std::env::var("PYRALOG_COMPACTION_UPDATES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let keys = 1_000u64;
    let t = start("million-updates", Duration::from_secs(3600)).await;
    let config = LogConfig {
        segment_bytes: 4 << 20,
        // Most archived segments leave the local disk: the pass compacts both tiers.
        local_retention: Retention::Size(2 << 20),
        ..base_config(CompactionMode::KeyBased)
    };
    t.node.create_log("updates", config).await.expect("create");
    let t0 = NOW - HOUR / 2;
    let mut model: BTreeMap<String, (u64, Option<String>)> = BTreeMap::new();
    let mut batch = Vec::with_capacity(1000);
    for i in 0..n {
        let (key, value) = update(i, keys);
        batch.push(rec(t0 + i as i64, &key, value.as_deref()));
        model.insert(key, (i, value));
        if batch.len() == 1000 {
            produce(&t.node, "updates", std::mem::take(&mut batch)).await;
        }
    }
    produce(&t.node, "updates", batch).await;
    archive_everything(&t.node, "updates", 1).await;

    // Baseline in the same run: plain GETs of the same objects from the same store.
    let segments = partition_of(&t.node, "updates")
        .cold()
        .expect("cold")
        .manifest()
        .segments;
    let parquet_bytes: u64 = segments.iter().map(|s| s.size_bytes).sum();
    let started = Instant::now();
    for s in &segments {
        let got = t.store.get(&s.path()).await.expect("get");
        got.bytes().await.expect("body");
    }
    let raw_get = parquet_bytes as f64 / started.elapsed().as_secs_f64() / 1e6;

    let started = Instant::now();
    let report = compact(&t.node, "updates").await;
    let secs = started.elapsed().as_secs_f64();
    let pass_mb_s = parquet_bytes as f64 / secs / 1e6;
    println!(
        "compaction of {n} updates over {keys} keys: {:.0} records/s, {:.1} MB/s of payload \
         ({:.2} s); {:.1} MB/s of Parquet vs raw GET {:.1} MB/s: ratio {:.3}; \
         stored bytes {} -> {} ({:.4} of before); records {} -> {}",
        report.records_read as f64 / secs,
        report.payload_bytes_read as f64 / secs / 1e6,
        secs,
        pass_mb_s,
        raw_get,
        pass_mb_s / raw_get,
        report.bytes_before,
        report.bytes_after,
        report.bytes_after as f64 / report.bytes_before.max(1) as f64,
        report.records_before,
        report.records_after,
    );

    // Exactly the latest record per key, tombstones included (they are younger than
    // delete_retention), each at the offset it was written at.
    let check = |records: &[Record], with_tombstones: bool| {
        let mut seen = BTreeMap::new();
        for r in records {
            let key = String::from_utf8(r.key.clone().expect("key").to_vec()).expect("utf8");
            let value = r
                .value
                .as_ref()
                .map(|v| String::from_utf8(v.to_vec()).expect("utf8"));
            assert!(
                seen.insert(key.clone(), (r.offset.0, value)).is_none(),
                "key {key} appears twice"
            );
        }
        let want: BTreeMap<String, (u64, Option<String>)> = model
            .iter()
            .filter(|(_, (_, v))| with_tombstones || v.is_some())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(seen, want);
    };
    let after = consume_all(&t.node, "updates", 0).await.expect("consume");
    check(&after, true);
    assert!(
        model.values().any(|(_, v)| v.is_none()),
        "the run has deleted keys"
    );
    assert!(report.pending_tombstones > 0);
    // Nothing new: the next pass reads nothing.
    let idle = compact(&t.node, "updates").await;
    assert!(idle.skipped && idle.records_read == 0, "{idle:?}");

    // Past delete_retention the tombstones go too.
    t.clock.advance(Duration::from_secs(2 * 3600));
    let report = compact(&t.node, "updates").await;
    assert!(!report.skipped, "tombstones were waiting to expire");
    assert!(report.records_after < report.records_before);
    let after = consume_all(&t.node, "updates", 0).await.expect("consume");
    check(&after, false);
    t.node.shutdown().await;
}

fn sample_value(series: u64, minute: u64) -> u64 {
    (series * 7919 + minute * 31) % 1000
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_week_of_samples_downsamples_into_exact_buckets() {
    let series_n = 50u64;
    let minutes = 7 * 24 * 60u64;
    let t = start("week", Duration::from_secs(3600)).await;
    let config = LogConfig {
        segment_bytes: 4 << 20,
        // Only the archive is read back (downsampling is a cold-tier rewrite).
        local_retention: Retention::Size(1),
        time_series: Some(TimeSeriesSpec {
            value_field: "v".into(),
            tags: Vec::new(),
            tiers: vec![
                DownsampleTier {
                    after: Duration::from_secs(86_400),
                    bucket: Duration::from_secs(600),
                },
                DownsampleTier {
                    after: Duration::from_secs(7 * 86_400),
                    bucket: Duration::from_secs(3600),
                },
            ],
        }),
        ..base_config(CompactionMode::TimeSeries)
    };
    t.node.create_log("metrics", config).await.expect("create");
    // The week ends 12 hours ago: its last day stays raw, the first 12 hours are past 7 days.
    let start_ts = NOW - 7 * DAY - 12 * HOUR;
    let at = |m: u64| start_ts + (m as i64) * 60 * SEC;
    let mut batch = Vec::with_capacity(1000);
    for m in 0..minutes {
        for s in 0..series_n {
            let v = sample_value(s, m);
            batch.push(rec(
                at(m),
                &format!("s{s:02}"),
                Some(&format!("{{\"v\":{v}}}")),
            ));
            if batch.len() == 1000 {
                produce(&t.node, "metrics", std::mem::take(&mut batch)).await;
            }
        }
    }
    produce(&t.node, "metrics", batch).await;
    let total = series_n * minutes;
    archive_everything(&t.node, "metrics", total).await;

    let started = Instant::now();
    let report = compact(&t.node, "metrics").await;
    let secs = started.elapsed().as_secs_f64();
    let rows = consume_all(&t.node, "metrics", 0).await.expect("consume");
    println!(
        "downsampling {total} samples: {:.0} records/s ({:.2} s); {} rows after, ratio {:.1}:1; \
         stored bytes {} -> {}",
        report.records_read as f64 / secs,
        secs,
        rows.len(),
        total as f64 / rows.len() as f64,
        report.bytes_before,
        report.bytes_after
    );

    let mut accounted = 0u64;
    let (mut hours, mut tens, mut raw) = (0, 0, 0);
    for r in &rows {
        let header = r.headers.iter().find(|h| h.key == BUCKET_HEADER);
        let Some(h) = header else {
            // Raw: its 10-minute bucket has not ended a day ago.
            assert!(r.timestamp - r.timestamp.rem_euclid(600 * SEC) + 600 * SEC > NOW - DAY);
            accounted += 1;
            raw += 1;
            continue;
        };
        let b: BucketValue =
            serde_json::from_slice(r.value.as_deref().expect("value")).expect("bucket");
        assert_eq!(h.value.as_ref(), b.bucket_seconds.to_string().as_bytes());
        assert_eq!(r.timestamp, b.bucket_start);
        let width = b.bucket_seconds as i64 * SEC;
        let hour_due = b.bucket_start - b.bucket_start.rem_euclid(HOUR) + HOUR <= NOW - 7 * DAY;
        match b.bucket_seconds {
            3600 => {
                assert!(hour_due, "hour bucket only past 7 days");
                hours += 1;
            }
            600 => {
                assert!(!hour_due && b.bucket_start + width <= NOW - DAY);
                tens += 1;
            }
            other => panic!("unexpected bucket width {other}"),
        }
        // The bucket against the raw data it replaced.
        let s: u64 = b.series.trim_start_matches('s').parse().expect("series");
        let values: Vec<u64> = (0..minutes)
            .filter(|&m| (b.bucket_start..b.bucket_start + width).contains(&at(m)))
            .map(|m| sample_value(s, m))
            .collect();
        assert_eq!(
            b.count as usize,
            values.len(),
            "count of {} at {}",
            b.series,
            b.bucket_start
        );
        assert_eq!(b.sum, values.iter().sum::<u64>() as f64);
        assert_eq!(b.min, *values.iter().min().expect("min") as f64);
        assert_eq!(b.max, *values.iter().max().expect("max") as f64);
        accounted += b.count;
    }
    assert_eq!(accounted, total, "every sample is in exactly one row");
    assert!(
        hours > 0 && tens > 0 && raw > 0,
        "all three tiers present: {hours} {tens} {raw}"
    );
    // A second pass at the same time finds nothing to do.
    let again = compact(&t.node, "metrics").await;
    assert_eq!(again.segments_rewritten(), 0);
    t.node.shutdown().await;
}

/// Six closed segments, one per hour of age (6h old ... 1h old), each archived and still
/// local; returns the base offset of each.
async fn six_hourly_segments(node: &Node, log: &str) -> Vec<u64> {
    let mut bases = Vec::new();
    for g in 0..6u64 {
        bases.push(partition_of(node, log).high_watermark().0);
        let ts = NOW - (6 - g as i64) * HOUR;
        let records = (0..100)
            .map(|i| rec(ts + i, &format!("k{i}"), Some(&"x".repeat(100))))
            .collect();
        produce(node, log, records).await;
        node.roll(log, &[]).await.expect("roll");
    }
    let p = partition_of(node, log);
    let end = p.high_watermark();
    wait_until("archived", || {
        p.cold().and_then(|c| c.end_offset()) == Some(end)
    })
    .await;
    bases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_by_time_and_size_deletes_exactly_the_due_segments_on_both_tiers() {
    let t = start("retention", Duration::from_secs(3600)).await;
    // The size budget is known once segments exist: "by-size" gets it after a dry run.
    let mut bases = BTreeMap::new();
    let logs = [
        ("keep", Retention::Infinite),
        // Older than 3.5 hours: the 6h, 5h and 4h segments.
        (
            "by-time",
            Retention::Time(Duration::from_secs(3 * 3600 + 1800)),
        ),
        ("sizing", Retention::Infinite),
    ];
    for (log, retention) in logs {
        let config = LogConfig {
            retention,
            ..base_config(CompactionMode::None)
        };
        t.node.create_log(log, config).await.expect("create");
        bases.insert(log, six_hourly_segments(&t.node, log).await);
    }
    let p = |log: &str| partition_of(&t.node, log);
    let cold_sizes: Vec<u64> = p("sizing")
        .cold()
        .expect("cold")
        .manifest()
        .segments
        .iter()
        .map(|s| s.size_bytes)
        .collect();
    assert_eq!(cold_sizes.len(), 6);
    // The same data again: the newest two archived segments fit the budget (the empty active
    // segment counts 0 bytes), so the four oldest go.
    let config = LogConfig {
        retention: Retention::Size(cold_sizes[4] + cold_sizes[5]),
        ..base_config(CompactionMode::None)
    };
    t.node.create_log("by-size", config).await.expect("create");
    bases.insert("by-size", six_hourly_segments(&t.node, "by-size").await);

    // Retention through the node's own path, as its ticker runs it.
    for log in ["keep", "by-time", "by-size"] {
        let open = t.node.log(log).expect("log");
        t.node.apply_retention(&open).await;
    }

    for (log, first_kept) in [("keep", 0usize), ("by-time", 3), ("by-size", 4)] {
        let cut = LogOffset(bases[log][first_kept]);
        let part = p(log);
        let cold = part.cold().expect("cold").manifest();
        assert_eq!(
            cold.segments.len(),
            6 - first_kept,
            "{log}: archived segments left"
        );
        assert_eq!(cold.start_offset(), Some(cut), "{log}: archive start");
        assert_eq!(part.start_offset(), cut, "{log}: local start");
        assert_eq!(part.earliest(), cut, "{log}: earliest");
        let all = consume_all(&t.node, log, cut.0).await.expect("consume");
        let want: Vec<u64> = (cut.0..part.high_watermark().0).collect();
        assert_eq!(all.iter().map(|r| r.offset.0).collect::<Vec<_>>(), want);
        if cut > LogOffset::ZERO {
            match consume_all(&t.node, log, 0).await {
                Err(GatewayError::OffsetOutOfRange { earliest, .. }) => assert_eq!(earliest, cut),
                other => panic!("{log}: expected OFFSET_OUT_OF_RANGE, got {other:?}"),
            }
        }
    }
    t.node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_during_deletion_sees_data_or_out_of_range_never_a_gap() {
    let t = start("retention-race", Duration::from_millis(20)).await;
    let config = LogConfig {
        segment_bytes: 16 << 10,
        max_batch_bytes: 16 << 10,
        max_record_bytes: 8 << 10,
        retention: Retention::Time(Duration::from_secs(3600)),
        local_retention: Retention::Size(32 << 10),
        ..base_config(CompactionMode::None)
    };
    t.node.create_log("racy", config).await.expect("create");
    // 2000 records over 2 hours of age; segments roll every ~16 KiB.
    let records: Vec<NewRecord> = (0..2000)
        .map(|i| {
            rec(
                NOW - 2 * HOUR + i * (HOUR / 1000),
                &format!("k{i}"),
                Some(&"y".repeat(200)),
            )
        })
        .collect();
    for chunk in records.chunks(20) {
        produce(&t.node, "racy", chunk.to_vec()).await;
    }
    // A reader starts at 0 while retention (every 20 ms) deletes the older half on both tiers.
    let mut at = 0u64;
    let mut resyncs = 0;
    let hw = partition_of(&t.node, "racy").high_watermark().0;
    while at < hw {
        let f = t
            .node
            .fetch(FetchSpec {
                log: "racy".into(),
                partition: 0,
                start: FetchStart::Offset(at),
                max_bytes: 4 << 10,
                wait: Duration::ZERO,
            })
            .await;
        match f {
            Ok(f) => {
                for b in pyralog_types::batch::split_batches(f.batches.clone()) {
                    for r in b.expect("batch").records().expect("records") {
                        if r.offset.0 < at {
                            continue;
                        }
                        assert_eq!(r.offset.0, at, "no gap inside retained data");
                        at += 1;
                    }
                }
                // The log is dense: an answer never moves the reader past what it returned.
                assert_eq!(f.next_offset.0, at, "no silent skip inside retained data");
            }
            Err(GatewayError::OffsetOutOfRange { earliest, .. }) => {
                assert!(earliest.0 > at, "out of range only below the new earliest");
                at = earliest.0;
                resyncs += 1;
            }
            Err(e) => panic!("unexpected error: {e}"),
        }
        tokio::task::yield_now().await;
    }
    let p = partition_of(&t.node, "racy");
    wait_until("retention caught up", || p.earliest() > LogOffset(900)).await;
    println!("reader resynchronised {resyncs} times");
    t.node.shutdown().await;
}
