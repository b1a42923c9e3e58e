use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use pyralog_types::{LogConfig, LogId};

use crate::assign::{Strategy as Assignor, Tp};
use crate::groups::{Committed, JoinRequest, OffsetCommit, ProducerIdentity};
use crate::state::{ClusterState, Command, CommandResult, Rejection};

fn log(name: &str) -> LogId {
    LogId::new(name).expect("valid log name")
}

/// One node, and a log `orders` with `partitions` partitions.
fn state(partitions: u32) -> ClusterState {
    let mut s = ClusterState::default();
    s.apply(&Command::RegisterNode {
        id: 1,
        address: "127.0.0.1:9001".into(),
        cluster_address: String::new(),
        rack: None,
    });
    s.apply(&Command::CreateLog {
        log: log("orders"),
        config: LogConfig {
            partition_count: partitions,
            ..LogConfig::default()
        },
        request: 0,
    });
    s
}

fn join(s: &mut ClusterState, member: &str, strategy: Assignor) -> CommandResult {
    s.apply(&Command::JoinGroup {
        group: "g".into(),
        request: JoinRequest {
            member: member.into(),
            client: "test".into(),
            logs: vec![log("orders")],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            strategy,
        },
    })
}

fn assigned(s: &ClusterState, member: &str) -> BTreeSet<Tp> {
    s.groups["g"].members[member].assigned.clone()
}

/// The member gives up what was taken from it (as the client does after committing).
fn report(s: &mut ClusterState, member: &str) {
    let owned = assigned(s, member);
    s.apply(&Command::ReportOwned {
        group: "g".into(),
        member: member.into(),
        owned,
    });
}

fn commit(s: &mut ClusterState, member: &str, generation: u64, partition: u32) -> CommandResult {
    s.apply(&Command::CommitOffsets {
        group: "g".into(),
        member: Some((member.into(), generation)),
        offsets: vec![OffsetCommit {
            log: log("orders"),
            partition,
            committed: Committed {
                offset: 42,
                metadata: String::new(),
                vlsn: None,
            },
        }],
    })
}

/// No partition is in two members' `owned` sets; every assignment is within the member's
/// target and its owned set.
fn check_invariants(s: &ClusterState) -> Result<(), String> {
    for (name, g) in &s.groups {
        let mut seen: BTreeMap<&Tp, &String> = BTreeMap::new();
        for (id, m) in &g.members {
            if !m.assigned.is_subset(&m.owned) || !m.assigned.is_subset(&m.target) {
                return Err(format!(
                    "{name}/{id}: assigned outside owned or target: {m:?}"
                ));
            }
            if m.generation > g.generation {
                return Err(format!("{name}/{id}: member generation ahead of the group"));
            }
            for tp in &m.owned {
                if let Some(other) = seen.insert(tp, id) {
                    return Err(format!("{tp:?} owned by {other} and {id}"));
                }
            }
        }
    }
    Ok(())
}

#[test]
fn a_joining_member_gets_partitions_only_after_their_owner_gives_them_up() {
    let mut s = state(12);
    join(&mut s, "a", Assignor::Sticky);
    assert_eq!(assigned(&s, "a").len(), 12);
    let before_b = s.groups["g"].generation;
    join(&mut s, "b", Assignor::Sticky);
    // a keeps consuming its 6 and must give up the other 6; b waits for them.
    assert_eq!(assigned(&s, "a").len(), 6);
    assert!(assigned(&s, "b").is_empty());
    assert_eq!(s.groups["g"].members["a"].owned.len(), 12);
    assert!(s.groups["g"].generation > before_b);
    report(&mut s, "a");
    assert_eq!(assigned(&s, "b").len(), 6);
    assert!(assigned(&s, "a").is_disjoint(&assigned(&s, "b")));
    check_invariants(&s).expect("invariants");
}

#[test]
fn a_removed_members_partitions_go_to_the_others_at_once() {
    let mut s = state(12);
    for m in ["a", "b", "c", "d"] {
        join(&mut s, m, Assignor::Sticky);
        for m in ["a", "b", "c", "d"] {
            if s.groups["g"].members.contains_key(m) {
                report(&mut s, m);
            }
        }
    }
    let counts: Vec<usize> = ["a", "b", "c", "d"]
        .iter()
        .map(|m| assigned(&s, m).len())
        .collect();
    assert_eq!(counts, vec![3, 3, 3, 3]);
    let lost = assigned(&s, "c");
    s.apply(&Command::LeaveGroup {
        group: "g".into(),
        members: vec!["c".into()],
    });
    let mut all = BTreeSet::new();
    for m in ["a", "b", "d"] {
        let now = assigned(&s, m);
        assert_eq!(now.len(), 4);
        all.extend(now);
    }
    assert!(lost.is_subset(&all));
    check_invariants(&s).expect("invariants");
}

#[test]
fn commits_are_fenced_by_membership_generation_and_ownership() {
    let mut s = state(4);
    join(&mut s, "a", Assignor::Range);
    let gen_a = s.groups["g"].members["a"].generation;
    assert_eq!(commit(&mut s, "a", gen_a, 0), CommandResult::Done);
    join(&mut s, "b", Assignor::Range);
    report(&mut s, "a");
    // a's assignment changed: a commit in its old generation is a zombie's.
    match commit(&mut s, "a", gen_a, 0) {
        CommandResult::Rejected(Rejection::IllegalGeneration { generation, .. }) => {
            assert_eq!(generation, gen_a)
        }
        other => panic!("expected IllegalGeneration, got {other:?}"),
    }
    let gen_a = s.groups["g"].members["a"].generation;
    let b_partition = assigned(&s, "b").iter().next().expect("b has one").1;
    assert!(matches!(
        commit(&mut s, "a", gen_a, b_partition),
        CommandResult::Rejected(Rejection::NotAssigned { .. })
    ));
    s.apply(&Command::LeaveGroup {
        group: "g".into(),
        members: vec!["a".into()],
    });
    assert!(matches!(
        commit(&mut s, "a", gen_a, 0),
        CommandResult::Rejected(Rejection::UnknownMember { .. })
    ));
    // Administrative commits (offset resets) only while nobody consumes.
    let reset = Command::CommitOffsets {
        group: "g".into(),
        member: None,
        offsets: vec![],
    };
    assert!(matches!(
        s.apply(&reset),
        CommandResult::Rejected(Rejection::GroupNotEmpty { .. })
    ));
    assert!(matches!(
        s.apply(&Command::DeleteGroup { group: "g".into() }),
        CommandResult::Rejected(Rejection::GroupNotEmpty { .. })
    ));
    s.apply(&Command::LeaveGroup {
        group: "g".into(),
        members: vec!["b".into()],
    });
    assert_eq!(s.apply(&reset), CommandResult::Done);
    assert_eq!(s.groups["g"].offsets[&log("orders")][&0].offset, 42);
    assert_eq!(
        s.apply(&Command::DeleteGroup { group: "g".into() }),
        CommandResult::Done
    );
    assert!(!s.groups.contains_key("g"));
}

#[test]
fn a_group_keeps_its_strategy_and_follows_new_logs() {
    let mut s = state(2);
    join(&mut s, "a", Assignor::Range);
    assert!(matches!(
        join(&mut s, "b", Assignor::RoundRobin),
        CommandResult::Rejected(Rejection::InconsistentStrategy { .. })
    ));
    // A member subscribed to a log that does not exist yet gets it once created.
    s.apply(&Command::JoinGroup {
        group: "g".into(),
        request: JoinRequest {
            member: "a".into(),
            client: "test".into(),
            logs: vec![log("orders"), log("later")],
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 10_000,
            strategy: Assignor::Range,
        },
    });
    assert_eq!(assigned(&s, "a").len(), 2);
    s.apply(&Command::CreateLog {
        log: log("later"),
        config: LogConfig {
            partition_count: 3,
            ..LogConfig::default()
        },
        request: 0,
    });
    assert_eq!(assigned(&s, "a").len(), 5);
    s.apply(&Command::DeleteLog { log: log("later") });
    assert_eq!(assigned(&s, "a").len(), 2);
    check_invariants(&s).expect("invariants");
}

#[test]
fn producer_ids_are_unique_and_a_named_producer_is_fenced_by_its_next_instance() {
    let mut s = ClusterState::default();
    let mut init = |name: Option<&str>| match s.apply(&Command::InitProducer {
        name: name.map(str::to_owned),
    }) {
        CommandResult::Producer(p) => p,
        other => panic!("{other:?}"),
    };
    let a = init(None);
    let b = init(None);
    assert_ne!(a.id, b.id);
    let n1 = init(Some("billing"));
    let n2 = init(Some("billing"));
    assert_eq!(n1.id, n2.id);
    assert_eq!(n2.epoch, n1.epoch + 1);
    assert!(![a.id, b.id].contains(&n1.id));
    assert_eq!(
        n1,
        ProducerIdentity {
            id: n1.id,
            epoch: 0
        }
    );
}

#[derive(Debug, Clone)]
enum Op {
    Join(usize, Assignor),
    Leave(usize),
    Report(usize),
    Commit(usize, u32),
}

fn op() -> impl proptest::strategy::Strategy<Value = Op> {
    let assignor = prop_oneof![
        Just(Assignor::Range),
        Just(Assignor::RoundRobin),
        Just(Assignor::Sticky)
    ];
    prop_oneof![
        (0usize..5, assignor).prop_map(|(m, a)| Op::Join(m, a)),
        (0usize..5).prop_map(Op::Leave),
        (0usize..5).prop_map(Op::Report),
        (0usize..5, 0u32..10).prop_map(|(m, p)| Op::Commit(m, p)),
    ]
}

proptest! {
    /// Whatever members do, no partition is ever owned by two members; once every member
    /// reports, every partition is assigned to exactly one member; and a commit is accepted
    /// only from a member that owns the partition.
    #[test]
    fn no_partition_is_ever_owned_twice(ops in proptest::collection::vec(op(), 1..60)) {
        let mut s = state(10);
        for op in &ops {
            match op {
                Op::Join(m, a) => {
                    // One strategy per group: the first joiner's.
                    let a = s.groups.get("g").filter(|g| !g.members.is_empty()).map_or(*a, |g| g.strategy);
                    join(&mut s, &format!("m{m}"), a);
                }
                Op::Leave(m) => {
                    s.apply(&Command::LeaveGroup { group: "g".into(), members: vec![format!("m{m}")] });
                }
                Op::Report(m) => {
                    if s.groups.get("g").is_some_and(|g| g.members.contains_key(&format!("m{m}"))) {
                        report(&mut s, &format!("m{m}"));
                    }
                }
                Op::Commit(m, p) => {
                    let id = format!("m{m}");
                    let Some(member) = s.groups.get("g").and_then(|g| g.members.get(&id)).cloned() else {
                        continue;
                    };
                    let result = commit(&mut s, &id, member.generation, *p);
                    let owns = member.owned.contains(&(log("orders"), *p));
                    prop_assert_eq!(result == CommandResult::Done, owns);
                }
            }
            prop_assert!(check_invariants(&s).is_ok(), "{:?}", check_invariants(&s));
        }
        // Everyone reports until nothing changes: the group converges.
        let members: Vec<String> = s.groups.get("g").map(|g| g.members.keys().cloned().collect()).unwrap_or_default();
        for _ in 0..3 {
            for m in &members {
                report(&mut s, m);
            }
        }
        if !members.is_empty() {
            let g = &s.groups["g"];
            let mut count = BTreeMap::new();
            for m in g.members.values() {
                prop_assert_eq!(&m.assigned, &m.target);
                for tp in &m.assigned {
                    *count.entry(tp.clone()).or_insert(0) += 1;
                }
            }
            prop_assert_eq!(count.len(), 10);
            prop_assert!(count.values().all(|c| *c == 1));
        }
    }
}
