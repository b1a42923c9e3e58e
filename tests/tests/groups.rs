//! Consumer groups with real processes: three `pyralog serve` nodes (every one a controller
//! voter), group members in this process connected to different nodes, and `pyralog consume
//! --group` processes killed with `kill -9`.
//!
//! What must hold (issue "Consumer groups and the idempotent producer"):
//! - 4 members on 12 partitions: every partition owned by exactly one member at any time; a
//!   killed member's partitions are reassigned within the session timeout; an added member
//!   gets its share.
//! - At least once: consumers killed at random points while 500k records are consumed; every
//!   record is printed at least once and committed offsets never move backwards.
//! - A zombie's commit (an old generation, or a member removed from the group) is refused with
//!   a clear reason.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use pyralog_client::{
    AckPolicy, AssignmentStrategy, Client, ClientError, GroupConfig, GroupConsumer, LogPartition,
    OffsetReset, ProduceRecord, Producer, ProducerConfig, RebalanceListener,
};
use pyralog_e2e::{pyralog_bin, TestCluster};
use pyralog_proto::v1;
use pyralog_types::Reason;

const SESSION: Duration = Duration::from_secs(3);

fn log_config(partitions: u32) -> v1::LogConfig {
    v1::LogConfig {
        partition_count: Some(partitions),
        replication_factor: Some(3),
        min_in_sync_replicas: Some(2),
        ..Default::default()
    }
}

fn cluster() -> TestCluster {
    TestCluster::start::<&str, &str>(3, &[])
}

async fn client(cluster: &TestCluster, id: u64) -> Client {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match cluster.client(id).await {
            Ok(c) => return c,
            Err(e) => assert!(Instant::now() < deadline, "node {id}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Creates the log once the cluster has registered enough nodes.
async fn create_log(c: &Client, name: &str, partitions: u32) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match c.create_log(name, log_config(partitions)).await {
            Ok(_) => return,
            Err(e) if Instant::now() < deadline => {
                eprintln!("create {name}: {e}; retrying");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(e) => panic!("create {name}: {e}"),
        }
    }
}

/// Who owns which partition, as the members' rebalance callbacks report it. Taking a
/// partition another member still holds is the violation the test looks for.
#[derive(Default)]
struct Ownership {
    owner: BTreeMap<LogPartition, String>,
    violations: Vec<String>,
}

struct Recorder {
    member: Arc<Mutex<String>>,
    shared: Arc<Mutex<Ownership>>,
}

impl RebalanceListener for Recorder {
    fn on_assigned(&mut self, partitions: &[LogPartition]) {
        let me = self.member.lock().expect("lock").clone();
        let mut s = self.shared.lock().expect("lock");
        for tp in partitions {
            if let Some(other) = s.owner.insert(tp.clone(), me.clone()) {
                if other != me {
                    s.violations
                        .push(format!("{tp:?} given to {me} while {other} owns it"));
                }
            }
        }
    }

    fn on_revoked(&mut self, partitions: &[LogPartition]) {
        self.release(partitions);
    }

    fn on_lost(&mut self, partitions: &[LogPartition]) {
        self.release(partitions);
    }
}

impl Recorder {
    fn release(&self, partitions: &[LogPartition]) {
        let me = self.member.lock().expect("lock").clone();
        let mut s = self.shared.lock().expect("lock");
        for tp in partitions {
            if s.owner.get(tp) == Some(&me) {
                s.owner.remove(tp);
            }
        }
    }
}

/// A member running its poll loop in a task; `kill` stops it without leaving (a crash).
struct Member {
    name: Arc<Mutex<String>>,
    task: tokio::task::JoinHandle<()>,
    assignment: Arc<Mutex<BTreeSet<LogPartition>>>,
}

async fn start_member(c: Client, log: &str, shared: Arc<Mutex<Ownership>>) -> Member {
    let mut config = GroupConfig::new("workers", vec![log.to_owned()]);
    config.session_timeout = SESSION;
    config.heartbeat_interval = Duration::from_millis(250);
    config.auto_commit = Some(Duration::from_millis(500));
    config.reset = OffsetReset::Earliest;
    config.strategy = AssignmentStrategy::Sticky;
    let mut consumer = GroupConsumer::subscribe(c, config)
        .await
        .expect("subscribe");
    let name = Arc::new(Mutex::new(consumer.member_id().to_owned()));
    consumer.set_listener(Box::new(Recorder {
        member: name.clone(),
        shared: shared.clone(),
    }));
    let assignment = Arc::new(Mutex::new(consumer.assignment()));
    let task = tokio::spawn({
        let assignment = assignment.clone();
        let name = name.clone();
        async move {
            loop {
                match consumer.poll(Duration::from_millis(200)).await {
                    Ok(records) => {
                        let me = name.lock().expect("lock").clone();
                        let mut s = shared.lock().expect("lock");
                        for r in records {
                            let tp = (r.log.clone(), r.partition);
                            let owner = s.owner.get(&tp).cloned();
                            if owner.as_ref() != Some(&me) {
                                s.violations.push(format!(
                                    "{me} consumed {tp:?}@{} owned by {owner:?}",
                                    r.record.offset.0,
                                ));
                            }
                        }
                    }
                    Err(e) => eprintln!("member poll: {e}"),
                }
                *name.lock().expect("lock") = consumer.member_id().to_owned();
                *assignment.lock().expect("lock") = consumer.assignment();
            }
        }
    });
    Member {
        name,
        task,
        assignment,
    }
}

/// Waits until the members' assignments have the given sizes (sorted); returns how long.
async fn wait_balanced(members: &[&Member], sizes: &[usize], timeout: Duration) -> Duration {
    let started = Instant::now();
    loop {
        let mut now: Vec<usize> = members
            .iter()
            .map(|m| m.assignment.lock().expect("lock").len())
            .collect();
        now.sort_unstable();
        if now == sizes {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < timeout,
            "assignment sizes {now:?}, want {sizes:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn four_members_share_twelve_partitions_exclusively_through_kills_and_joins() {
    let cluster = cluster();
    let admin = client(&cluster, 1).await;
    create_log(&admin, "jobs", 12).await;
    // A producer keeps every partition busy, so members consume while they rebalance.
    let stop = Arc::new(AtomicBool::new(false));
    let producer = tokio::spawn({
        let c = client(&cluster, 2).await;
        let stop = stop.clone();
        async move {
            let p = Producer::new(c, ProducerConfig::default());
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let r = ProduceRecord {
                    partition: Some((i % 12) as u32),
                    ..ProduceRecord::new(None::<Bytes>, format!("job-{i}"))
                };
                let _ = p.send("jobs", r).await;
                i += 1;
                if i.is_multiple_of(100) {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
            let _ = p.close().await;
        }
    });
    let shared = Arc::new(Mutex::new(Ownership::default()));
    let mut members = Vec::new();
    let mut join_times = Vec::new();
    for i in 0..4u64 {
        let c = client(&cluster, 1 + i % 3).await;
        let m = start_member(c, "jobs", shared.clone()).await;
        members.push(m);
        let refs: Vec<&Member> = members.iter().collect();
        let want: Vec<usize> = match i {
            0 => vec![12],
            1 => vec![6, 6],
            2 => vec![4, 4, 4],
            _ => vec![3, 3, 3, 3],
        };
        join_times.push(wait_balanced(&refs, &want, Duration::from_secs(20)).await);
    }
    println!("join rebalance times (member 1..4): {join_times:?}");

    // Kill one member (no leave): its partitions go to the others within the session timeout.
    let victim = members.remove(1);
    let lost = victim.assignment.lock().expect("lock").clone();
    victim.task.abort();
    let _ = victim.task.await;
    let victim_name = victim.name.lock().expect("lock").clone();
    {
        // It is dead: it holds nothing any more.
        let mut s = shared.lock().expect("lock");
        s.owner.retain(|_, m| *m != victim_name);
    }
    let refs: Vec<&Member> = members.iter().collect();
    let kill_time = wait_balanced(&refs, &[4, 4, 4], SESSION + Duration::from_secs(5)).await;
    println!("kill -> reassigned in {kill_time:?} (session timeout {SESSION:?})");
    assert!(
        kill_time <= SESSION + Duration::from_secs(3),
        "reassigned after {kill_time:?}"
    );
    let now_owned: BTreeSet<LogPartition> = members
        .iter()
        .flat_map(|m| m.assignment.lock().expect("lock").clone())
        .collect();
    assert!(lost.is_subset(&now_owned));

    // A new member: balanced again, without stopping the others' unaffected partitions.
    let before: Vec<BTreeSet<LogPartition>> = members
        .iter()
        .map(|m| m.assignment.lock().expect("lock").clone())
        .collect();
    members.push(start_member(client(&cluster, 3).await, "jobs", shared.clone()).await);
    let refs: Vec<&Member> = members.iter().collect();
    let add_time = wait_balanced(&refs, &[3, 3, 3, 3], Duration::from_secs(20)).await;
    println!("join of a 4th member -> balanced in {add_time:?}");
    for (m, had) in members.iter().zip(&before) {
        let now = m.assignment.lock().expect("lock").clone();
        assert!(
            now.is_subset(had),
            "sticky: members only gave partitions up"
        );
    }

    stop.store(true, Ordering::Relaxed);
    let _ = producer.await;
    for m in members {
        m.task.abort();
    }
    let s = shared.lock().expect("lock");
    assert!(
        s.violations.is_empty(),
        "exclusive ownership violated:\n{}",
        s.violations.join("\n")
    );
}

/// A `pyralog consume --group` process whose stdout goes to a file.
fn spawn_consumer(
    url: &str,
    options: &pyralog_client::ClientOptions,
    out: &std::path::Path,
) -> Child {
    let file = std::fs::File::create(out).expect("output file");
    let mut cmd = Command::new(pyralog_bin());
    cmd.args(pyralog_e2e::tls_args(options))
        .args([
            "--server",
            url,
            "consume",
            "stream",
            "--group",
            "printers",
            "--from-beginning",
            "--follow",
            "--commit-interval-ms",
            "200",
            "--session-timeout-ms",
            "2000",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::from(file))
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn consumer")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_record_is_processed_at_least_once_while_consumers_are_killed() {
    let total: u64 = pyralog_e2e::env_usize("PYRALOG_GROUP_RECORDS", 500_000) as u64;
    let cluster = cluster();
    let admin = client(&cluster, 1).await;
    create_log(&admin, "stream", 6).await;
    // The records are produced while the consumers run (paced over ~15 s), so consumers
    // are killed in the middle of the stream, not after it.
    let produced = tokio::spawn({
        let c = admin.clone();
        async move {
            let producer = Producer::new(
                c,
                ProducerConfig {
                    acks: AckPolicy::Quorum,
                    ..Default::default()
                },
            );
            let started = Instant::now();
            let mut pending = Vec::new();
            for i in 0..total {
                let r = ProduceRecord::new(Some(format!("k{i}")), format!("{i}"));
                pending.push(producer.send("stream", r).await.expect("send"));
                if pending.len() >= 5_000 {
                    for d in pending.drain(..) {
                        d.await.expect("delivered");
                    }
                    // Pace: `total` records over about 15 s.
                    let due = Duration::from_secs_f64(15.0 * (i + 1) as f64 / total as f64);
                    tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
                }
            }
            for d in pending.drain(..) {
                d.await.expect("delivered");
            }
            producer.close().await.expect("close");
        }
    });

    // Committed offsets are watched all along: they must never move backwards.
    let stop = Arc::new(AtomicBool::new(false));
    let regressions = Arc::new(AtomicU64::new(0));
    let watcher = tokio::spawn({
        let (c, stop, regressions) = (admin.clone(), stop.clone(), regressions.clone());
        async move {
            let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
            while !stop.load(Ordering::Relaxed) {
                if let Ok(offsets) = c.fetch_offsets("printers", &[]).await {
                    for o in offsets {
                        let last = seen.entry(o.partition).or_insert(0);
                        if o.offset < *last {
                            eprintln!(
                                "partition {} went back {} -> {}",
                                o.partition, last, o.offset
                            );
                            regressions.fetch_add(1, Ordering::Relaxed);
                        }
                        *last = (*last).max(o.offset);
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let mut outputs = Vec::new();
    let options = cluster.client_options();
    let next_file = |url: &str, outputs: &mut Vec<std::path::PathBuf>| {
        let path = dir.path().join(format!("out-{}.txt", outputs.len()));
        let child = spawn_consumer(url, &options, &path);
        outputs.push(path);
        child
    };
    let mut running: Vec<Child> = (1..=3u64)
        .map(|id| next_file(&cluster.url(id), &mut outputs))
        .collect();
    // Kill one consumer at a pseudo-random point every 300-1300 ms, start a fresh one.
    let mut kills = 0;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut ends: Option<BTreeMap<u32, u64>> = None;
    let mut produced = Some(produced);
    loop {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        tokio::time::sleep(Duration::from_millis(300 + rng % 1000)).await;
        if produced.as_ref().is_some_and(|p| p.is_finished()) {
            if let Some(p) = produced.take() {
                p.await.expect("producer");
            }
            let latest = admin.list_offsets("stream", None).await.expect("offsets");
            ends = Some(
                latest
                    .into_iter()
                    .map(|o| (o.partition, o.latest))
                    .collect(),
            );
        }
        let committed = admin
            .fetch_offsets("printers", &[])
            .await
            .unwrap_or_default();
        let done = ends.as_ref().is_some_and(|ends| {
            ends.iter().all(|(p, end)| {
                committed
                    .iter()
                    .any(|o| o.partition == *p && o.offset >= *end)
            })
        });
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not all committed in time: {committed:?}"
        );
        if kills < 12 {
            let victim = (rng % running.len() as u64) as usize;
            let mut child = running.swap_remove(victim);
            let _ = child.kill(); // SIGKILL
            let _ = child.wait();
            kills += 1;
            let id = 1 + (rng % 3);
            running.push(next_file(&cluster.url(id), &mut outputs));
        }
    }
    for mut c in running {
        let _ = c.kill();
        let _ = c.wait();
    }
    stop.store(true, Ordering::Relaxed);
    let _ = watcher.await;

    let mut seen: HashSet<u64> = HashSet::with_capacity(total as usize);
    let mut lines = 0u64;
    for path in &outputs {
        let f = std::fs::File::open(path).expect("open output");
        for line in BufReader::new(f).lines() {
            let Ok(line) = line else { continue };
            // A consumer killed mid-write can leave a torn last line.
            if let Ok(i) = line.trim().parse::<u64>() {
                seen.insert(i);
                lines += 1;
            }
        }
    }
    let missing: Vec<u64> = (0..total).filter(|i| !seen.contains(i)).take(10).collect();
    println!(
        "at-least-once: {total} records, {lines} printed by {} consumer runs ({kills} killed), {} printed more than once",
        outputs.len(),
        lines - seen.len() as u64
    );
    assert!(kills >= 5, "only {kills} consumers were killed mid-stream");
    assert!(missing.is_empty(), "never processed: {missing:?} ...");
    assert_eq!(
        regressions.load(Ordering::Relaxed),
        0,
        "committed offsets went backwards"
    );
}

fn reason(e: &ClientError) -> Option<Reason> {
    e.reason()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_zombie_members_commit_is_refused_with_a_reason() {
    let cluster = cluster();
    let c = client(&cluster, 1).await;
    create_log(&c, "tasks", 4).await;
    let mut groups = v1::groups_client::GroupsClient::new(cluster.channel(2));
    let join = |client: &str| v1::JoinGroupRequest {
        group: "g".into(),
        client_id: client.into(),
        logs: vec!["tasks".into()],
        session_timeout_ms: 1_000,
        strategy: v1::AssignmentStrategy::Range as i32,
        ..Default::default()
    };
    let a = groups
        .join_group(join("a"))
        .await
        .expect("join a")
        .into_inner();
    let commit = |member: &str, generation: u64, partition: u32| v1::CommitOffsetsRequest {
        group: "g".into(),
        member_id: member.into(),
        generation,
        offsets: vec![v1::PartitionCommit {
            log: "tasks".into(),
            partition,
            position: Some(v1::partition_commit::Position::Offset(1)),
            ..Default::default()
        }],
    };
    groups
        .commit_offsets(commit(&a.member_id, a.generation, 3))
        .await
        .expect("a owns partition 3");
    // b joins: range gives it partitions 2 and 3 once a gives them up.
    let b = groups
        .join_group(join("b"))
        .await
        .expect("join b")
        .into_inner();
    // a's heartbeat: it consumes partitions 0 and 1 only (it gave 2 and 3 up).
    let a_heartbeat = |generation: u64| v1::GroupHeartbeatRequest {
        group: "g".into(),
        member_id: a.member_id.clone(),
        generation,
        owned: vec![v1::LogPartitions {
            log: "tasks".into(),
            partitions: vec![0, 1],
        }],
    };
    let hb = groups
        .heartbeat(a_heartbeat(a.generation))
        .await
        .expect("heartbeat")
        .into_inner();
    assert!(hb.generation > a.generation);
    // SyncGroup answers the same assignment for that generation, from any node.
    let mut other = v1::groups_client::GroupsClient::new(cluster.channel(3));
    let synced = other
        .sync_group(v1::SyncGroupRequest {
            group: "g".into(),
            member_id: a.member_id.clone(),
            generation: hb.generation,
        })
        .await
        .expect("sync")
        .into_inner();
    assert_eq!(synced.generation, hb.generation);
    assert_eq!(synced.assignment, hb.assignment);
    // a, acting on its first generation, is a zombie for partition 3 now.
    let e = ClientError::from(
        groups
            .commit_offsets(commit(&a.member_id, a.generation, 3))
            .await
            .expect_err("old generation"),
    );
    assert_eq!(reason(&e), Some(Reason::IllegalGeneration), "{e}");
    assert!(e.to_string().contains("generation"), "{e}");
    let e = ClientError::from(
        groups
            .commit_offsets(commit(&a.member_id, hb.generation, 3))
            .await
            .expect_err("not a's partition any more"),
    );
    assert_eq!(reason(&e), Some(Reason::NotAssigned), "{e}");
    // b stops heartbeating: after its session it is gone, and so are its commits.
    let _ = b;
    let deadline = Instant::now() + Duration::from_secs(15);
    let e = loop {
        let r = groups
            .commit_offsets(commit(&b.member_id, b.generation, 3))
            .await;
        if let Err(s) = r {
            let e = ClientError::from(s);
            if reason(&e) == Some(Reason::UnknownMember) {
                break e;
            }
        }
        assert!(Instant::now() < deadline, "b was never removed");
        // a keeps its session.
        let _ = groups.heartbeat(a_heartbeat(hb.generation)).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(e.to_string().contains("join again"), "{e}");
    // The CLI shows the state and refuses to delete a group with members.
    let out = cluster.cli(3, &["groups", "describe", "g"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains(&a.member_id), "{}", out.stdout);
    let out = cluster.cli(3, &["groups", "delete", "g"], None);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("active members"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_by_vlsn_resets_and_the_reset_policy_on_a_dev_node() {
    let node = pyralog_e2e::TestNode::start();
    let c = node.client().await;
    c.create_log(
        "events",
        v1::LogConfig {
            partition_count: Some(1),
            ..Default::default()
        },
    )
    .await
    .expect("create");
    // Ten records whose client-managed sequence (VLSN) is 100..110, in header `vlsn`.
    let producer = Producer::new(c.clone(), ProducerConfig::default());
    for i in 0..10u64 {
        let mut r = ProduceRecord::new(None::<Bytes>, format!("e{i}"));
        r.headers.push(pyralog_client::Header {
            key: "vlsn".into(),
            value: Bytes::from((100 + i).to_string()),
        });
        producer.send("events", r).await.expect("send");
    }
    producer.close().await.expect("close");

    let mut config = GroupConfig::new("auditors", vec!["events".into()]);
    config.auto_commit = None;
    config.reset = OffsetReset::Earliest;
    let mut member = GroupConsumer::subscribe(c.clone(), config.clone())
        .await
        .expect("subscribe");
    member
        .commit_vlsn("events", 0, 104, "")
        .await
        .expect("commit by vlsn");
    let committed = c.fetch_offsets("auditors", &[]).await.expect("offsets");
    assert_eq!(committed.len(), 1);
    assert_eq!(
        committed[0].offset, 5,
        "the offset after the record with VLSN 104"
    );
    assert_eq!(committed[0].vlsn, Some(104));
    let e = member
        .commit_vlsn("events", 0, 999, "")
        .await
        .expect_err("no such vlsn");
    assert_eq!(e.reason(), Some(Reason::InvalidRequest), "{e}");
    // The member reads on from the commit after a restart of the group.
    member.close().await.expect("close");
    let mut again = GroupConsumer::subscribe(c.clone(), config.clone())
        .await
        .expect("subscribe again");
    let first = again.poll(Duration::from_secs(5)).await.expect("poll");
    assert_eq!(first.first().map(|r| r.record.offset.0), Some(5));
    again.close().await.expect("close");

    // Resets: a dry run commits nothing, a real one moves the group.
    let out = pyralog_e2e::run_cli(
        node.url(),
        &[
            "groups",
            "reset-offsets",
            "auditors",
            "events",
            "--to-earliest",
            "--dry-run",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(out.stdout.contains("events\t0\t0"), "{}", out.stdout);
    assert_eq!(
        c.fetch_offsets("auditors", &[]).await.expect("offsets")[0].offset,
        5,
        "a dry run commits nothing"
    );
    let out = pyralog_e2e::run_cli(
        node.url(),
        &[
            "groups",
            "reset-offsets",
            "auditors",
            "events",
            "--to-offset",
            "7",
        ],
        None,
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        c.fetch_offsets("auditors", &[]).await.expect("offsets")[0].offset,
        7
    );
    let out = pyralog_e2e::run_cli(node.url(), &["groups", "list"], None);
    assert!(out.stdout.contains("auditors\t0\t"), "{}", out.stdout);

    // `error` policy: a group without a commit refuses to guess where to start.
    let mut strict = GroupConfig::new("strict", vec!["events".into()]);
    strict.reset = OffsetReset::Error;
    let e = GroupConsumer::subscribe(c.clone(), strict)
        .await
        .expect_err("no commit and reset=error");
    assert!(e.to_string().contains("reset policy"), "{e}");

    let out = pyralog_e2e::run_cli(node.url(), &["groups", "delete", "auditors"], None);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = pyralog_e2e::run_cli(node.url(), &["groups", "describe", "auditors"], None);
    assert_eq!(out.code, Some(2), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn group_state_and_members_survive_a_controller_failover() {
    let mut cluster = cluster();
    let admin = client(&cluster, 1).await;
    create_log(&admin, "ledger", 4).await;
    let shared = Arc::new(Mutex::new(Ownership::default()));
    // The controller's leader is killed below; the members talk to the other two nodes.
    let leader = admin
        .describe_cluster()
        .await
        .expect("describe")
        .controller_leader;
    assert_ne!(leader, 0, "a controller leader");
    let others: Vec<u64> = (1..=3).filter(|id| *id != leader).collect();
    let a = start_member(client(&cluster, others[0]).await, "ledger", shared.clone()).await;
    let b = start_member(client(&cluster, others[1]).await, "ledger", shared.clone()).await;
    wait_balanced(&[&a, &b], &[2, 2], Duration::from_secs(20)).await;
    let p = Producer::new(client(&cluster, others[0]).await, ProducerConfig::default());
    for i in 0..400u64 {
        let r = ProduceRecord {
            partition: Some((i % 4) as u32),
            ..ProduceRecord::new(None::<Bytes>, format!("r{i}"))
        };
        p.send("ledger", r).await.expect("send");
    }
    p.close().await.expect("close");
    // The members commit (auto-commit every 500 ms) up to the end of every partition.
    let observer = client(&cluster, others[1]).await;
    let committed_all = |offsets: &[v1::CommittedOffset]| {
        offsets.len() == 4 && offsets.iter().all(|o| o.offset == 100)
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while !committed_all(
        &observer
            .fetch_offsets("workers", &[])
            .await
            .unwrap_or_default(),
    ) {
        assert!(
            Instant::now() < deadline,
            "members did not commit everything"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let names_before: BTreeSet<String> = [&a, &b]
        .iter()
        .map(|m| m.name.lock().expect("lock").clone())
        .collect();

    cluster.node(leader).kill9();
    // A new controller leader: the offsets are there, the members are the same (the new
    // leader gave them fresh sessions), and the group still rebalances.
    let deadline = Instant::now() + Duration::from_secs(30);
    let offsets = loop {
        match observer.fetch_offsets("workers", &[]).await {
            Ok(o) if !o.is_empty() => break o,
            _ => {
                assert!(Instant::now() < deadline, "no controller answered");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert!(committed_all(&offsets), "{offsets:?}");
    let c = start_member(client(&cluster, others[1]).await, "ledger", shared.clone()).await;
    wait_balanced(&[&a, &b, &c], &[1, 1, 2], Duration::from_secs(30)).await;
    let names_after: BTreeSet<String> = [&a, &b]
        .iter()
        .map(|m| m.name.lock().expect("lock").clone())
        .collect();
    assert_eq!(
        names_before, names_after,
        "no member was dropped by the failover"
    );
    for m in [a, b, c] {
        m.task.abort();
    }
    let s = shared.lock().expect("lock");
    assert!(s.violations.is_empty(), "{}", s.violations.join("\n"));
}
