//! Replication and failover with real processes: three `pyralog serve` nodes on loopback,
//! each a controller voter; leaders killed (`kill -9`), paused (`SIGSTOP`) and restarted
//! while producers and consumers run. A checker verifies design §10's invariants: no
//! acknowledged record lost or duplicated, one record per offset on every replica,
//! byte-identical replicas below the HW, offsets never going backwards for a consumer.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{Client, ClientError, ClientOptions, LogInfo};
use pyralog_e2e::{RotatingClient, TestCluster};
use pyralog_proto::v1;
use pyralog_types::Reason;

const LOG: &str = "ledger";

fn log_config(rf: u32, min_isr: u32) -> v1::LogConfig {
    v1::LogConfig {
        partition_count: Some(1),
        replication_factor: Some(rf),
        min_in_sync_replicas: Some(min_isr),
        segment_bytes: Some(256 << 10),
        ..Default::default()
    }
}

/// Connects to the first node that answers.
async fn any_client(cluster: &TestCluster, skip: &[u64]) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        for id in 1..=cluster.nodes.len() as u64 {
            if skip.contains(&id) || !cluster.nodes[(id - 1) as usize].is_running() {
                continue;
            }
            if let Ok(c) = cluster.client(id).await {
                return c;
            }
        }
        assert!(Instant::now() < deadline, "no node answers");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `pred` holds for the log as `id` describes it.
async fn wait_for(
    cluster: &TestCluster,
    id: u64,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&LogInfo) -> bool,
) -> LogInfo {
    let deadline = Instant::now() + timeout;
    let mut last = None;
    while Instant::now() < deadline {
        let describe = async {
            let c = cluster.client(id).await?;
            c.describe_log(LOG).await
        };
        match tokio::time::timeout(Duration::from_secs(2), describe).await {
            Ok(Ok(info)) if pred(&info) => return info,
            Ok(Ok(info)) => last = Some(format!("{info:?}")),
            Ok(Err(e)) => last = Some(e.to_string()),
            Err(_) => last = Some("no answer within 2 s".into()),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "timed out waiting for {what} on node {id}; last: {last:?}\n{}",
        cluster.logs()
    );
}

async fn create_log(cluster: &TestCluster, config: v1::LogConfig) {
    let client = any_client(cluster, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match client.create_log(LOG, config.clone()).await {
            Ok(_) => return,
            Err(e) if e.reason() == Some(Reason::LogAlreadyExists) => return,
            Err(e) if e.is_retriable() && Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(200)).await
            }
            Err(e) => panic!("create log: {e}\n{}", cluster.logs()),
        }
    }
}

fn leader_of(info: &LogInfo) -> Option<u64> {
    info.partitions[0].leader.as_ref().map(|(id, _)| *id)
}

/// Everything a node holds locally for partition 0 below `end`: raw batch bytes and the
/// decoded (offset, value) pairs.
async fn read_replica(cluster: &TestCluster, id: u64, end: u64) -> (Vec<u8>, Vec<(u64, Bytes)>) {
    let client = cluster.client(id).await.expect("connect");
    let mut raw = Vec::new();
    let mut records = Vec::new();
    let mut from = 0u64;
    while from < end {
        let resp = client
            .fetch(fetch_from(from, 4 << 20, 0))
            .await
            .unwrap_or_else(|e| panic!("fetch from node {id} at {from}: {e}"));
        let batches = resp.batches;
        assert!(
            !batches.is_empty(),
            "node {id} has nothing at {from} (< {end})"
        );
        for batch in pyralog_types::batch::split_batches(batches.clone()) {
            let batch = batch.expect("well-formed batch");
            for r in batch.records().expect("records") {
                if r.offset.0 >= from && r.offset.0 < end {
                    records.push((r.offset.0, r.value.clone().unwrap_or_default()));
                }
            }
            if batch.last_offset().0 < end {
                raw.extend_from_slice(batch.as_bytes());
            }
        }
        from = resp.next_offset;
    }
    (raw, records)
}

/// One producer attempt per unique id (ids are never resent, so a write that failed but
/// landed shows up once, never twice). Returns acknowledged ids and their offsets.
#[derive(Debug, Default)]
struct ProduceLog {
    acked: BTreeMap<u64, u64>,
}

/// A produce request for one record with `value` to partition 0.
fn one_record(value: String, acks: v1::AckPolicy, timeout_ms: u32) -> v1::ProduceRequest {
    v1::ProduceRequest {
        log: LOG.into(),
        partition: 0,
        payload: Some(v1::produce_request::Payload::Records(v1::RecordList {
            records: vec![v1::NewRecord {
                value: Some(Bytes::from(value)),
                ..Default::default()
            }],
        })),
        acks: acks as i32,
        timeout_ms,
        ..Default::default()
    }
}

/// A fetch of partition 0 from `from`.
fn fetch_from(from: u64, max_bytes: u32, wait_ms: u32) -> v1::FetchRequest {
    v1::FetchRequest {
        log: LOG.into(),
        partition: 0,
        start: Some(v1::fetch_request::Start::Offset(from)),
        max_bytes,
        wait_ms,
        ..Default::default()
    }
}

async fn produce_one(client: &Client, id: u64, acks: v1::AckPolicy) -> Result<u64, ClientError> {
    produce_with_epoch(client, id, acks)
        .await
        .map(|(offset, _)| offset)
}

/// Produces one record; returns its offset and the epoch that wrote it.
async fn produce_with_epoch(
    client: &Client,
    id: u64,
    acks: v1::AckPolicy,
) -> Result<(u64, u64), ClientError> {
    let call = client.produce_raw(one_record(format!("record-{id}"), acks, 3000));
    // The server answers within its 3 s timeout; redirects and a stalled peer get 10 s more.
    let resp = tokio::time::timeout(Duration::from_secs(13), call)
        .await
        .map_err(|_| ClientError::InvalidArgument(format!("produce {id}: no answer in 13 s")))??;
    Ok((resp.base_offset, resp.epoch))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_node_cluster_replicates_and_every_replica_holds_the_same_bytes() {
    let cluster = TestCluster::start::<&str, &str>(3, &[]);
    create_log(&cluster, log_config(3, 2)).await;
    let info = wait_for(&cluster, 1, "a leader", Duration::from_secs(20), |i| {
        leader_of(i).is_some() && i.partitions[0].isr.len() == 3
    })
    .await;
    assert_eq!(info.partitions[0].replicas.len(), 3);
    let client = any_client(&cluster, &[]).await;
    let mut log = ProduceLog::default();
    for id in 0..200u64 {
        let offset = produce_one(&client, id, v1::AckPolicy::Quorum)
            .await
            .unwrap_or_else(|e| panic!("produce {id}: {e}\n{}", cluster.logs()));
        log.acked.insert(id, offset);
    }
    let hw = 200;
    for node in 1..=3 {
        wait_for(&cluster, node, "the HW", Duration::from_secs(10), |i| {
            i.partitions[0].high_watermark.0 >= hw
        })
        .await;
    }
    let (raw1, recs1) = read_replica(&cluster, 1, hw).await;
    for node in 2..=3 {
        let (raw, _) = read_replica(&cluster, node, hw).await;
        assert!(
            raw == raw1,
            "node {node}'s bytes differ from node 1's below the HW"
        );
    }
    let by_value: HashMap<Bytes, u64> = recs1.iter().map(|(o, v)| (v.clone(), *o)).collect();
    for (id, offset) in &log.acked {
        assert_eq!(
            by_value.get(&Bytes::from(format!("record-{id}"))),
            Some(offset)
        );
    }
}

#[derive(Debug, Default)]
struct ProducerReport {
    acked: BTreeMap<u64, u64>,
    /// When each acknowledgement arrived, and the epoch that wrote the record.
    acked_at: Vec<(Instant, u64)>,
    failures: usize,
    last_error: Option<String>,
}

/// Produces unique records (never resending an id) until `stop`, moving to the next node when one is gone.
async fn run_producer(
    urls: Vec<String>,
    options: ClientOptions,
    acks: v1::AckPolicy,
    stop: Stop,
) -> ProducerReport {
    let mut report = ProducerReport::default();
    let mut nodes = RotatingClient::new(urls, options, 0);
    let mut id = 0u64;
    while !stop.is_set() {
        let Some(c) = nodes.get().await else { continue };
        id += 1;
        match produce_with_epoch(&c, id, acks).await {
            Ok((offset, epoch)) => {
                report.acked.insert(id, offset);
                report.acked_at.push((Instant::now(), epoch));
            }
            Err(e) => {
                report.failures += 1;
                report.last_error = Some(e.to_string());
                nodes.failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    report
}

#[derive(Debug, Default)]
struct ConsumerReport {
    seen: BTreeMap<u64, Bytes>,
    polls: usize,
}

/// Tails the log from 0 until `stop`, asserting that offsets only move forward, that the log
/// is dense, and that an offset read twice (after reconnecting elsewhere) is the same record.
async fn run_consumer(
    urls: Vec<String>,
    options: ClientOptions,
    stop: Stop,
) -> Result<ConsumerReport, String> {
    let mut report = ConsumerReport::default();
    let mut position = 0u64;
    let mut nodes = RotatingClient::new(urls, options, 1);
    while !stop.is_set() {
        let Some(c) = nodes.get().await else { continue };
        let resp = c.fetch(fetch_from(position, 1 << 20, 200)).await;
        let resp = match resp {
            Ok(r) => r,
            Err(e) => {
                nodes.failed(&e);
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        report.polls += 1;
        for batch in pyralog_types::batch::split_batches(resp.batches) {
            let batch = batch.map_err(|e| e.to_string())?;
            for r in batch.records().map_err(|e| e.to_string())? {
                if r.offset.0 < position {
                    continue;
                }
                if r.offset.0 != position {
                    return Err(format!(
                        "gap or jump: expected {position}, got {}",
                        r.offset.0
                    ));
                }
                let value = r.value.clone().unwrap_or_default();
                if let Some(prev) = report.seen.get(&r.offset.0) {
                    if *prev != value {
                        return Err(format!("offset {} means two records", r.offset.0));
                    }
                }
                report.seen.insert(r.offset.0, value);
                position += 1;
            }
        }
        if resp.next_offset < position {
            return Err(format!(
                "non-monotonic poll: next_offset {} after position {position}",
                resp.next_offset
            ));
        }
    }
    Ok(report)
}

/// A stop flag shared by background tasks.
#[derive(Debug, Clone, Default)]
struct Stop(Arc<AtomicBool>);

impl Stop {
    fn set(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    fn is_set(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// The newest view of the log among the running nodes (highest epoch): one node's view can
/// lag another's for a moment.
async fn newest_view(cluster: &TestCluster) -> LogInfo {
    let mut best: Option<LogInfo> = None;
    for id in 1..=cluster.nodes.len() as u64 {
        if !cluster.nodes[(id - 1) as usize].is_running() {
            continue;
        }
        let describe = async {
            let c = cluster.client(id).await?;
            c.describe_log(LOG).await
        };
        if let Ok(Ok(info)) = tokio::time::timeout(Duration::from_secs(2), describe).await {
            if best
                .as_ref()
                .is_none_or(|b| info.partitions[0].epoch > b.partitions[0].epoch)
            {
                best = Some(info);
            }
        }
    }
    best.expect("no node describes the log")
}

/// The leader as node `ask` sees it, once that node knows an epoch newer than `after` led by
/// someone other than `not` (nodes' views may lag one another, and leadership may already
/// have moved once, e.g. a slow start that cost a node its lease).
async fn wait_for_new_leader(
    cluster: &TestCluster,
    ask: u64,
    not: Option<u64>,
    after: u64,
) -> (u64, u64) {
    let info = wait_for(cluster, ask, "a new leader", Duration::from_secs(30), |i| {
        leader_of(i).is_some_and(|l| Some(l) != not) && i.partitions[0].epoch.0 > after
    })
    .await;
    (
        leader_of(&info).unwrap_or_default(),
        info.partitions[0].epoch.0,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_quorum_writes_survive_leader_kills_and_restarts() {
    let mut cluster = TestCluster::start::<&str, &str>(3, &[]);
    create_log(&cluster, log_config(3, 2)).await;
    wait_for(&cluster, 1, "a full ISR", Duration::from_secs(20), |i| {
        leader_of(i).is_some() && i.partitions[0].isr.len() == 3
    })
    .await;
    let urls: Vec<String> = (1..=3).map(|id| cluster.url(id)).collect();
    let stop = Stop::default();
    let producer = tokio::spawn(run_producer(
        urls.clone(),
        cluster.client_options(),
        v1::AckPolicy::Quorum,
        stop.clone(),
    ));
    let consumer = tokio::spawn(run_consumer(urls, cluster.client_options(), stop.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let info = newest_view(&cluster).await;

    // 1. kill -9 the leader; a new one takes over from the ISR.
    let first = leader_of(&info).expect("leader");
    let killed_at = Instant::now();
    cluster.node(first).kill9();
    let ask = if first == 1 { 2 } else { 1 };
    let (second, epoch2) =
        wait_for_new_leader(&cluster, ask, Some(first), info.partitions[0].epoch.0).await;
    assert!(
        epoch2 > info.partitions[0].epoch.0,
        "a new leader means a new epoch"
    );
    tokio::time::sleep(Duration::from_secs(2)).await;

    // 2. the old leader comes back and rejoins the ISR as a follower.
    cluster.node(first).restart();
    wait_for(
        &cluster,
        second,
        "the old leader back in the ISR",
        Duration::from_secs(30),
        |i| i.partitions[0].isr.len() == 3,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;

    // 3. kill the current leader too.
    cluster.node(second).kill9();
    let (third, _) = wait_for_new_leader(&cluster, first, Some(second), epoch2).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.set();
    let report = producer.await.expect("producer task");
    let consumed = consumer
        .await
        .expect("consumer task")
        .unwrap_or_else(|e| panic!("consumer saw an inconsistency: {e}\n{}", cluster.logs()));
    cluster.node(second).restart();

    // Failover time: from the kill to the first acknowledgement written in a newer epoch
    // (acknowledgements of the old leader's last writes can still arrive after the kill).
    let old_epoch = info.partitions[0].epoch.0;
    let failover = report
        .acked_at
        .iter()
        .find(|(t, epoch)| *t > killed_at && *epoch > old_epoch)
        .map(|(t, _)| t.duration_since(killed_at));
    println!(
        "FIGURES failover (kill -9 of the leader to the first acknowledgement in the new epoch): {:?}; \
         {} acknowledged, {} failed attempts, last error {:?}",
        failover,
        report.acked.len(),
        report.failures,
        report.last_error
    );
    assert!(
        report.acked.len() > 50,
        "the producer made progress: {report:?}"
    );

    // Every replica ends with the same log: wait for a full ISR and one HW.
    let info = wait_for(
        &cluster,
        third,
        "all three in sync",
        Duration::from_secs(30),
        |i| i.partitions[0].isr.len() == 3,
    )
    .await;
    let hw = info.partitions[0].high_watermark.0;
    for node in 1..=3 {
        wait_for(
            &cluster,
            node,
            "the final HW",
            Duration::from_secs(20),
            |i| i.partitions[0].high_watermark.0 >= hw,
        )
        .await;
    }
    let (raw_leader, records) = read_replica(&cluster, third, hw).await;
    for node in (1..=3).filter(|n| *n != third) {
        let (raw, _) = read_replica(&cluster, node, hw).await;
        assert!(
            raw == raw_leader,
            "node {node} differs from the leader below the HW {hw}"
        );
    }
    // Dense offsets, one record each.
    let offsets: Vec<u64> = records.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        offsets,
        (0..hw).collect::<Vec<_>>(),
        "offsets are dense from 0"
    );
    // No lost write, no duplicate, no acknowledged record at another offset.
    let mut where_is: HashMap<Bytes, u64> = HashMap::new();
    for (o, v) in &records {
        if let Some(prev) = where_is.insert(v.clone(), *o) {
            panic!("duplicate: {v:?} at {prev} and {o}");
        }
    }
    for (id, offset) in &report.acked {
        let v = Bytes::from(format!("record-{id}"));
        assert_eq!(
            where_is.get(&v),
            Some(offset),
            "acknowledged record {id} lost or moved"
        );
    }
    // What the consumer saw is what the log holds.
    for (o, v) in &consumed.seen {
        if *o < hw {
            assert_eq!(
                &records[*o as usize].1, v,
                "consumer saw another record at {o}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_paused_old_leader_cannot_append_under_its_stale_epoch() {
    let mut cluster = TestCluster::start::<&str, &str>(3, &[]);
    create_log(&cluster, log_config(3, 2)).await;
    wait_for(&cluster, 1, "a full ISR", Duration::from_secs(20), |i| {
        leader_of(i).is_some() && i.partitions[0].isr.len() == 3
    })
    .await;
    let info = newest_view(&cluster).await;
    let old = leader_of(&info).expect("leader");
    let old_epoch = info.partitions[0].epoch.0;
    let other = (1..=3).find(|n| *n != old).expect("another node");
    let client = cluster.client(other).await.expect("connect");
    for id in 0..20 {
        produce_one(&client, id, v1::AckPolicy::Quorum)
            .await
            .expect("produce before the pause");
    }

    cluster.node(old).pause();
    let (new, epoch) = wait_for_new_leader(&cluster, other, Some(old), old_epoch).await;
    assert!(epoch > old_epoch);
    // The client's route still points at the paused node: its first attempt times out and
    // the route is dropped. Attempts use fresh ids (a timed-out one may still be applied).
    let mut acked = 0;
    let mut id = 20;
    let deadline = Instant::now() + Duration::from_secs(60);
    while acked < 20 {
        assert!(
            Instant::now() < deadline,
            "no progress on the new leader {new}"
        );
        id += 1;
        if produce_one(&client, id, v1::AckPolicy::Quorum)
            .await
            .is_ok()
        {
            acked += 1;
        }
    }

    // Wake the old leader and write to it at once, with no redirect following: it must not
    // take a single write, even with acks=leader.
    cluster.node(old).resume();
    let mut raw = v1::producer_client::ProducerClient::new(cluster.channel(old));
    for i in 0..20 {
        let answer = tokio::time::timeout(
            Duration::from_secs(10),
            raw.produce(one_record(
                format!("stale-{i}"),
                v1::AckPolicy::Leader,
                2000,
            )),
        )
        .await
        .unwrap_or_else(|_| panic!("no answer from the woken node\n{}", cluster.logs()));
        match answer {
            Ok(r) => panic!(
                "the stale leader acknowledged a write at {}\n{}",
                r.into_inner().base_offset,
                cluster.logs()
            ),
            Err(status) => {
                let reason = pyralog_proto::status::reason_of(&status).map(|(r, _)| r);
                assert_eq!(reason, Some(Reason::NotLeader), "{status:?}");
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }

    // It rejoins as a follower of the new epoch and holds exactly the new leader's log.
    let info = wait_for(
        &cluster,
        new,
        "the old leader back in the ISR",
        Duration::from_secs(30),
        |i| i.partitions[0].isr.len() == 3 && i.partitions[0].high_watermark.0 >= 40,
    )
    .await;
    let hw = info.partitions[0].high_watermark.0;
    wait_for(
        &cluster,
        old,
        "the old leader caught up",
        Duration::from_secs(20),
        |i| i.partitions[0].role == "follower" && i.partitions[0].high_watermark.0 >= hw,
    )
    .await;
    let (leader_raw, records) = read_replica(&cluster, new, hw).await;
    let (old_raw, _) = read_replica(&cluster, old, hw).await;
    assert!(
        old_raw == leader_raw,
        "the old leader's log differs below the HW"
    );
    assert!(
        records.iter().all(|(_, v)| !v.starts_with(b"stale-")),
        "a stale write reached the log"
    );
    assert_eq!(records.len() as u64, hw);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_two_of_three_down_quorum_writes_fail_fast_and_leader_writes_go_on() {
    let mut cluster = TestCluster::start::<&str, &str>(3, &[]);
    create_log(&cluster, log_config(3, 2)).await;
    let info = wait_for(&cluster, 1, "a full ISR", Duration::from_secs(20), |i| {
        leader_of(i).is_some() && i.partitions[0].isr.len() == 3
    })
    .await;
    let leader = leader_of(&info).expect("leader");
    let client = cluster.client(leader).await.expect("connect");
    let mut acked = BTreeMap::new();
    for id in 0..20 {
        let o = produce_one(&client, id, v1::AckPolicy::Quorum)
            .await
            .expect("produce with all three up");
        acked.insert(id, o);
    }
    let followers: Vec<u64> = (1..=3).filter(|n| *n != leader).collect();
    for f in &followers {
        cluster.node(*f).kill9();
    }
    // Past replica_lag_max (3 s here) the leader counts them as gone.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    let t = Instant::now();
    let err = produce_one(&client, 1000, v1::AckPolicy::Quorum)
        .await
        .expect_err("a quorum write with one live replica");
    let took = t.elapsed();
    assert_eq!(err.reason(), Some(Reason::NotEnoughReplicas), "{err}");
    assert!(err.is_retriable());
    assert!(
        took < Duration::from_secs(1),
        "fails fast, not by timeout: {took:?}"
    );
    println!("FIGURES quorum produce with 1 of 3 replicas up failed in {took:?}");
    for id in 2000..2020 {
        let o = produce_one(&client, id, v1::AckPolicy::Leader)
            .await
            .unwrap_or_else(|e| panic!("acks=leader with the followers down: {e}"));
        acked.insert(id, o);
    }

    for f in &followers {
        cluster.node(*f).restart();
    }
    let info = wait_for(
        &cluster,
        leader,
        "all three back in sync",
        Duration::from_secs(40),
        |i| i.partitions[0].isr.len() == 3 && i.partitions[0].high_watermark.0 >= 40,
    )
    .await;
    let hw = info.partitions[0].high_watermark.0;
    let (leader_raw, records) = read_replica(&cluster, leader, hw).await;
    for f in &followers {
        wait_for(&cluster, *f, "caught up", Duration::from_secs(20), |i| {
            i.partitions[0].high_watermark.0 >= hw
        })
        .await;
        let (raw, _) = read_replica(&cluster, *f, hw).await;
        assert!(raw == leader_raw, "node {f} differs below the HW");
    }
    let where_is: HashMap<Bytes, u64> = records.iter().map(|(o, v)| (v.clone(), *o)).collect();
    for (id, offset) in &acked {
        assert_eq!(
            where_is.get(&Bytes::from(format!("record-{id}"))),
            Some(offset),
            "acknowledged record {id} lost"
        );
    }
}

async fn controller_leader(cluster: &TestCluster, ask: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(c) = cluster.client(ask).await {
            if let Ok(d) = c.describe_cluster().await {
                if d.controller_leader != 0 {
                    return d.controller_leader;
                }
            }
        }
        assert!(Instant::now() < deadline, "no controller leader");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The logs node `id` serves, once they are `expected` (a node that just restarted or lags
/// catches up within seconds); panics with what it serves otherwise.
async fn assert_logs(cluster: &TestCluster, id: u64, expected: &[String], what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let names: Result<Vec<String>, ClientError> = async {
            let c = cluster.client(id).await?;
            Ok(c.list_logs().await?.into_iter().map(|l| l.name).collect())
        }
        .await;
        match names {
            Ok(n) if n == expected => return,
            other if Instant::now() > deadline => {
                panic!("node {id} {what}: {other:?}, expected {expected:?}")
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn killing_the_controller_leader_during_creation_creates_a_log_once_or_not_at_all() {
    let mut cluster = TestCluster::start::<&str, &str>(3, &[]);
    let mut names = Vec::new();
    // The kill lands at different points of the creation: before, during, after the commit.
    for (round, delay_us) in [0u64, 400, 1500].into_iter().enumerate() {
        cluster.wait_registered().await;
        let raft_leader = controller_leader(&cluster, 1).await;
        let via = (1..=3)
            .find(|n| *n != raft_leader)
            .expect("a follower voter");
        let client = cluster.client(via).await.expect("connect");
        let name = format!("created-{round}");
        // Forwarded to the Raft leader, which a thread kills (SIGKILL) `delay_us` after the
        // request leaves: before, during or after the commit.
        let pid = cluster.node(raft_leader).pid().expect("running");
        let killer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_micros(delay_us));
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        });
        let first = client.create_log(&name, log_config(2, 1)).await;
        killer.join().expect("killer thread");
        cluster.node(raft_leader).kill9();
        // Retrying gives a consistent answer: created now, or already there.
        let deadline = Instant::now() + Duration::from_secs(30);
        let retried = loop {
            match client.create_log(&name, log_config(2, 1)).await {
                Ok(_) => break "created",
                Err(e) if e.reason() == Some(Reason::LogAlreadyExists) => break "already existed",
                Err(e) if e.is_retriable() && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await
                }
                Err(e) => panic!("retry: {e}\n{}", cluster.logs()),
            }
        };
        println!(
            "round {round} (kill after {delay_us} µs): first attempt {:?}, retry {retried}",
            first.as_ref().map(|_| "created").map_err(|e| e.to_string())
        );
        if first.is_ok() {
            assert_eq!(
                retried, "already existed",
                "a success is never followed by a second creation"
            );
        }
        names.push(name);
        for n in (1..=3).filter(|n| *n != raft_leader) {
            assert_logs(&cluster, n, &names, "holds each log exactly once").await;
        }
        cluster.node(raft_leader).restart();
    }

    // Metadata survives a clean restart of all three nodes.
    cluster.wait_registered().await;
    for n in 1..=3 {
        assert_logs(&cluster, n, &names, "before the restart").await;
    }
    for n in 1..=3 {
        assert_eq!(cluster.node(n).stop(), Some(0), "clean stop of node {n}");
    }
    for n in 1..=3 {
        cluster.node(n).restart();
    }
    cluster.wait_registered().await;
    for n in 1..=3 {
        assert_logs(&cluster, n, &names, "after the restart").await;
    }
}
