//! Raising a log's partition count (`AddPartitions`, `pyralog logs alter --partitions`) with
//! real processes.
//!
//! What must hold: on a three-node cluster with an active consumer group, the new partitions
//! are assigned within one rebalance and consumed, and a keyed producer starts using them once
//! its metadata is refreshed; a standalone node keeps its grown log across a restart; bad
//! requests (fewer partitions, over the limit, an unknown log) are refused with a reason and,
//! from the CLI, exit code 2.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyralog_client::{
    AckPolicy, AssignmentStrategy, Client, GroupConfig, GroupConsumer, OffsetReset, ProduceRecord,
    Producer, ProducerConfig,
};
use pyralog_e2e::{create_log_when_ready, one_record, TestCluster, TestNode};
use pyralog_proto::v1;
use pyralog_types::Reason;

const LOG: &str = "growing";

/// Produces `n` records to `partition` with `acks = quorum`.
async fn produce_to(c: &Client, partition: u32, n: usize, tag: &str) {
    for i in 0..n {
        let request = one_record(
            LOG,
            partition,
            format!("{tag}-{partition}-{i}"),
            v1::AckPolicy::Quorum,
            10_000,
        );
        c.produce_raw(request)
            .await
            .unwrap_or_else(|e| panic!("produce to {partition}: {e}"));
    }
}

/// A group member polling in the background: what it consumed (by partition), its
/// assignment and generation after each poll.
struct Member {
    seen: Arc<Mutex<BTreeMap<u32, BTreeSet<String>>>>,
    state: Arc<Mutex<(BTreeSet<u32>, u64)>>,
    task: tokio::task::JoinHandle<()>,
}

async fn member(c: Client) -> Member {
    let mut config = GroupConfig::new("growers", vec![LOG.to_owned()]);
    config.strategy = AssignmentStrategy::Sticky;
    config.reset = OffsetReset::Earliest;
    config.session_timeout = Duration::from_secs(5);
    config.heartbeat_interval = Duration::from_millis(200);
    config.auto_commit = Some(Duration::from_millis(500));
    let mut consumer = GroupConsumer::subscribe(c, config)
        .await
        .expect("subscribe");
    let seen = Arc::new(Mutex::new(BTreeMap::<u32, BTreeSet<String>>::new()));
    let state = Arc::new(Mutex::new((BTreeSet::new(), 0)));
    let task = tokio::spawn({
        let seen = seen.clone();
        let state = state.clone();
        async move {
            loop {
                if let Ok(records) = consumer.poll(Duration::from_millis(200)).await {
                    let mut seen = seen.lock().expect("lock");
                    for r in records {
                        let value = r.record.value.clone().unwrap_or_default();
                        seen.entry(r.partition)
                            .or_default()
                            .insert(String::from_utf8_lossy(&value).into_owned());
                    }
                }
                let assigned = consumer.assignment().into_iter().map(|(_, p)| p).collect();
                *state.lock().expect("lock") = (assigned, consumer.generation());
            }
        }
    });
    Member { seen, state, task }
}

async fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ok() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn new_partitions_go_to_the_group_in_one_rebalance_and_keyed_records_reach_them() {
    let cluster = TestCluster::start::<&str, &str>(3, &[]);
    let admin = cluster.wait_registered().await;
    let config = v1::LogConfig {
        partition_count: Some(2),
        replication_factor: Some(3),
        min_in_sync_replicas: Some(2),
        ..Default::default()
    };
    create_log_when_ready(&admin, LOG, config, &cluster.logs()).await;
    for p in 0..2 {
        produce_to(&admin, p, 20, "before").await;
    }
    let a = member(cluster.client(1).await.expect("client 1")).await;
    let b = member(cluster.client(2).await.expect("client 2")).await;
    let split = |m: &Member| m.state.lock().expect("lock").clone();
    wait_until(
        "two members with a partition each",
        Duration::from_secs(30),
        || split(&a).0.len() == 1 && split(&b).0.len() == 1,
    )
    .await;
    let generations = [split(&a).1, split(&b).1];

    // A keyed producer that refreshes its partition count often.
    let producer = Producer::new(
        cluster.client(3).await.expect("client 3"),
        ProducerConfig {
            acks: AckPolicy::Quorum,
            metadata_max_age: Duration::from_millis(200),
            ..Default::default()
        },
    );

    // Grow from 2 to 6 through another node than the members'.
    let grown = cluster
        .client(3)
        .await
        .expect("client 3")
        .add_partitions(LOG, 6)
        .await
        .unwrap_or_else(|e| panic!("add partitions: {e}\n{}", cluster.logs()));
    assert_eq!(grown.config.partition_count, 6);
    assert_eq!(grown.partitions.len(), 6);
    for p in &grown.partitions {
        assert!(
            p.leader.is_some(),
            "partition {} has a leader at once: {p:?}",
            p.partition
        );
        assert_eq!(p.replicas.len(), 3);
    }
    // Asking again with the same count is a no-op (a retry); fewer is refused.
    assert_eq!(
        admin
            .add_partitions(LOG, 6)
            .await
            .expect("retry")
            .partitions
            .len(),
        6
    );
    let fewer = admin
        .add_partitions(LOG, 4)
        .await
        .expect_err("fewer partitions");
    assert_eq!(fewer.reason(), Some(Reason::InvalidConfig), "{fewer}");
    assert!(fewer.to_string().contains("only grow"), "{fewer}");

    // One rebalance: together the members hold all six partitions, three each (sticky keeps
    // the old ones where they were).
    wait_until(
        "the new partitions assigned",
        Duration::from_secs(30),
        || {
            let (sa, sb) = (split(&a), split(&b));
            sa.0.len() == 3 && sb.0.len() == 3 && sa.0.union(&sb.0).count() == 6
        },
    )
    .await;
    // A member's generation is the group generation its assignment last changed in: both
    // changed in one and the same generation (one rebalance), after the growth.
    let after = [split(&a).1, split(&b).1];
    let latest = generations[0].max(generations[1]);
    assert!(
        after[0] == after[1] && after[0] > latest,
        "one rebalance: generations {generations:?} -> {after:?}"
    );

    // Records in the new partitions are consumed.
    for p in 0..6 {
        produce_to(&admin, p, 20, "after").await;
    }
    let seen_all = || {
        let (x, y) = (a.seen.lock().expect("lock"), b.seen.lock().expect("lock"));
        (0..6u32).all(|p| {
            let n = |s: &BTreeMap<u32, BTreeSet<String>>| {
                s.get(&p)
                    .map_or(0, |v| v.iter().filter(|r| r.starts_with("after")).count())
            };
            n(&x) + n(&y) >= 20
        })
    };
    wait_until(
        "records of every partition consumed",
        Duration::from_secs(30),
        seen_all,
    )
    .await;

    // The keyed producer spreads keys over all six partitions now.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut partitions = BTreeSet::new();
    for k in 0..200 {
        let record = ProduceRecord::new(Some(format!("key-{k}")), format!("keyed-{k}"));
        let delivered = producer
            .send(LOG, record)
            .await
            .expect("send")
            .await
            .expect("delivered");
        partitions.insert(delivered.partition);
    }
    assert!(
        partitions.iter().any(|p| *p >= 2),
        "200 keys never reached a new partition: {partitions:?}"
    );
    a.task.abort();
    b.task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standalone_log_keeps_its_new_partitions_across_a_restart_and_bad_counts_are_refused() {
    let mut node = TestNode::start_serve("", Default::default());
    let c = node.client().await;
    c.create_log(
        LOG,
        v1::LogConfig {
            partition_count: Some(1),
            ..Default::default()
        },
    )
    .await
    .expect("create");
    let grown = c.add_partitions(LOG, 3).await.expect("grow");
    assert_eq!(grown.partitions.len(), 3);
    produce_to(&c, 2, 5, "new").await;

    // Refusals, each with its reason.
    let cases: [(&str, u32, Reason); 4] = [
        (LOG, 2, Reason::InvalidConfig),
        (LOG, 0, Reason::InvalidConfig),
        (LOG, 10_001, Reason::InvalidConfig),
        ("no-such-log", 4, Reason::LogNotFound),
    ];
    for (log, count, reason) in cases {
        let e = c.add_partitions(log, count).await.expect_err("refused");
        assert_eq!(e.reason(), Some(reason), "{log} to {count}: {e}");
    }
    let bad_name = c
        .add_partitions("bad name!", 4)
        .await
        .expect_err("bad name");
    assert_eq!(
        bad_name.reason(),
        Some(Reason::InvalidLogName),
        "{bad_name}"
    );

    // The CLI: a clear message and exit code 2 for a bad count; the grown log after a restart.
    let out = node.cli(&["logs", "alter", LOG, "--partitions", "1"], None);
    assert_eq!(out.code, Some(2), "{out:?}");
    assert!(out.stderr.contains("only grow"), "{out:?}");
    let out = node.cli(&["logs", "alter", LOG, "--partitions", "4"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    assert!(out.stdout.contains("has 4 partitions"), "{out:?}");

    node.stop();
    node.restart();
    let c = node.client().await;
    let info = c.describe_log(LOG).await.expect("describe");
    assert_eq!(info.config.partition_count, 4);
    assert_eq!(info.partitions.len(), 4);
    assert_eq!(
        info.partitions[2].high_watermark.0, 5,
        "records of a new partition kept"
    );
    produce_to(&c, 3, 1, "after-restart").await;
}
