use proptest::prelude::*;

use super::*;

pub(super) fn log(name: &str) -> LogId {
    LogId::new(name).expect("valid log name")
}

fn config(partitions: u32, rf: u16) -> LogConfig {
    LogConfig {
        partition_count: partitions,
        replication_factor: rf,
        min_in_sync_replicas: rf.min(2),
        ..Default::default()
    }
}

pub(super) fn cluster(nodes: u64) -> ClusterState {
    let mut s = ClusterState::default();
    for id in 1..=nodes {
        s.apply(&Command::RegisterNode {
            id,
            address: format!("127.0.0.1:{}", 9000 + id),
            cluster_address: String::new(),
            rack: None,
        });
    }
    s
}

fn created(s: &mut ClusterState, name: &str, partitions: u32, rf: u16) -> LogMeta {
    match s.apply(&Command::CreateLog {
        log: log(name),
        config: config(partitions, rf),
        request: 0,
    }) {
        CommandResult::LogCreated(meta) => *meta,
        other => panic!("create failed: {other:?}"),
    }
}

/// Six nodes in three racks (1, 2: rack a; 3, 4: b; 5, 6: c).
fn racked_cluster() -> ClusterState {
    let mut s = ClusterState::default();
    for id in 1..=6u64 {
        let rack = ["a", "b", "c"][((id - 1) / 2) as usize];
        s.apply(&Command::RegisterNode {
            id,
            address: format!("127.0.0.1:{}", 9000 + id),
            cluster_address: String::new(),
            rack: Some(rack.to_owned()),
        });
    }
    s
}

#[test]
fn a_partition_s_replicas_go_to_distinct_racks_and_leaders_to_every_node() {
    let mut s = racked_cluster();
    assert_eq!(s.rack_of(4), Some("b"));
    for (rf, racks) in [(2u16, 2usize), (3, 3)] {
        let meta = created(&mut s, &format!("rf{rf}"), 12, rf);
        let mut leaders = BTreeMap::<NodeId, usize>::new();
        for p in &meta.partitions {
            let spanned: BTreeSet<&str> = p.replicas.iter().filter_map(|r| s.rack_of(*r)).collect();
            assert_eq!(spanned.len(), racks, "{:?}", p.replicas);
            *leaders.entry(p.replicas[0]).or_default() += 1;
        }
        assert_eq!(leaders.len(), 6, "every node leads some: {leaders:?}");
    }
    // A bad rack name is refused before it reaches the state.
    let bad = Command::RegisterNode {
        id: 7,
        address: "127.0.0.1:9007".into(),
        cluster_address: String::new(),
        rack: Some("two words".into()),
    };
    assert!(validate(&bad).is_err());
}

#[test]
fn decommissioning_moves_a_replica_to_a_rack_the_partition_lacks() {
    let mut s = racked_cluster();
    let meta = created(&mut s, "orders", 6, 3);
    assert!(matches!(
        s.apply(&Command::DecommissionNode { id: 1 }),
        CommandResult::Done
    ));
    let after = &s.logs[&log("orders")];
    for (before, now) in meta.partitions.iter().zip(&after.partitions) {
        if !before.replicas.contains(&1) {
            continue;
        }
        let target = now.target.as_ref().expect("moving");
        assert!(!target.contains(&1));
        // Node 1's place goes to node 2, the other node of rack a.
        assert!(target.contains(&2), "{target:?}");
        let spanned: BTreeSet<&str> = target.iter().filter_map(|r| s.rack_of(*r)).collect();
        assert_eq!(spanned.len(), 3, "{target:?}");
    }
}

#[test]
fn replicas_spread_over_the_nodes_and_every_partition_starts_with_its_first_replica_leading() {
    let mut s = cluster(3);
    let meta = created(&mut s, "orders", 6, 3);
    let mut leaders = BTreeMap::<NodeId, usize>::new();
    for p in &meta.partitions {
        assert_eq!(p.replicas.len(), 3);
        let mut distinct = p.replicas.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), 3, "no node twice: {:?}", p.replicas);
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.epoch, Epoch(1));
        *leaders.entry(p.replicas[0]).or_default() += 1;
    }
    assert_eq!(leaders.values().copied().collect::<Vec<_>>(), vec![2, 2, 2]);
}

#[test]
fn a_log_is_created_once_and_needs_enough_live_nodes() {
    let mut s = cluster(2);
    assert_eq!(
        s.apply(&Command::CreateLog {
            log: log("a"),
            config: config(1, 3),
            request: 0
        }),
        CommandResult::Rejected(Rejection::NotEnoughNodes {
            needed: 3,
            available: 2
        })
    );
    created(&mut s, "a", 1, 2);
    let version = s.version;
    assert_eq!(
        s.apply(&Command::CreateLog {
            log: log("a"),
            config: config(1, 1),
            request: 0
        }),
        CommandResult::Rejected(Rejection::LogAlreadyExists(log("a")))
    );
    assert_eq!(s.version, version, "a rejected command changes nothing");
}

#[test]
fn a_fenced_leader_is_replaced_from_the_isr_in_a_new_epoch() {
    let mut s = cluster(3);
    let meta = created(&mut s, "a", 1, 3);
    let old = meta.partitions[0].clone();
    let leader = old.leader.expect("leader");
    s.apply(&Command::FenceNode { id: leader });
    let p = s.partition(&log("a"), 0).expect("partition");
    assert_eq!(p.leader, Some(old.replicas[1]));
    assert_eq!(p.epoch, Epoch(2));
    assert!(!p.isr.contains(&leader), "a fenced node leaves the ISR");

    // It comes back: it is live again but only rejoins the ISR when the leader says so.
    s.apply(&Command::RegisterNode {
        id: leader,
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    let p = s.partition(&log("a"), 0).expect("partition").clone();
    assert_eq!(
        p.leader,
        Some(old.replicas[1]),
        "no leader change on return"
    );
    assert!(!p.isr.contains(&leader));
    assert_eq!(
        s.apply(&Command::AlterIsr {
            log: log("a"),
            partition: 0,
            leader: old.replicas[1],
            epoch: p.epoch,
            isr: vec![leader, old.replicas[1], old.replicas[2]],
        }),
        CommandResult::Done
    );
    assert_eq!(
        s.partition(&log("a"), 0).expect("partition").isr,
        old.replicas,
        "ISR in replica order"
    );
}

#[test]
fn a_leaving_node_hands_every_leadership_to_its_isr_and_leaves_the_isrs_it_shared() {
    let mut s = cluster(3);
    let meta = created(&mut s, "a", 3, 3);
    let leaving = meta.partitions[0].replicas[0];
    assert!(s.has_work_to_hand_off(leaving));
    assert_eq!(
        s.apply(&Command::LeaveCluster { id: leaving }),
        CommandResult::Done
    );
    assert!(!s.is_live(leaving), "it is fenced until it registers again");
    for (i, (before, p)) in meta
        .partitions
        .iter()
        .zip(&s.logs[&log("a")].partitions)
        .enumerate()
    {
        assert_ne!(
            p.leader,
            Some(leaving),
            "partition {i} still led by the leaving node"
        );
        let leader = p.leader.expect("another ISR member leads");
        assert!(
            before.isr.contains(&leader),
            "partition {i}: leader from outside the ISR"
        );
        assert!(!p.isr.contains(&leaving), "partition {i}: still in the ISR");
        if before.leader == Some(leaving) {
            assert_eq!(
                p.epoch,
                Epoch(before.epoch.0 + 1),
                "partition {i}: a new epoch"
            );
        } else {
            assert_eq!(p.leader, before.leader, "partition {i}: its leader stays");
        }
    }
    assert!(!s.has_work_to_hand_off(leaving), "nothing left to hand off");
}

#[test]
fn a_node_alone_in_its_isrs_has_nothing_to_hand_off() {
    let mut s = cluster(1);
    created(&mut s, "a", 2, 1);
    assert!(!s.has_work_to_hand_off(1), "a single node");
    let mut s = cluster(3);
    let meta = created(&mut s, "b", 3, 1);
    for p in &meta.partitions {
        assert!(
            !s.has_work_to_hand_off(p.replicas[0]),
            "replication factor 1"
        );
    }
    // Sharing an ISR only with a fenced node is alone too.
    let mut s = cluster(2);
    let meta = created(&mut s, "c", 1, 2);
    let [a, b] = [
        meta.partitions[0].replicas[0],
        meta.partitions[0].replicas[1],
    ];
    assert!(s.has_work_to_hand_off(b), "a follower in a shared ISR");
    s.apply(&Command::FenceNode { id: a });
    assert!(!s.has_work_to_hand_off(b));
}

#[test]
fn leadership_goes_back_to_the_preferred_replica_only_when_it_is_live_and_in_sync() {
    let mut s = cluster(3);
    let meta = created(&mut s, "a", 1, 3);
    let preferred = meta.partitions[0].replicas[0];
    s.apply(&Command::LeaveCluster { id: preferred });
    let moved = s.partition(&log("a"), 0).expect("partition").clone();
    assert!(
        s.preferred_leader_moves().is_empty(),
        "fenced: nothing to move"
    );

    // Back, but not yet in sync: still nothing.
    s.apply(&Command::RegisterNode {
        id: preferred,
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    assert!(
        s.preferred_leader_moves().is_empty(),
        "outside the ISR: nothing to move"
    );
    let before = s.clone();
    s.apply(&Command::BalanceLeaders);
    assert_eq!(
        s.logs, before.logs,
        "balancing with nothing to move changes no partition"
    );

    // In sync again: it leads, in a new epoch, and the ISR is untouched.
    let leader = moved.leader.expect("leader");
    s.apply(&Command::AlterIsr {
        log: log("a"),
        partition: 0,
        leader,
        epoch: moved.epoch,
        isr: meta.partitions[0].replicas.clone(),
    });
    assert_eq!(s.preferred_leader_moves(), vec![(log("a"), 0)]);
    assert_eq!(s.apply(&Command::BalanceLeaders), CommandResult::Done);
    let p = s.partition(&log("a"), 0).expect("partition");
    assert_eq!(p.leader, Some(preferred));
    assert_eq!(p.epoch, Epoch(moved.epoch.0 + 1));
    assert_eq!(p.isr, meta.partitions[0].replicas);
    assert!(s.preferred_leader_moves().is_empty());
}

#[test]
fn a_log_grows_by_partitions_placed_like_new_ones_and_never_shrinks() {
    let mut s = cluster(3);
    let before = created(&mut s, "a", 2, 2);
    let grow = |count| Command::AddPartitions {
        log: log("a"),
        partition_count: count,
    };
    assert_eq!(s.apply(&grow(5)), CommandResult::Done);
    let meta = &s.logs[&log("a")];
    assert_eq!(meta.config.partition_count, 5);
    assert_eq!(meta.partitions.len(), 5);
    assert_eq!(
        &meta.partitions[..2],
        &before.partitions[..],
        "old partitions untouched"
    );
    for p in &meta.partitions[2..] {
        assert_eq!(p.replicas.len(), 2);
        assert_ne!(p.replicas[0], p.replicas[1]);
        assert_eq!(p.leader, Some(p.replicas[0]));
        assert_eq!(p.isr, p.replicas);
        assert_eq!(p.epoch, Epoch(1));
    }
    // The same count again is a retry; fewer is refused; so is more than the limit.
    let version = s.version;
    assert_eq!(s.apply(&grow(5)), CommandResult::Done);
    assert_eq!(s.logs[&log("a")].partitions.len(), 5);
    assert!(s.version <= version + 1);
    assert!(
        matches!(s.apply(&grow(3)), CommandResult::Rejected(Rejection::Invalid(m)) if m.contains("only grow"))
    );
    assert!(matches!(
        s.apply(&grow(10_001)),
        CommandResult::Rejected(Rejection::Invalid(_))
    ));
    assert!(matches!(
        s.apply(&Command::AddPartitions {
            log: log("nope"),
            partition_count: 2
        }),
        CommandResult::Rejected(Rejection::LogNotFound(_))
    ));
    // Not enough live nodes for the replication factor: refused, nothing changes.
    s.apply(&Command::FenceNode { id: 1 });
    s.apply(&Command::FenceNode { id: 2 });
    assert!(matches!(
        s.apply(&grow(6)),
        CommandResult::Rejected(Rejection::NotEnoughNodes { .. })
    ));
    assert_eq!(s.logs[&log("a")].partitions.len(), 5);
}

#[test]
fn a_group_consuming_a_grown_log_is_assigned_its_new_partitions_in_one_rebalance() {
    let mut s = cluster(2);
    created(&mut s, "a", 2, 1);
    let joined = s.apply(&Command::JoinGroup {
        group: "g".into(),
        request: JoinRequest {
            member: "m".into(),
            client: "c".into(),
            logs: vec![log("a")],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            strategy: Default::default(),
        },
    });
    assert!(matches!(joined, CommandResult::Joined(_)), "{joined:?}");
    let generation = s.groups["g"].generation;
    s.apply(&Command::AddPartitions {
        log: log("a"),
        partition_count: 4,
    });
    let g = &s.groups["g"];
    assert!(g.generation > generation, "the group rebalanced");
    let target: Vec<u32> = g.members["m"].target.iter().map(|(_, p)| *p).collect();
    assert_eq!(
        target,
        vec![0, 1, 2, 3],
        "the only member gets every partition"
    );
}

#[test]
fn the_last_isr_member_stays_in_the_isr_and_leads_again_when_it_returns() {
    let mut s = cluster(3);
    let meta = created(&mut s, "a", 1, 3);
    let r = meta.partitions[0].replicas.clone();
    // The leader shrinks the ISR to itself (both followers lag), then dies.
    s.apply(&Command::AlterIsr {
        log: log("a"),
        partition: 0,
        leader: r[0],
        epoch: Epoch(1),
        isr: vec![r[0]],
    });
    s.apply(&Command::FenceNode { id: r[0] });
    let p = s.partition(&log("a"), 0).expect("partition").clone();
    assert_eq!(p.leader, None, "no clean candidate: offline, not unclean");
    assert_eq!(p.isr, vec![r[0]]);
    assert_eq!(
        p.epoch,
        Epoch(2),
        "the dead leader's epoch is stale at once"
    );
    s.apply(&Command::RegisterNode {
        id: r[0],
        address: "x:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    let p = s.partition(&log("a"), 0).expect("partition");
    assert_eq!(p.leader, Some(r[0]));
    assert_eq!(p.epoch, Epoch(3));
}

#[test]
fn a_retried_creation_gets_the_same_answer_and_another_request_does_not() {
    let mut s = cluster(3);
    let create = |request| Command::CreateLog {
        log: log("a"),
        config: config(2, 3),
        request,
    };
    let first = s.apply(&create(7));
    assert!(matches!(first, CommandResult::LogCreated(_)));
    assert_eq!(
        s.apply(&create(7)),
        first,
        "the same request: the same answer"
    );
    assert_eq!(
        s.apply(&create(8)),
        CommandResult::Rejected(Rejection::LogAlreadyExists(log("a")))
    );
    assert_eq!(
        s.apply(&create(0)),
        CommandResult::Rejected(Rejection::LogAlreadyExists(log("a"))),
        "no request id, no retry detection"
    );
}

#[test]
fn advancing_the_epoch_past_archived_data_keeps_the_leader_and_never_goes_back() {
    let mut s = cluster(1);
    created(&mut s, "a", 1, 1);
    let advance = |above| Command::AdvanceEpoch {
        log: log("a"),
        partition: 0,
        above: Epoch(above),
    };
    s.apply(&advance(4));
    let p = s.partition(&log("a"), 0).expect("p").clone();
    assert_eq!((p.epoch, p.leader), (Epoch(5), Some(1)));
    s.apply(&advance(2));
    assert_eq!(s.partition(&log("a"), 0).expect("p").epoch, Epoch(5));
}

#[test]
fn unclean_election_is_only_taken_when_the_log_allows_it() {
    let mut s = cluster(2);
    let mut cfg = config(1, 2);
    cfg.unclean_leader_election = true;
    s.apply(&Command::CreateLog {
        log: log("u"),
        config: cfg,
        request: 0,
    });
    let r = s.partition(&log("u"), 0).expect("p").replicas.clone();
    s.apply(&Command::AlterIsr {
        log: log("u"),
        partition: 0,
        leader: r[0],
        epoch: Epoch(1),
        isr: vec![r[0]],
    });
    s.apply(&Command::FenceNode { id: r[0] });
    let p = s.partition(&log("u"), 0).expect("p");
    assert_eq!(p.leader, Some(r[1]));
    assert_eq!(p.isr, vec![r[1]]);
}

#[test]
fn isr_changes_from_a_stale_leader_or_with_strangers_are_rejected() {
    let mut s = cluster(4);
    let meta = created(&mut s, "a", 1, 3);
    let p = &meta.partitions[0];
    let leader = p.replicas[0];
    let stranger = (1..=4)
        .find(|n| !p.replicas.contains(n))
        .expect("a 4th node");
    let alter = |leader, epoch, isr: Vec<NodeId>| Command::AlterIsr {
        log: log("a"),
        partition: 0,
        leader,
        epoch,
        isr,
    };
    assert!(matches!(
        s.apply(&alter(leader, Epoch(0), vec![leader])),
        CommandResult::Rejected(Rejection::StaleLeader { .. })
    ));
    assert!(matches!(
        s.apply(&alter(p.replicas[1], Epoch(1), vec![p.replicas[1]])),
        CommandResult::Rejected(Rejection::StaleLeader { .. })
    ));
    assert!(matches!(
        s.apply(&alter(leader, Epoch(1), vec![leader, stranger])),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    assert!(matches!(
        s.apply(&alter(leader, Epoch(1), vec![p.replicas[1]])),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    // A fenced replica is refused, not silently left out: the leader must learn that its
    // proposal did not commit as proposed (CI: a leader waited forever on such a proposal).
    s.apply(&Command::FenceNode { id: p.replicas[2] });
    assert!(matches!(
        s.apply(&alter(leader, Epoch(1), p.replicas.clone())),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    s.apply(&Command::RegisterNode {
        id: p.replicas[2],
        address: "back:1".into(),
        cluster_address: String::new(),
        rack: None,
    });
    assert_eq!(
        s.apply(&alter(leader, Epoch(1), p.replicas.clone())),
        CommandResult::Done
    );
    assert_eq!(s.partition(&log("a"), 0).expect("p").isr, p.replicas);
}

#[test]
fn a_damaged_replica_leaves_the_isr_and_hands_over_leadership_only_to_a_live_isr_member() {
    let mut s = cluster(3);
    let meta = created(&mut s, "a", 1, 3);
    let (a, l) = (log("a"), &meta.partitions[0]);
    let (first, second, third) = (l.replicas[0], l.replicas[1], l.replicas[2]);
    let leave = |node| Command::LeaveIsr {
        log: a.clone(),
        partition: 0,
        node,
    };
    // A follower leaves: same leader, new epoch, ISR without it.
    assert_eq!(s.apply(&leave(third)), CommandResult::Done);
    let p = s.partition(&a, 0).expect("partition").clone();
    assert_eq!(p.leader, Some(first));
    assert_eq!(p.isr, vec![first, second]);
    assert_eq!(p.epoch, Epoch(2));
    // The leader leaves: the other live ISR member leads in a newer epoch.
    assert_eq!(s.apply(&leave(first)), CommandResult::Done);
    let p = s.partition(&a, 0).expect("partition").clone();
    assert_eq!(p.leader, Some(second));
    assert_eq!(p.isr, vec![second]);
    assert_eq!(p.epoch, Epoch(3));
    // The last in-sync copy never leaves; strangers and unknown partitions are refused.
    assert!(matches!(
        s.apply(&leave(second)),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    assert!(matches!(
        s.apply(&leave(9)),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    assert!(matches!(
        s.apply(&Command::LeaveIsr {
            log: a.clone(),
            partition: 4,
            node: first
        }),
        CommandResult::Rejected(Rejection::PartitionNotFound { .. })
    ));
    assert_eq!(s.partition(&a, 0).expect("partition").epoch, Epoch(3));
    // A successor must be live: with the only other ISR member fenced, the leader stays.
    let mut s = cluster(2);
    let meta = created(&mut s, "b", 1, 2);
    let b = log("b");
    let (lead, follower) = (
        meta.partitions[0].replicas[0],
        meta.partitions[0].replicas[1],
    );
    s.apply(&Command::FenceNode { id: follower });
    assert!(matches!(
        s.apply(&Command::LeaveIsr {
            log: b.clone(),
            partition: 0,
            node: lead
        }),
        CommandResult::Rejected(Rejection::InvalidIsr(_))
    ));
    assert_eq!(s.partition(&b, 0).expect("partition").leader, Some(lead));
}

#[test]
fn the_state_round_trips_through_json() {
    let mut s = cluster(3);
    created(&mut s, "a", 2, 3);
    let json = serde_json::to_vec(&s).expect("encode");
    let back: ClusterState = serde_json::from_slice(&json).expect("decode");
    assert_eq!(back, s);
}

fn any_command() -> impl Strategy<Value = Command> {
    let node = 1..=5u64;
    prop_oneof![
        node.clone().prop_map(|id| Command::RegisterNode {
            id,
            address: format!("n{id}:1"),
            cluster_address: String::new(),
            rack: None,
        }),
        node.clone().prop_map(|id| Command::FenceNode { id }),
        node.clone().prop_map(|id| Command::LeaveCluster { id }),
        Just(Command::BalanceLeaders),
        (
            0..3usize,
            0..3u32,
            proptest::collection::vec(1..=5u64, 1..4)
        )
            .prop_map(|(l, partition, replicas)| Command::ReassignPartitions {
                moves: vec![PartitionMove {
                    log: log(["a", "b", "c"][l]),
                    partition,
                    replicas,
                }],
            }),
        node.clone().prop_map(|id| Command::DecommissionNode { id }),
        (0..3usize, 0..6u32).prop_map(|(l, partition_count)| Command::AddPartitions {
            log: log(["a", "b", "c"][l]),
            partition_count,
        }),
        (0..3usize, 1..4u32, 1..=3u16, any::<bool>()).prop_map(|(l, parts, rf, unclean)| {
            let mut config = config(parts, rf);
            config.unclean_leader_election = unclean;
            Command::CreateLog {
                log: log(["a", "b", "c"][l]),
                config,
                request: 0,
            }
        }),
        (0..3usize, 0..3u32, 0..8u64).prop_map(|(l, partition, above)| Command::AdvanceEpoch {
            log: log(["a", "b", "c"][l]),
            partition,
            above: Epoch(above),
        }),
        (0..3usize).prop_map(|l| Command::DeleteLog {
            log: log(["a", "b", "c"][l])
        }),
        (
            0..3usize,
            0..3u32,
            node.clone(),
            0..6u64,
            proptest::collection::vec(1..=5u64, 0..4)
        )
            .prop_map(|(l, partition, leader, epoch, isr)| Command::AlterIsr {
                log: log(["a", "b", "c"][l]),
                partition,
                leader,
                epoch: Epoch(epoch),
                isr,
            }),
        (0..3usize, 0..3u32, node.clone()).prop_map(|(l, partition, node)| Command::LeaveIsr {
            log: log(["a", "b", "c"][l]),
            partition,
            node,
        }),
    ]
}

proptest! {
    /// Whatever the controller is told, in any order: a leader is live and in the ISR, the ISR
    /// is a non-empty subset of the replicas, and epochs only grow, by at least one at every
    /// leader change.
    #[test]
    fn every_command_sequence_keeps_the_invariants(cmds in proptest::collection::vec(any_command(), 1..80)) {
        let mut s = ClusterState::default();
        for cmd in &cmds {
            let before = s.clone();
            s.apply(cmd);
            for (id, meta) in &s.logs {
                for (i, p) in meta.partitions.iter().enumerate() {
                    prop_assert!(!p.isr.is_empty(), "{id}/{i}: empty ISR");
                    prop_assert!(p.isr.iter().all(|r| p.replicas.contains(r)));
                    if let Some(t) = &p.target {
                        prop_assert!(t.iter().all(|r| p.replicas.contains(r)), "{id}/{i}: target outside the replicas");
                    }
                    if let Some(l) = p.leader {
                        prop_assert!(p.isr.contains(&l), "{id}/{i}: leader outside the ISR");
                        prop_assert!(s.is_live(l), "{id}/{i}: fenced leader");
                    }
                    if let Some(old) = before.partition(id, i as u32) {
                        if before.logs[id].incarnation == meta.incarnation {
                            prop_assert!(p.epoch >= old.epoch, "{id}/{i}: epoch went back");
                            if p.leader != old.leader {
                                prop_assert!(p.epoch > old.epoch, "{id}/{i}: new leader, same epoch");
                            }
                        }
                    }
                }
            }
        }
    }

    /// Two voters applying the same commands end in the same state.
    #[test]
    fn applying_is_deterministic(cmds in proptest::collection::vec(any_command(), 1..40)) {
        let (mut a, mut b) = (ClusterState::default(), ClusterState::default());
        for cmd in &cmds {
            prop_assert_eq!(a.apply(cmd), b.apply(cmd));
        }
        prop_assert_eq!(a, b);
    }
}
