//! Broker-only nodes as Raft learners: they join by themselves, follow every command, never
//! vote, and come back after a restart; the join RPC refuses what no leader may grant.

mod harness;

use std::time::Duration;

use harness::{eventually, Cluster};
use pyralog_controller::{ClusterState, Command, CommandResult, LogMeta};
use pyralog_proto::internal::controller_client::ControllerClient;
use pyralog_proto::internal::AddLearnerRequest;
use pyralog_proto::status::reason_of;
use pyralog_types::{LogConfig, LogId, NodeId, Reason};

const SHORT: Duration = Duration::from_secs(5);

fn create(name: &str) -> Command {
    Command::CreateLog {
        log: LogId::new(name).expect("log name"),
        config: LogConfig {
            partition_count: 4,
            replication_factor: 2,
            min_in_sync_replicas: 1,
            ..LogConfig::default()
        },
        request: 0,
    }
}

fn created(result: CommandResult) -> LogMeta {
    match result {
        CommandResult::LogCreated(meta) => *meta,
        other => panic!("expected LogCreated, got {other:?}"),
    }
}

fn all_live(state: &ClusterState, ids: &[NodeId]) -> bool {
    ids.iter().all(|id| state.is_live(*id))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn learners_follow_every_command_never_vote_and_rejoin_after_a_restart() {
    // Voters 1-3, learners 4 and 5; a snapshot every 4 entries.
    let mut cluster = Cluster::start_with_learners(3, 2, 4).await;
    let leader = cluster.wait_leader(SHORT).await;
    assert!(leader <= 3, "learner {leader} leads");

    // The learners joined by themselves and registered as brokers, so placement uses them.
    eventually(SHORT, "both learners in the membership", || {
        let learners: Vec<NodeId> = cluster.controller(leader).learners().into_keys().collect();
        (learners == [4, 5]).then_some(())
    })
    .await;
    for id in cluster.running() {
        cluster
            .wait_state(id, SHORT, "every node registered", |s| {
                all_live(s, &[1, 2, 3, 4, 5])
            })
            .await;
    }
    // A write from a learner is forwarded to the leader and applied on every member.
    let meta = created(
        cluster
            .controller(4)
            .write(create("orders"))
            .await
            .expect("write from a learner"),
    );
    for id in cluster.running() {
        let state = cluster
            .wait_state(id, SHORT, "the log", |s| !s.logs.is_empty())
            .await;
        assert_eq!(state.logs.values().next(), Some(&meta));
    }
    let placed: std::collections::BTreeSet<NodeId> = meta
        .partitions
        .iter()
        .flat_map(|p| p.replicas.iter().copied())
        .collect();
    assert!(
        placed.contains(&4) || placed.contains(&5),
        "no replica on a learner: {placed:?}"
    );

    // A learner that was down while the leader snapshotted catches up from the snapshot.
    cluster.stop(5).await;
    for i in 0..6 {
        created(
            cluster
                .controller(leader)
                .write(create(&format!("log-{i}")))
                .await
                .expect("write"),
        );
    }
    cluster.restart(5).await;
    let expected = cluster.controller(leader).state().borrow().logs.clone();
    cluster
        .wait_state(5, SHORT, "the restarted learner caught up", |s| {
            s.logs == expected
        })
        .await;

    // Learners never vote: with two of three voters down there is no quorum, and no learner
    // takes over however long it waits.
    for id in [1, 2, 3].into_iter().filter(|id| *id != leader).take(1) {
        cluster.stop(id).await;
    }
    cluster.stop(leader).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    for id in [4, 5] {
        let c = cluster.controller(id);
        assert!(!c.is_leader(), "learner {id} became leader");
        assert!(
            c.leader().is_none_or(|l| l <= 3),
            "learner {id} follows {:?}",
            c.leader()
        );
    }
    cluster.stop_all().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn add_learner_refuses_voters_bad_addresses_and_node_zero() {
    let mut cluster = Cluster::start(1, 1000).await;
    let leader = cluster.wait_leader(SHORT).await;
    let address = cluster.addresses[&leader].clone();
    let mut client = ControllerClient::connect(format!("http://{address}"))
        .await
        .expect("connect");
    let cases = [
        (leader, "127.0.0.1:9", "voter"),
        (0, "127.0.0.1:9", "reserved"),
        (7, "no-port", "host:port"),
        (7, "127.0.0.1:0", "host:port"),
        (7, ":9", "host:port"),
        (7, "a b:9", "host:port"),
    ];
    for (node_id, cluster_address, why) in cases {
        let status = client
            .add_learner(AddLearnerRequest {
                node_id,
                cluster_address: cluster_address.to_owned(),
            })
            .await
            .expect_err("refused");
        let (reason, _) = reason_of(&status).expect("a reason");
        assert_eq!(
            reason,
            Reason::InvalidRequest,
            "{node_id} {cluster_address}"
        );
        assert!(status.message().contains(why), "{}", status.message());
    }
    // Nothing was added; a good request is, once, however often it is sent.
    assert!(cluster.controller(leader).learners().is_empty());
    let good = AddLearnerRequest {
        node_id: 7,
        cluster_address: "127.0.0.1:9".to_owned(),
    };
    for _ in 0..3 {
        let answer = client.add_learner(good.clone()).await.expect("added");
        assert_eq!(answer.into_inner().leader_id, leader);
    }
    let before = cluster.controller(leader).applied_index();
    client.add_learner(good).await.expect("again");
    assert_eq!(cluster.controller(leader).applied_index(), before);
    assert_eq!(
        cluster
            .controller(leader)
            .learners()
            .into_iter()
            .collect::<Vec<_>>(),
        vec![(7, "127.0.0.1:9".to_owned())]
    );
    cluster.stop_all().await;
}
