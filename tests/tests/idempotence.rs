//! The idempotent producer with real processes: acknowledgements are dropped on the way back
//! (the client's fault injection discards a fraction of successful answers, as a broken
//! connection would) and the partition leader is killed mid-run; every record must be in the
//! log exactly once. The same run without idempotence shows the faults do duplicate records,
//! so the check can fail.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{
    AckPolicy, Client, ConsumerConfig, LogOffset, PartitionConsumer, ProduceRecord, Producer,
    ProducerConfig,
};
use pyralog_e2e::TestCluster;
use pyralog_proto::v1;

const PARTITIONS: u32 = 3;

async fn client(cluster: &TestCluster, skip: Option<u64>) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in 1..=cluster.nodes.len() as u64 {
            if Some(id) == skip {
                continue;
            }
            if let Ok(c) = Client::connect(cluster.url(id)).await {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "no node answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn create(c: &Client, name: &str) {
    let config = v1::LogConfig {
        partition_count: Some(PARTITIONS),
        replication_factor: Some(3),
        min_in_sync_replicas: Some(2),
        segment_bytes: Some(256 << 10),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while let Err(e) = c.create_log(name, config.clone()).await {
        assert!(Instant::now() < deadline, "create {name}: {e}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many times each record value appears in the log, read from each partition's leader
/// (a follower's high watermark can trail the leader's for a moment).
async fn counts(c: &Client, log: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let info = c.describe_log(log).await.expect("describe");
    for p in info.partitions {
        let (_, leader) = p.leader.expect("every partition has a leader");
        let at_leader = Client::connect(format!("http://{leader}"))
            .await
            .expect("connect to the leader");
        let end = at_leader
            .list_offsets(log, None)
            .await
            .expect("offsets")
            .into_iter()
            .find(|o| o.partition == p.partition)
            .map_or(0, |o| o.latest);
        let mut consumer = PartitionConsumer::new(
            at_leader,
            log,
            p.partition,
            LogOffset::ZERO,
            ConsumerConfig {
                wait: Duration::ZERO,
                ..Default::default()
            },
        );
        while consumer.position().0 < end {
            for r in consumer.poll().await.expect("poll") {
                let v =
                    String::from_utf8_lossy(r.value.as_deref().unwrap_or_default()).into_owned();
                *out.entry(v).or_insert(0) += 1;
            }
        }
    }
    out
}

/// Produces `n` records while 20% of acknowledgements are dropped and, halfway, the leader
/// of partition 0 is killed (and restarted later). Returns the records' counts in the log.
async fn run(
    cluster: &mut TestCluster,
    log: &str,
    n: u64,
    idempotent: bool,
) -> BTreeMap<String, u32> {
    let c = client(cluster, None).await;
    create(&c, log).await;
    let producer = Producer::new(
        c.clone(),
        ProducerConfig {
            acks: AckPolicy::Quorum,
            enable_idempotence: idempotent,
            fault_drop_acks: 0.2,
            batch_bytes: 16 << 10,
            linger: Duration::from_millis(2),
            request_timeout: Duration::from_secs(5),
            retries: 50,
            ..Default::default()
        },
    );
    let mut pending = Vec::new();
    let mut killed = None;
    for i in 0..n {
        let r = ProduceRecord::new(Some(format!("k{}", i % 97)), Bytes::from(format!("r{i}")));
        pending.push(producer.send(log, r).await.expect("send"));
        if i == n / 2 {
            for d in pending.drain(..) {
                d.await.expect("delivered before the kill");
            }
            let info = c.describe_log(log).await.expect("describe");
            let leader = info.partitions[0]
                .leader
                .as_ref()
                .and_then(|(_, addr)| cluster.id_of(addr))
                .expect("partition 0 has a leader");
            cluster.node(leader).kill9();
            killed = Some(leader);
        }
    }
    for d in pending.drain(..) {
        d.await.expect("delivered");
    }
    producer.close().await.expect("close");
    let counted = counts(&client(cluster, killed).await, log).await;
    if let Some(id) = killed {
        cluster.node(id).restart();
    }
    counted
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn lost_acks_and_a_leader_failover_leave_every_record_exactly_once() {
    let n = pyralog_e2e::env_usize("PYRALOG_IDEMPOTENCE_RECORDS", 20_000) as u64;
    let mut cluster = TestCluster::start::<&str, &str>(3, &[]);

    let with = run(&mut cluster, "exactly-once", n, true).await;
    let missing: Vec<u64> = (0..n)
        .filter(|i| !with.contains_key(&format!("r{i}")))
        .take(10)
        .collect();
    let duplicated: Vec<(&String, &u32)> = with.iter().filter(|(_, c)| **c > 1).take(10).collect();
    println!(
        "idempotence on: {n} records, {} distinct in the log, {} duplicated",
        with.len(),
        with.values().filter(|c| **c > 1).count()
    );
    assert!(missing.is_empty(), "lost: {missing:?}");
    assert!(duplicated.is_empty(), "duplicated: {duplicated:?}");

    // The same faults without idempotence do store retried batches twice.
    let without = run(&mut cluster, "at-least-once", n, false).await;
    let dups = without.values().filter(|c| **c > 1).count();
    println!("idempotence off: {dups} of {n} records stored more than once");
    assert!(dups > 0, "the injected faults never caused a retry");
    assert!((0..n).all(|i| without.contains_key(&format!("r{i}"))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_with_a_dedup_id_are_stored_once_across_producer_restarts() {
    let node = pyralog_e2e::TestNode::start();
    let c = node.client().await;
    c.create_log(
        "payments",
        v1::LogConfig {
            partition_count: Some(1),
            ..Default::default()
        },
    )
    .await
    .expect("create");
    // A job replays its input after a crash: the same keys are not stored twice.
    let input = b"pay-1:10\npay-2:20\n";
    let args = [
        "produce",
        "payments",
        "--key-separator",
        ":",
        "--dedup-by-key",
    ];
    let out = pyralog_e2e::run_cli(node.url(), &args, Some(input));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = pyralog_e2e::run_cli(node.url(), &args, Some(b"pay-1:10\npay-2:20\npay-3:30\n"));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let counted = counts(&c, "payments").await;
    assert_eq!(
        counted.into_iter().collect::<Vec<_>>(),
        vec![
            ("10".to_owned(), 1),
            ("20".to_owned(), 1),
            ("30".to_owned(), 1)
        ]
    );
    // In one batch too; each delivery names the stored record's offset.
    let p = Producer::new(c.clone(), ProducerConfig::default());
    let mut acks = Vec::new();
    for (id, v) in [("pay-4", "40"), ("pay-4", "40"), ("pay-1", "10")] {
        let r = ProduceRecord {
            dedup_id: Some(id.to_owned()),
            ..ProduceRecord::new(None::<Bytes>, v)
        };
        acks.push(p.send("payments", r).await.expect("send"));
    }
    p.flush().await.expect("flush");
    let mut offsets = Vec::new();
    for a in acks {
        offsets.push(a.await.expect("delivered").offset.0);
    }
    assert_eq!(offsets, vec![3, 3, 0]);
    p.close().await.expect("close");
    assert_eq!(counts(&c, "payments").await.len(), 4);
}
