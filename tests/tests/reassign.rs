//! Moving replicas with real processes: `ReassignPartitions` and `DecommissionNode` under
//! `acks = quorum` load, on three nodes that are each a controller voter and a broker, and on
//! three controller-only voters plus three broker-only nodes (Raft learners).
//!
//! What must hold: a partition moved to a new replica set (its leader among the replicas
//! that leave) loses no acknowledged record and its new replicas hold the data; a
//! decommissioned node ends in no replica set, and once it is killed every partition still
//! takes quorum writes; bad requests get a reason; a move's copy runs no faster than the
//! leader's `move_copy_rate`. Reported (FIGURES): produce p99 before and during the move, and
//! the throttled copy's rate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Client, ClientError, LogInfo};
use pyralog_e2e::{create_log_when_ready, one_record, read_partition, RotatingClient, TestCluster};
use pyralog_proto::v1;
use pyralog_types::Reason;

const LOG: &str = "moving";
const PARTITIONS: u32 = 3;

fn record(partition: u32, value: String) -> v1::ProduceRequest {
    one_record(LOG, partition, value, v1::AckPolicy::Quorum, 5000)
}

/// One partition's acknowledged records (id -> offset) and each write's latency.
#[derive(Debug, Default)]
struct Acked {
    offsets: BTreeMap<u64, u64>,
    latencies: Vec<(Instant, Duration)>,
}

async fn produce(
    urls: Vec<String>,
    options: pyralog_client::ClientOptions,
    partition: u32,
    stop: Arc<AtomicBool>,
) -> Acked {
    let mut acked = Acked::default();
    let mut nodes = RotatingClient::new(urls, options, partition as usize);
    let mut id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(c) = nodes.get().await else { continue };
        id += 1;
        let sent = Instant::now();
        let answer = tokio::time::timeout(
            Duration::from_secs(15),
            c.produce_raw(record(partition, format!("p{partition}-{id}"))),
        )
        .await
        .unwrap_or_else(|_| Err(ClientError::InvalidArgument("no answer in 15 s".into())));
        match answer {
            Ok(r) => {
                acked.offsets.insert(id, r.base_offset);
                acked.latencies.push((sent, sent.elapsed()));
            }
            Err(e) => {
                nodes.failed(&e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

async fn describe(cluster: &TestCluster, skip: u64) -> Option<LogInfo> {
    for id in (1..=cluster.nodes.len() as u64).filter(|id| *id != skip) {
        let got = async { cluster.client(id).await?.describe_log(LOG).await };
        if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), got).await {
            return Some(info);
        }
    }
    None
}

async fn wait_for(
    cluster: &TestCluster,
    skip: u64,
    what: &str,
    ok: impl Fn(&LogInfo) -> bool,
) -> LogInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(info) = describe(cluster, skip).await {
            if ok(&info) {
                return info;
            }
            last = Some(format!("{:?}", info.partitions));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; last: {last:?}\n{}",
        cluster.logs()
    );
}

fn p99(latencies: &[(Instant, Duration)], from: Instant, to: Instant) -> Option<Duration> {
    let mut window: Vec<Duration> = latencies
        .iter()
        .filter(|(t, _)| *t >= from && *t <= to)
        .map(|(_, d)| *d)
        .collect();
    window.sort_unstable();
    let i = (window.len() * 99 / 100).min(window.len().checked_sub(1)?);
    window.get(i).copied()
}

/// Everything `partition` holds below `hw` on node `id`, as value -> offset (no value twice).
async fn read(cluster: &TestCluster, id: u64, partition: u32, hw: u64) -> BTreeMap<Bytes, u64> {
    let c = cluster.client(id).await.expect("connect");
    let mut out = BTreeMap::new();
    for (offset, v) in read_partition(&c, LOG, partition, hw).await {
        if let Some(prev) = out.insert(v.clone(), offset) {
            panic!("partition {partition} on node {id}: {v:?} at {prev} and {offset}");
        }
    }
    out
}

/// Partition moves as the client takes them: (log, partition, new replicas).
type Moves = Vec<(String, u32, Vec<u64>)>;

async fn bad_requests_are_refused_with_a_reason(c: &Client, brokers: &[u64]) {
    let mut cases: Vec<(Moves, Reason)> = vec![
        (
            vec![("no-such-log".into(), 0, vec![1])],
            Reason::LogNotFound,
        ),
        (vec![(LOG.into(), 99, vec![1])], Reason::PartitionNotFound),
        (vec![(LOG.into(), 0, vec![])], Reason::InvalidRequest),
        (vec![(LOG.into(), 0, vec![1, 1])], Reason::InvalidRequest),
        (vec![(LOG.into(), 0, vec![42])], Reason::InvalidRequest),
        (vec![], Reason::InvalidRequest),
    ];
    if !brokers.contains(&1) {
        // Node 1 runs only the controller: it hosts no partitions.
        cases.push((vec![(LOG.into(), 0, vec![1])], Reason::InvalidRequest));
    }
    for (moves, reason) in cases {
        let e = c
            .reassign_partitions(moves.clone())
            .await
            .expect_err("refused");
        assert_eq!(e.reason(), Some(reason), "{moves:?}: {e}");
    }
    let e = c.decommission_node(42).await.expect_err("unknown node");
    assert_eq!(e.reason(), Some(Reason::InvalidRequest), "{e}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn moved_and_drained_replicas_lose_nothing_and_a_drained_node_can_die() {
    moves(TestCluster::start::<&str, &str>(3, &[]), "3 nodes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_controllers_and_three_brokers_move_and_drain_replicas_losing_nothing() {
    moves(
        TestCluster::start_split::<&str, &str>(3, 3, &[]),
        "3 controllers + 3 brokers",
    )
    .await;
}

async fn moves(mut cluster: TestCluster, topology: &str) {
    let admin = cluster.wait_registered().await;
    let brokers = cluster.broker_ids();
    // Admin requests go to node 1 and 2: controller-only nodes in the split topology.
    let config = v1::LogConfig {
        partition_count: Some(PARTITIONS),
        replication_factor: Some(2),
        min_in_sync_replicas: Some(2),
        ..Default::default()
    };
    create_log_when_ready(&admin, LOG, config, &cluster.logs()).await;
    let start = wait_for(&cluster, 0, "full ISRs", |i| {
        i.partitions.iter().all(|p| p.isr.len() == 2)
    })
    .await;
    bad_requests_are_refused_with_a_reason(&admin, &brokers).await;

    let urls: Vec<String> = brokers.iter().map(|id| cluster.url(*id)).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let producers: Vec<_> = (0..PARTITIONS)
        .map(|p| {
            tokio::spawn(produce(
                urls.clone(),
                cluster.client_options(),
                p,
                stop.clone(),
            ))
        })
        .collect();
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Move partition 0 off its leader: to the node it is not on, plus its follower.
    let p0 = &start.partitions[0];
    let leader = p0.leader.as_ref().map(|l| l.0).expect("a leader");
    let follower = p0
        .replicas
        .iter()
        .copied()
        .find(|r| *r != leader)
        .expect("a follower");
    let third = brokers
        .iter()
        .copied()
        .find(|n| !p0.replicas.contains(n))
        .expect("a third node");
    let target = vec![third, follower];
    let out = cluster.cli(
        1,
        &[
            "cluster",
            "reassign",
            LOG,
            "--partition",
            "0",
            "--replicas",
            &format!("{third},{follower}"),
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let moved_at = Instant::now();
    let moved = wait_for(&cluster, 0, "partition 0 on its new replicas", |i| {
        let p = &i.partitions[0];
        p.target.is_empty() && p.replicas == target && p.isr.len() == 2
    })
    .await;
    let move_done = Instant::now();
    assert_ne!(
        moved.partitions[0].leader.as_ref().map(|l| l.0),
        Some(leader),
        "the old leader left"
    );
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Decommission the first broker, wait until no partition lists it, then kill it.
    let gone = brokers[0];
    let out = cluster.cli(2, &["cluster", "decommission", &gone.to_string()], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let drained = wait_for(&cluster, 0, "the drained node in no replica set", |i| {
        i.partitions
            .iter()
            .all(|p| p.target.is_empty() && !p.replicas.contains(&gone) && p.isr.len() == 2)
    })
    .await;
    assert!(drained
        .partitions
        .iter()
        .all(|p| p.leader.as_ref().is_some_and(|l| l.0 != gone)));
    let described = admin_at(&cluster, 2)
        .await
        .describe_cluster()
        .await
        .expect("cluster");
    assert!(
        described
            .nodes
            .iter()
            .any(|n| n.node_id == gone && n.draining),
        "{described:?}"
    );
    cluster.node(gone).kill9();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for p in producers {
        acked.push(p.await.expect("producer"));
    }

    // Every partition still takes quorum writes with the drained node gone.
    let c = admin_at(&cluster, 2).await;
    for p in 0..PARTITIONS {
        c.produce_raw(record(p, format!("after-kill-{p}")))
            .await
            .unwrap_or_else(|e| panic!("partition {p} after the kill: {e}\n{}", cluster.logs()));
    }

    // Nothing acknowledged lost or moved, on the leader and on the other replica.
    let info = wait_for(&cluster, gone, "final view", |i| {
        i.partitions.iter().all(|p| p.leader.is_some())
    })
    .await;
    for (p, a) in acked.iter().enumerate() {
        assert!(
            a.offsets.len() > 50,
            "partition {p} made progress: {}",
            a.offsets.len()
        );
        let part = &info.partitions[p];
        let end = a.offsets.values().max().map_or(0, |o| o + 1);
        for replica in &part.replicas {
            // A follower's HW trails its leader's by a fetch round: ask the replica itself.
            let hw = replica_hw(&cluster, *replica, p, end).await;
            let held = read(&cluster, *replica, p as u32, hw).await;
            for (id, offset) in &a.offsets {
                assert_eq!(
                    held.get(&Bytes::from(format!("p{p}-{id}"))),
                    Some(offset),
                    "partition {p}: acknowledged record {id} lost or moved on node {replica}"
                );
            }
        }
    }
    let before = p99(
        &acked[0].latencies,
        moved_at - Duration::from_secs(3),
        moved_at,
    );
    let during = p99(&acked[0].latencies, moved_at, move_done);
    println!(
        "FIGURES reassignment of a partition ({topology}, RF 2, acks quorum, moving its leader off): \
         took {:?}; produce p99 before {before:?}, during {during:?}",
        move_done - moved_at
    );
}

/// Partition `p`'s HW as node `id` sees it, once it reaches `at_least`.
async fn replica_hw(cluster: &TestCluster, id: u64, p: usize, at_least: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let got = async { cluster.client(id).await?.describe_log(LOG).await };
        if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), got).await {
            let hw = info.partitions[p].high_watermark.0;
            if hw >= at_least {
                return hw;
            }
        }
        assert!(
            Instant::now() < deadline,
            "node {id}: HW of {p} below {at_least}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn admin_at(cluster: &TestCluster, id: u64) -> Client {
    cluster.client(id).await.expect("client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_s_replicas_go_to_distinct_racks_and_a_drained_one_stays_in_its_rack() {
    // One controller; brokers 2 and 3 in rack a, 4 and 5 in rack b.
    let rack = |id: u64| match id {
        1 => Vec::new(),
        2 | 3 => vec![("PYRALOG_CLUSTER__RACK".to_owned(), "rack-a".to_owned())],
        _ => vec![("PYRALOG_CLUSTER__RACK".to_owned(), "rack-b".to_owned())],
    };
    let cluster = TestCluster::start_split_with::<&str, &str>(1, 4, &[], &rack);
    let admin = cluster.wait_registered().await;
    let described = admin.describe_cluster().await.expect("cluster");
    let racks: BTreeMap<u64, String> = described
        .nodes
        .iter()
        .map(|n| (n.node_id, n.rack.clone().unwrap_or_default()))
        .collect();
    assert_eq!(racks[&2], "rack-a", "{described:?}");
    assert_eq!(racks[&5], "rack-b", "{described:?}");
    let out = cluster.cli(1, &["cluster", "describe"], None);
    assert!(out.stdout.contains("rack-b"), "{out:?}");

    let config = v1::LogConfig {
        partition_count: Some(8),
        replication_factor: Some(2),
        min_in_sync_replicas: Some(1),
        ..Default::default()
    };
    create_log_when_ready(&admin, LOG, config, &cluster.logs()).await;
    let info = admin.describe_log(LOG).await.expect("describe");
    let mut leaders = std::collections::BTreeSet::new();
    for p in &info.partitions {
        let spanned: std::collections::BTreeSet<&str> =
            p.replicas.iter().map(|r| racks[r].as_str()).collect();
        assert_eq!(
            spanned.len(),
            2,
            "partition {}: {:?}",
            p.partition,
            p.replicas
        );
        leaders.extend(p.leader.as_ref().map(|l| l.0));
    }
    assert_eq!(leaders.len(), 4, "every broker leads some partition");

    // Draining node 2 moves each of its replicas to node 3, the other node of rack a.
    let out = cluster.cli(1, &["cluster", "decommission", "2"], None);
    assert_eq!(out.code, Some(0), "{out:?}");
    let drained = wait_for(&cluster, 0, "node 2 in no replica set", |i| {
        i.partitions
            .iter()
            .all(|p| p.target.is_empty() && !p.replicas.contains(&2))
    })
    .await;
    for (before, after) in info.partitions.iter().zip(&drained.partitions) {
        if before.replicas.contains(&2) {
            assert!(after.replicas.contains(&3), "{:?}", after.replicas);
        }
        let spanned: std::collections::BTreeSet<&str> =
            after.replicas.iter().map(|r| racks[r].as_str()).collect();
        assert_eq!(spanned.len(), 2, "{:?}", after.replicas);
    }
}

/// A value of about `len` bytes that no codec shrinks (hex of a xorshift stream), unique by
/// its `tag` prefix.
fn incompressible(tag: &str, seed: u64, len: usize) -> String {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = format!("{tag}-");
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_str(&format!("{x:016x}"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_copies_at_the_throttled_rate_and_the_new_replica_holds_everything() {
    // 1 MiB/s on every node; the partition holds about 6 MiB when the move starts.
    const RATE: u64 = 1 << 20;
    const RECORDS: u64 = 96;
    const VALUE: usize = 64 << 10;
    let cluster = TestCluster::start(3, &[("PYRALOG_CLUSTER__MOVE_COPY_RATE", RATE.to_string())]);
    let admin = cluster.wait_registered().await;
    let config = v1::LogConfig {
        partition_count: Some(1),
        replication_factor: Some(1),
        min_in_sync_replicas: Some(1),
        ..Default::default()
    };
    create_log_when_ready(&admin, LOG, config, &cluster.logs()).await;
    let info = admin.describe_log(LOG).await.expect("describe");
    let leader = info.partitions[0]
        .leader
        .as_ref()
        .map(|l| l.0)
        .expect("a leader");
    let c = cluster.client(leader).await.expect("client");
    let mut bytes = 0u64;
    for i in 0..RECORDS {
        let value = incompressible(&format!("r{i}"), i, VALUE);
        bytes += value.len() as u64;
        c.produce_raw(one_record(LOG, 0, value, v1::AckPolicy::Leader, 5000))
            .await
            .unwrap_or_else(|e| panic!("record {i}: {e}\n{}", cluster.logs()));
    }

    // Add a replica; the leader stays. The copy runs at the node's move_copy_rate.
    let new = (1..=3).find(|n| *n != leader).expect("another node");
    let out = cluster.cli(
        1,
        &[
            "cluster",
            "reassign",
            LOG,
            "--partition",
            "0",
            "--replicas",
            &format!("{leader},{new}"),
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{out:?}");
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let midway = admin.describe_log(LOG).await.expect("describe");
    assert_eq!(
        midway.partitions[0].target,
        vec![leader, new],
        "still moving after 2 s: {:?}",
        midway.partitions[0]
    );
    wait_for(&cluster, 0, "the new replica in sync", |i| {
        let p = &i.partitions[0];
        p.target.is_empty() && p.isr.len() == 2
    })
    .await;
    let took = started.elapsed();
    // The bucket starts with one second of the rate; the rest cannot go faster than the rate.
    let floor = Duration::from_secs_f64((bytes - RATE) as f64 / RATE as f64 * 0.9);
    assert!(
        took >= floor,
        "{bytes} bytes moved in {took:?}, under {floor:?}"
    );

    let hw = replica_hw(&cluster, new, 0, RECORDS).await;
    let held = read(&cluster, new, 0, hw).await;
    for i in 0..RECORDS {
        let value = Bytes::from(incompressible(&format!("r{i}"), i, VALUE));
        assert_eq!(held.get(&value), Some(&i), "record {i} on the new replica");
    }
    println!(
        "FIGURES throttled move: {bytes} bytes at move_copy_rate {RATE} B/s took {took:?} \
         ({:.2} MB/s)",
        bytes as f64 / took.as_secs_f64() / 1e6
    );
}
