//! Controlled shutdown and leader balancing with real processes: a rolling restart under
//! `acks = quorum` load, one process at a time with SIGTERM, then one `kill -9` of a broker
//! for comparison in the same run. Two topologies: three nodes that are each a controller
//! voter and a broker, and three controller-only voters plus three broker-only nodes (Raft
//! learners), all six restarted.
//!
//! What must hold: no acknowledged record is lost or moved; every SIGTERM hands the node's
//! leaderships off before it stops (its log says so); after each restart the partitions go
//! back to their preferred replicas. What is reported (FIGURES): the longest gap between two
//! acknowledgements of one partition while a node stops and comes back, for the SIGTERMs and
//! for the kill.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{ClientError, LogInfo};
use pyralog_e2e::{create_log_when_ready, one_record, read_partition, RotatingClient, TestCluster};
use pyralog_proto::v1;

const LOG: &str = "rolling";
const PARTITIONS: u32 = 3;
const HANDED_OFF: &str = "controlled shutdown: leaderships and ISR places handed off";

/// Acknowledgements of one partition's producer: record id -> offset, and when each came.
#[derive(Debug, Default)]
struct Acked {
    offsets: BTreeMap<u64, u64>,
    times: Vec<Instant>,
    failures: usize,
    last_error: Option<String>,
}

/// Produces records `p{partition}-{id}` with `acks = quorum` until `stop`, never resending an
/// id (a write whose answer was lost may land once; an acknowledged one must be there).
async fn produce(
    cluster_urls: Vec<String>,
    options: pyralog_client::ClientOptions,
    partition: u32,
    stop: Arc<AtomicBool>,
) -> Acked {
    let mut acked = Acked::default();
    let mut nodes = RotatingClient::new(cluster_urls, options, partition as usize);
    let mut id = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let Some(client) = nodes.get().await else {
            continue;
        };
        id += 1;
        let request = one_record(
            LOG,
            partition,
            format!("p{partition}-{id}"),
            v1::AckPolicy::Quorum,
            3000,
        );
        let answer = tokio::time::timeout(Duration::from_secs(13), client.produce_raw(request))
            .await
            .unwrap_or_else(|_| Err(ClientError::InvalidArgument("no answer in 13 s".into())));
        match answer {
            Ok(r) => {
                acked.offsets.insert(id, r.base_offset);
                acked.times.push(Instant::now());
            }
            Err(e) => {
                acked.failures += 1;
                acked.last_error = Some(e.to_string());
                nodes.failed(&e);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    acked
}

/// The newest view of the log among running nodes (each partition from the node that knows
/// its highest epoch).
async fn view(cluster: &TestCluster) -> Option<LogInfo> {
    let mut best: Option<LogInfo> = None;
    for id in 1..=cluster.nodes.len() as u64 {
        if !cluster.nodes[(id - 1) as usize].is_running() {
            continue;
        }
        let describe = async { cluster.client(id).await?.describe_log(LOG).await };
        let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), describe).await else {
            continue;
        };
        match &mut best {
            None => best = Some(info),
            Some(b) => {
                for (mine, theirs) in b.partitions.iter_mut().zip(info.partitions) {
                    if theirs.epoch > mine.epoch {
                        *mine = theirs;
                    }
                }
            }
        }
    }
    best
}

/// Waits until every partition has a full ISR (and, with `preferred`, is led by its first
/// replica).
async fn wait_settled(cluster: &TestCluster, preferred: bool, what: &str) -> LogInfo {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(info) = view(cluster).await {
            let ok = info.partitions.iter().all(|p| {
                p.isr.len() == 3
                    && p.leader.is_some()
                    && (!preferred || p.leader.as_ref().map(|l| l.0) == p.replicas.first().copied())
            });
            if ok {
                return info;
            }
            last = Some(format!("{:?}", info.partitions));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what}; last view: {last:?}\n{}",
        cluster.logs()
    );
}

/// The longest gap between two consecutive acknowledgements that overlaps `[from, to]`.
fn longest_gap(times: &[Instant], from: Instant, to: Instant) -> Duration {
    times
        .windows(2)
        .filter(|w| w[1] > from && w[0] < to)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_else(|| to - from)
}

/// The HW of `partition` as its leader `node` reports it.
async fn leader_hw(cluster: &TestCluster, node: u64, partition: usize) -> u64 {
    let info = cluster
        .client(node)
        .await
        .expect("connect")
        .describe_log(LOG)
        .await
        .expect("describe");
    info.partitions[partition].high_watermark.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_with_sigterm_loses_nothing_and_hands_leadership_off_first() {
    let env = [("PYRALOG_CLUSTER__LEADER_BALANCE_INTERVAL", "1s")];
    rolling_restart(TestCluster::start(3, &env), "3 nodes").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rolling_restart_of_three_controllers_and_three_brokers_loses_nothing() {
    let env = [("PYRALOG_CLUSTER__LEADER_BALANCE_INTERVAL", "1s")];
    rolling_restart(
        TestCluster::start_split(3, 3, &env),
        "3 controllers + 3 brokers",
    )
    .await;
}

/// Waits until node `id` answers again and has applied the log's creation.
async fn wait_answers(cluster: &TestCluster, id: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let describe = async { cluster.client(id).await?.describe_log(LOG).await };
        if let Ok(Ok(_)) = tokio::time::timeout(Duration::from_secs(2), describe).await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "node {id} does not answer after its restart\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn rolling_restart(mut cluster: TestCluster, topology: &str) {
    let admin = cluster.wait_registered().await;
    let brokers = cluster.broker_ids();
    let config = v1::LogConfig {
        partition_count: Some(PARTITIONS),
        replication_factor: Some(3),
        min_in_sync_replicas: Some(2),
        ..Default::default()
    };
    create_log_when_ready(&admin, LOG, config, &cluster.logs()).await;
    let start = wait_settled(&cluster, true, "the log to settle").await;
    let leaders: Vec<u64> = start
        .partitions
        .iter()
        .filter_map(|p| p.leader.as_ref().map(|l| l.0))
        .collect();
    assert_eq!(
        leaders.len(),
        3,
        "every partition has a leader: {leaders:?}"
    );
    assert!(
        leaders.iter().all(|l| brokers.contains(l)),
        "only brokers lead: {leaders:?}"
    );

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
    tokio::time::sleep(Duration::from_secs(2)).await;

    // One node after another: SIGTERM, wait for its exit, start it again, wait until it is
    // back in every ISR and leads its preferred partitions again.
    let mut sigterm_phases = Vec::new();
    for id in 1..=cluster.nodes.len() as u64 {
        let begun = Instant::now();
        let code = cluster.node(id).stop();
        let stopped = begun.elapsed();
        assert_eq!(code, Some(0), "node {id} exits cleanly after SIGTERM");
        cluster.node(id).restart();
        wait_answers(&cluster, id).await;
        wait_settled(
            &cluster,
            true,
            &format!("node {id} back in sync and leading again"),
        )
        .await;
        sigterm_phases.push((id, begun, Instant::now(), stopped));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    // The same for one kill -9 of partition 0's leader, for comparison: it stays down until
    // its lease has run out and the controller has moved its leaderships and ISR places.
    let victim = view(&cluster)
        .await
        .and_then(|i| i.partitions[0].leader.as_ref().map(|l| l.0))
        .expect("a leader");
    let killed = Instant::now();
    cluster.node(victim).kill9();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let moved = view(&cluster).await.is_some_and(|i| {
            i.partitions.iter().all(|p| {
                p.leader.as_ref().is_some_and(|l| l.0 != victim) && !p.isr.contains(&victim)
            })
        });
        if moved {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no failover after the kill\n{}",
            cluster.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    cluster.node(victim).restart();
    wait_settled(&cluster, true, "the killed node back in sync").await;
    let kill_phase = (killed, Instant::now());
    tokio::time::sleep(Duration::from_secs(1)).await;

    stop.store(true, Ordering::SeqCst);
    let mut acked = Vec::new();
    for p in producers {
        acked.push(p.await.expect("producer task"));
    }

    // Every SIGTERM handed off before the node stopped: one line per node, which only a
    // completed hand-off writes (the kill -9 writes none).
    for id in brokers.iter().copied() {
        let log = cluster.node(id).log();
        assert_eq!(
            log.matches(HANDED_OFF).count(),
            1,
            "node {id} did not hand off at its SIGTERM:\n{log}"
        );
    }

    // Nothing acknowledged is lost or moved; no record twice.
    let info = wait_settled(&cluster, false, "a full ISR at the end").await;
    for (p, a) in acked.iter().enumerate() {
        assert!(
            a.offsets.len() > 100,
            "partition {p} made progress: {} acks, last error {:?}",
            a.offsets.len(),
            a.last_error
        );
        let part = &info.partitions[p];
        let leader = part.leader.as_ref().map(|l| l.0).expect("leader");
        let acked_end = a.offsets.values().max().map_or(0, |o| o + 1);
        let hw = leader_hw(&cluster, leader, p).await;
        assert!(
            hw >= acked_end,
            "partition {p}: the leader's HW {hw} is below acknowledged offset {}",
            acked_end - 1
        );
        let records = read_partition(
            &cluster.client(leader).await.expect("connect"),
            LOG,
            p as u32,
            hw,
        )
        .await;
        let mut at: BTreeMap<Bytes, u64> = BTreeMap::new();
        for (offset, value) in &records {
            if let Some(prev) = at.insert(value.clone(), *offset) {
                panic!("partition {p}: {value:?} at {prev} and {offset}");
            }
        }
        for (id, offset) in &a.offsets {
            assert_eq!(
                at.get(&Bytes::from(format!("p{p}-{id}"))),
                Some(offset),
                "partition {p}: acknowledged record {id} lost or moved"
            );
        }
    }

    // Figures: the longest gap between acknowledgements of one partition, per phase.
    let mut lines = Vec::new();
    let mut worst_sigterm = Duration::ZERO;
    for (id, from, to, stopped) in &sigterm_phases {
        let gaps: Vec<Duration> = acked
            .iter()
            .map(|a| longest_gap(&a.times, *from, *to))
            .collect();
        worst_sigterm = worst_sigterm.max(gaps.iter().copied().max().unwrap_or_default());
        lines.push(format!(
            "SIGTERM node {id} (exit after {stopped:?}): longest gap per partition {gaps:?}"
        ));
    }
    let kill_gaps: Vec<Duration> = acked
        .iter()
        .map(|a| longest_gap(&a.times, kill_phase.0, kill_phase.1))
        .collect();
    let worst_kill = kill_gaps.iter().copied().max().unwrap_or_default();
    lines.push(format!(
        "kill -9 node {victim}: longest gap per partition {kill_gaps:?}"
    ));
    let total: usize = acked.iter().map(|a| a.offsets.len()).sum();
    let failures: usize = acked.iter().map(|a| a.failures).sum();
    // Functional, not a timing target: a hand-off that did not happen would leave the
    // partitions waiting for the lease (2 s here) like the kill -9 does.
    assert!(
        worst_sigterm < worst_kill,
        "a SIGTERM cost as much as a kill -9: {worst_sigterm:?} vs {worst_kill:?}\n  {}",
        lines.join("\n  ")
    );
    println!(
        "FIGURES rolling restart ({topology}, {PARTITIONS} partitions, RF 3, acks quorum): \
         longest gap between acknowledgements of a partition: SIGTERM {worst_sigterm:?}, \
         kill -9 {worst_kill:?}; {total} acknowledged, {failures} failed attempts\n  {}",
        lines.join("\n  ")
    );
}
