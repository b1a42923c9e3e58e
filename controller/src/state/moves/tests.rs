use super::*;
use crate::state::tests::{cluster, log};
use crate::state::Command;
use pyralog_types::LogConfig;

fn create(s: &mut ClusterState, partitions: u32, rf: u16) {
    let r = s.apply(&Command::CreateLog {
        log: log("a"),
        config: LogConfig {
            partition_count: partitions,
            replication_factor: rf,
            min_in_sync_replicas: 1,
            ..Default::default()
        },
        request: 0,
    });
    assert!(matches!(r, CommandResult::LogCreated(_)), "{r:?}");
}

fn part(s: &ClusterState, p: u32) -> PartitionMeta {
    s.partition(&log("a"), p).expect("partition").clone()
}

/// The leader reports `isr` in the partition's current epoch.
fn in_sync(s: &mut ClusterState, p: u32, isr: Vec<NodeId>) -> CommandResult {
    let meta = part(s, p);
    s.apply(&Command::AlterIsr {
        log: log("a"),
        partition: p,
        leader: meta.leader.expect("leader"),
        epoch: meta.epoch,
        isr,
    })
}

fn reassign(p: u32, replicas: Vec<NodeId>) -> Command {
    Command::ReassignPartitions {
        moves: vec![PartitionMove {
            log: log("a"),
            partition: p,
            replicas,
        }],
    }
}

#[test]
fn a_move_widens_the_replicas_until_the_target_is_in_sync_then_becomes_the_target() {
    let mut s = cluster(4);
    create(&mut s, 1, 2);
    let before = part(&s, 0);
    let [a, b] = [before.replicas[0], before.replicas[1]];
    let new: Vec<NodeId> = (1..=4).filter(|n| *n != a && *n != b).collect();
    let target = vec![new[0], new[1]];
    assert_eq!(s.apply(&reassign(0, target.clone())), CommandResult::Done);
    let moving = part(&s, 0);
    assert_eq!(moving.replicas, vec![a, b, new[0], new[1]]);
    assert_eq!(moving.target.as_ref(), Some(&target));
    assert_eq!(
        moving.leader,
        Some(a),
        "the leader stays while the set widens"
    );
    assert_eq!(moving.epoch, before.epoch, "same epoch: writes go on");
    assert_eq!(moving.isr, vec![a, b]);

    // One new replica caught up: still moving.
    assert_eq!(in_sync(&mut s, 0, vec![a, b, new[0]]), CommandResult::Done);
    assert!(part(&s, 0).target.is_some());
    // Both: the replicas are the target, led by its first member in a new epoch.
    assert_eq!(
        in_sync(&mut s, 0, vec![a, b, new[0], new[1]]),
        CommandResult::Done
    );
    let done = part(&s, 0);
    assert_eq!(done.replicas, target);
    assert_eq!(done.isr, target);
    assert_eq!(done.target, None);
    assert_eq!(done.leader, Some(new[0]));
    assert_eq!(done.epoch, Epoch(before.epoch.0 + 1));
}

#[test]
fn a_move_is_refused_whole_when_any_part_is_wrong() {
    let mut s = cluster(3);
    create(&mut s, 2, 1);
    let version = s.version;
    let cases = [
        (reassign(5, vec![1]), "no such partition"),
        (reassign(0, vec![9]), "an unknown node"),
        (reassign(0, vec![]), "no replicas"),
        (reassign(0, vec![1, 1]), "a node twice"),
    ];
    for (cmd, why) in cases {
        assert!(matches!(s.apply(&cmd), CommandResult::Rejected(_)), "{why}");
    }
    s.apply(&Command::FenceNode { id: 3 });
    let fenced = s.version;
    let both = Command::ReassignPartitions {
        moves: vec![
            PartitionMove {
                log: log("a"),
                partition: 0,
                replicas: vec![2],
            },
            PartitionMove {
                log: log("a"),
                partition: 1,
                replicas: vec![3],
            },
        ],
    };
    assert!(
        matches!(s.apply(&both), CommandResult::Rejected(_)),
        "node 3 is fenced"
    );
    assert_eq!(s.version, fenced, "nothing applied");
    assert!(version < fenced);
    assert!(part(&s, 0).target.is_none());
}

#[test]
fn a_decommissioned_node_loses_every_replica_and_gets_no_new_ones() {
    let mut s = cluster(4);
    create(&mut s, 4, 2);
    assert_eq!(
        s.apply(&Command::DecommissionNode { id: 1 }),
        CommandResult::Done
    );
    assert!(s.nodes[&1].draining);
    // Every new replica catches up.
    for p in 0..4 {
        let meta = part(&s, p);
        if meta.target.is_some() {
            let all = meta.replicas.clone();
            assert_eq!(in_sync(&mut s, p, all), CommandResult::Done);
        }
    }
    let mut load = BTreeMap::<NodeId, usize>::new();
    for p in 0..4 {
        let meta = part(&s, p);
        assert!(meta.target.is_none(), "{p} still moving: {meta:?}");
        assert!(!meta.replicas.contains(&1), "{p} still on node 1: {meta:?}");
        assert_ne!(meta.leader, Some(1));
        assert_eq!(meta.replicas.len(), 2);
        for r in &meta.replicas {
            *load.entry(*r).or_default() += 1;
        }
    }
    assert!(
        load.values().all(|n| *n >= 2),
        "spread over the others: {load:?}"
    );
    // Registering again keeps it drained; new logs avoid it.
    s.apply(&Command::RegisterNode {
        id: 1,
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    assert!(s.nodes[&1].draining);
    let r = s.apply(&Command::CreateLog {
        log: log("b"),
        config: LogConfig {
            partition_count: 6,
            replication_factor: 3,
            ..Default::default()
        },
        request: 0,
    });
    let CommandResult::LogCreated(meta) = r else {
        panic!("{r:?}")
    };
    assert!(meta.partitions.iter().all(|p| !p.replicas.contains(&1)));
    // Not enough other nodes: refused.
    let mut small = cluster(2);
    create(&mut small, 1, 2);
    assert!(matches!(
        small.apply(&Command::DecommissionNode { id: 1 }),
        CommandResult::Rejected(Rejection::Invalid(m)) if m.contains("no other live node")
    ));
    assert!(!small.nodes[&1].draining);
}

#[test]
fn balancing_leaves_a_moving_partition_and_a_draining_node_alone() {
    let mut s = cluster(3);
    create(&mut s, 1, 2);
    let before = part(&s, 0);
    let [a, b] = [before.replicas[0], before.replicas[1]];
    let c = (1..=3).find(|n| *n != a && *n != b).expect("a third node");
    // a hands off and comes back in sync: balancing would give it back its leadership...
    s.apply(&Command::LeaveCluster { id: a });
    s.apply(&Command::RegisterNode {
        id: a,
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    assert_eq!(in_sync(&mut s, 0, vec![a, b]), CommandResult::Done);
    assert_eq!(s.preferred_leader_moves().len(), 1);
    // ...but not while the partition moves,
    assert_eq!(s.apply(&reassign(0, vec![c, a])), CommandResult::Done);
    assert!(s.preferred_leader_moves().is_empty(), "{:?}", part(&s, 0));
    // nor to a node being decommissioned.
    let mut s2 = cluster(3);
    create(&mut s2, 1, 2);
    let p = part(&s2, 0);
    s2.apply(&Command::LeaveCluster { id: p.replicas[0] });
    s2.apply(&Command::RegisterNode {
        id: p.replicas[0],
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    assert_eq!(in_sync(&mut s2, 0, p.replicas.clone()), CommandResult::Done);
    if let Some(n) = s2.nodes.get_mut(&p.replicas[0]) {
        n.draining = true;
    }
    assert!(s2.preferred_leader_moves().is_empty());
}
