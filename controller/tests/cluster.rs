//! The controller as a real Raft cluster: voters with their own gRPC servers on loopback,
//! stopped and restarted from their directories.

mod harness;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use harness::{eventually, within, Cluster};
use pyralog_controller::{
    ClusterState, Command, CommandResult, ControllerError, LogMeta, Rejection,
};
use pyralog_types::{Epoch, LogConfig, LogId, NodeId};

const SHORT: Duration = Duration::from_secs(5);

fn log(name: &str) -> LogId {
    LogId::new(name).expect("log name")
}

fn create(name: &str, partitions: u32, rf: u16) -> Command {
    Command::CreateLog {
        log: log(name),
        config: LogConfig {
            partition_count: partitions,
            replication_factor: rf,
            min_in_sync_replicas: 1,
            ..LogConfig::default()
        },
        request: 0,
    }
}

fn all_live(state: &ClusterState, ids: &[NodeId]) -> bool {
    ids.iter().all(|id| state.is_live(*id))
}

async fn wait_registered(cluster: &Cluster, ids: &[NodeId]) {
    for id in cluster.running() {
        cluster
            .wait_state(id, SHORT, "every node registered", |s| all_live(s, ids))
            .await;
    }
}

fn created(result: CommandResult) -> LogMeta {
    match result {
        CommandResult::LogCreated(meta) => *meta,
        other => panic!("expected LogCreated, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_voter_leads_at_once_and_keeps_its_metadata_across_restarts() {
    let mut cluster = Cluster::start(1, 3).await;
    assert_eq!(cluster.wait_leader(SHORT).await, 1);
    wait_registered(&cluster, &[1]).await;

    let c = Arc::clone(cluster.controller(1));
    let meta = created(c.write(create("orders", 2, 1)).await.expect("write"));
    assert_eq!(meta.partitions.len(), 2);
    assert_eq!(meta.partitions[0].leader, Some(1));
    assert_eq!(c.state().borrow().logs.get(&log("orders")), Some(&meta));
    // Enough commands for a few snapshots (every 3 entries) and purges.
    for name in ["a", "b", "c", "d", "e"] {
        created(c.write(create(name, 1, 1)).await.expect("write"));
    }
    let expected = c.state().borrow().logs.clone();
    assert_eq!(expected.len(), 6);
    let dir = cluster.config(1).dir;
    assert!(dir.join("snapshot/snapshot.json").exists());

    cluster.stop(1).await;
    // Stopping twice is harmless.
    c.shutdown().await;
    assert!(matches!(
        c.write(create("late", 1, 1)).await,
        Err(ControllerError::ShuttingDown)
    ));
    drop(c);

    cluster.restart(1).await;
    let c = Arc::clone(cluster.controller(1));
    // Rebuilt from the snapshot and the committed log before `start` returned.
    assert_eq!(c.state().borrow().logs, expected);
    assert_eq!(
        c.write(create("orders", 2, 1)).await.expect("write"),
        CommandResult::Rejected(Rejection::LogAlreadyExists(log("orders")))
    );
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_voters_elect_forward_writes_and_keep_state_across_restarts() {
    let mut cluster = Cluster::start(3, 4).await;
    let leader = cluster.wait_leader(SHORT).await;
    wait_registered(&cluster, &[1, 2, 3]).await;

    // A write through a follower is forwarded to the leader and applied everywhere.
    let follower = *cluster
        .running()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let meta = created(
        cluster
            .controller(follower)
            .write(create("orders", 3, 3))
            .await
            .expect("forwarded write"),
    );
    let leaders: Vec<_> = meta.partitions.iter().map(|p| p.leader).collect();
    assert_eq!(leaders.len(), 3);
    for id in [1, 2, 3] {
        let state = cluster
            .wait_state(id, SHORT, "the log orders", |s| {
                s.logs.contains_key(&log("orders"))
            })
            .await;
        assert_eq!(state.logs[&log("orders")], meta);
    }

    // A follower is down while more than `snapshot_every` commands commit: the leader
    // snapshots and purges the log it would need, so it catches up from a snapshot.
    let lagging = *cluster
        .running()
        .iter()
        .find(|id| **id != leader && **id != follower)
        .expect("another follower");
    let lagging_applied = cluster.controller(lagging).applied_index();
    cluster.stop(lagging).await;
    for (i, id) in [leader, follower, leader, follower, leader, follower]
        .into_iter()
        .enumerate()
    {
        let name = format!("log-{i}");
        created(
            cluster
                .controller(id)
                .write(create(&name, 1, 2))
                .await
                .expect("write"),
        );
    }
    let leader_dir = cluster.config(leader).dir;
    eventually(
        SHORT,
        "the leader's log purged past the lagging voter",
        || {
            let meta = std::fs::read(leader_dir.join("log/meta.json")).ok()?;
            let meta: serde_json::Value = serde_json::from_slice(&meta).ok()?;
            let purged = meta["last_purged"]["index"].as_u64()?;
            (purged > lagging_applied).then_some(())
        },
    )
    .await;
    cluster.restart(lagging).await;
    let current = || cluster.controller(leader).state().borrow().logs.clone();
    eventually(SHORT, "the restarted voter caught up", || {
        (cluster.controller(lagging).state().borrow().logs == current()).then_some(())
    })
    .await;
    assert_eq!(current().len(), 7);
    wait_registered(&cluster, &[1, 2, 3]).await;

    // Everyone restarts from their directories.
    cluster.stop_all().await;
    let expected = [1, 2, 3]
        .into_iter()
        .map(|id| Arc::clone(&cluster.controller(id).state().borrow()))
        .max_by_key(|s| s.version)
        .expect("a state");
    for id in [1, 2, 3] {
        cluster.restart(id).await;
    }
    cluster.wait_leader(SHORT).await;
    for id in [1, 2, 3] {
        cluster
            .wait_state(id, SHORT, "the logs from before the restart", |s| {
                s.logs == expected.logs
            })
            .await;
    }
    cluster.stop_all().await;
}

/// The partitions `node` leads in `state`, with their epochs.
fn led_by(state: &ClusterState, node: NodeId) -> BTreeMap<(LogId, u32), Epoch> {
    let mut led = BTreeMap::new();
    for (name, meta) in &state.logs {
        for (p, part) in meta.partitions.iter().enumerate() {
            if part.leader == Some(node) {
                led.insert((name.clone(), p as u32), part.epoch);
            }
        }
    }
    led
}

/// Every partition `node` led (with its epoch then) has a new leader, one epoch later.
fn assert_took_over(state: &ClusterState, node: NodeId, before: &BTreeMap<(LogId, u32), Epoch>) {
    assert!(!before.is_empty(), "node {node} led nothing to begin with");
    for ((name, p), epoch) in before {
        let part = state.partition(name, *p).expect("partition");
        assert!(
            part.leader.is_some_and(|l| l != node),
            "{name}/{p}: leader {:?}",
            part.leader
        );
        assert_eq!(part.epoch, Epoch(epoch.0 + 1), "{name}/{p}");
        assert!(!part.isr.contains(&node), "{name}/{p}: ISR {:?}", part.isr);
    }
}

/// After a `CreateLog` of unknown fate, retrying it answers `LogAlreadyExists` or
/// `LogCreated`, consistently with what the first attempt answered, and every survivor holds
/// the same single incarnation of the log.
async fn retry_is_consistent(
    cluster: &Cluster,
    survivors: &[NodeId],
    name: &str,
    first: Result<CommandResult, ControllerError>,
) {
    let again = cluster
        .controller(survivors[0])
        .write(create(name, 2, 2))
        .await
        .expect("retry");
    let exists = CommandResult::Rejected(Rejection::LogAlreadyExists(log(name)));
    match &first {
        // The first attempt's outcome is known: the retry must find its log.
        Ok(CommandResult::LogCreated(_))
        | Ok(CommandResult::Rejected(Rejection::LogAlreadyExists(_))) => {
            assert_eq!(again, exists, "{name}: first answer {first:?}")
        }
        Ok(other) => panic!("{name}: unexpected first answer {other:?}"),
        // Unknown outcome: the retry either creates it or finds it.
        Err(_) => assert!(
            again == exists || matches!(again, CommandResult::LogCreated(_)),
            "{name}: retry answered {again:?}"
        ),
    }
    let mut metas = Vec::new();
    for id in survivors {
        let state = cluster
            .wait_state(*id, SHORT, name, |s| s.logs.contains_key(&log(name)))
            .await;
        metas.push(state.logs[&log(name)].clone());
    }
    assert!(metas.windows(2).all(|w| w[0] == w[1]), "{name}: {metas:?}");
    let returned = match (&first, &again) {
        (Ok(CommandResult::LogCreated(m)), _) | (_, CommandResult::LogCreated(m)) => Some(m),
        _ => None,
    };
    if let Some(m) = returned {
        assert_eq!(
            **m, metas[0],
            "{name}: the log in the state is the one created"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_killed_during_create_log_leaves_one_consistent_outcome() {
    let mut cluster = Cluster::start(3, 1000).await;
    let leader = cluster.wait_leader(SHORT).await;
    wait_registered(&cluster, &[1, 2, 3]).await;
    let survivors: Vec<NodeId> = [1, 2, 3].into_iter().filter(|id| *id != leader).collect();
    let follower = survivors[0];
    created(
        cluster
            .controller(follower)
            .write(create("orders", 3, 3))
            .await
            .expect("write"),
    );
    for id in [1, 2, 3] {
        cluster
            .wait_state(id, SHORT, "orders", |s| s.logs.contains_key(&log("orders")))
            .await;
    }
    let before = led_by(&cluster.controller(follower).state().borrow(), leader);

    // Two CreateLogs are in flight when the leader dies: one forwarded by a follower, one
    // proposed on the leader itself.
    let forwarded = {
        let writer = Arc::clone(cluster.controller(follower));
        tokio::spawn(async move { writer.write(create("payments", 2, 2)).await })
    };
    let direct = {
        let writer = Arc::clone(cluster.controller(leader));
        tokio::spawn(async move { writer.write(create("refunds", 2, 2)).await })
    };
    tokio::time::sleep(Duration::from_millis(1)).await;
    let killed_at = Instant::now();
    cluster.stop(leader).await;
    let forwarded = within(SHORT * 2, "the forwarded write", forwarded)
        .await
        .expect("join");
    let direct = within(SHORT, "the direct write", direct)
        .await
        .expect("join");
    assert!(
        matches!(direct, Ok(_) | Err(ControllerError::ShuttingDown)),
        "{direct:?}"
    );

    let new_leader = cluster.wait_leader(SHORT).await;
    assert_ne!(new_leader, leader);
    for (name, first) in [("payments", forwarded), ("refunds", direct)] {
        retry_is_consistent(&cluster, &survivors, name, first).await;
    }

    // The dead leader stops heartbeating: it is fenced about a lease after the new leader
    // took over, and its partitions move on to a new epoch.
    let lease = cluster.config(leader).node_lease;
    let state = cluster
        .wait_state(new_leader, SHORT, "the old leader fenced", |s| {
            !s.is_live(leader) && s.nodes.contains_key(&leader)
        })
        .await;
    let took = killed_at.elapsed();
    assert!(
        took >= lease,
        "fenced after {took:?}, before its lease of {lease:?} ran out"
    );
    assert_took_over(&state, leader, &before);

    // It comes back: it registers again and catches up.
    cluster.restart(leader).await;
    for id in [1, 2, 3] {
        cluster
            .wait_state(id, SHORT, "every node live, with every log", |s| {
                all_live(s, &[1, 2, 3])
                    && s.logs.contains_key(&log("payments"))
                    && s.logs.contains_key(&log("refunds"))
            })
            .await;
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_heartbeating_is_fenced_after_its_lease() {
    let mut cluster = Cluster::start(3, 1000).await;
    let leader = cluster.wait_leader(SHORT).await;
    wait_registered(&cluster, &[1, 2, 3]).await;
    created(
        cluster
            .controller(leader)
            .write(create("orders", 3, 3))
            .await
            .expect("write"),
    );
    let silent = *cluster
        .running()
        .iter()
        .find(|id| **id != leader)
        .expect("a follower");
    let before = led_by(&cluster.controller(leader).state().borrow(), silent);
    let lease = cluster.config(silent).node_lease;

    let stopped_at = Instant::now();
    cluster.stop(silent).await;
    let state = cluster
        .wait_state(leader, SHORT, "the silent node fenced", |s| {
            !s.is_live(silent)
        })
        .await;
    let took = stopped_at.elapsed();
    // Its last heartbeat was at most one heartbeat period before it stopped; the leader
    // checks leases every quarter lease.
    let heartbeat = cluster.config(silent).node_heartbeat;
    assert!(
        took + heartbeat >= lease,
        "fenced after {took:?}, lease {lease:?}"
    );
    assert!(
        took <= lease * 2,
        "fenced only after {took:?}, lease {lease:?}"
    );
    assert_took_over(&state, silent, &before);
    // The rest stay live.
    assert!(all_live(
        &state,
        &[1, 2, 3]
            .into_iter()
            .filter(|id| *id != silent)
            .collect::<Vec<_>>()
    ));
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_quorum_writes_time_out_and_shutdown_ends_them() {
    harness::init_tracing();
    let tmp = tempfile::TempDir::new().expect("tempdir");
    // Three voters, of which only node 1 runs: it can never win an election.
    let mut voters = BTreeMap::new();
    for id in 1..=3 {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        voters.insert(id, l.local_addr().expect("addr").to_string());
    }
    let mut config = pyralog_controller::ControllerConfig::new(
        1,
        voters[&1].clone(),
        tmp.path().join("controller"),
        voters,
    );
    harness::tune(&mut config);
    config.write_timeout = Duration::from_millis(800);
    let c = pyralog_controller::Controller::start(config)
        .await
        .expect("start");

    let started = Instant::now();
    let answer = c.write(create("orders", 1, 1)).await;
    assert!(
        matches!(answer, Err(ControllerError::Timeout(_))),
        "{answer:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(800));
    assert_eq!(
        answer.map_err(|e| e.reason()).err(),
        Some(pyralog_types::Reason::Timeout)
    );

    let pending = {
        let c = Arc::clone(&c);
        tokio::spawn(async move { c.write(create("orders", 1, 1)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    within(SHORT, "shutdown", c.shutdown()).await;
    let answer = within(SHORT, "the pending write", pending)
        .await
        .expect("join");
    assert!(
        matches!(answer, Err(ControllerError::ShuttingDown)),
        "{answer:?}"
    );
}
