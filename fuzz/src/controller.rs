//! Controller commands: what every Raft log entry holds (JSON), applied by the state machine
//! on every voter. The state machine is the last line of defence (ARCHITECTURE.md, "The state
//! machine validates every command"), so it must take any command that deserializes.
//!
//! Contract: decoding a command never panics; a decoded command re-encodes to a command equal
//! to it; applying any sequence of commands never panics, is deterministic (two replicas
//! applying the same entries end in equal states with equal answers) and leaves a state whose
//! snapshot (JSON) round-trips.

use std::collections::BTreeSet;

use pyralog_controller::{
    ClusterState, Command, Committed, JoinRequest, OffsetCommit, PartitionMove,
};
use pyralog_types::{Epoch, LogConfig, LogId};

use crate::damage::{apply, plan, Numbers};

fn log(name: &str) -> LogId {
    LogId::new(name).expect("valid name")
}

/// A short cluster history: nodes, two logs, a group with a commit, a producer.
pub fn commands() -> Vec<Command> {
    let orders = log("orders");
    let config = LogConfig {
        partition_count: 3,
        replication_factor: 2,
        min_in_sync_replicas: 1,
        ..LogConfig::default()
    };
    vec![
        Command::RegisterNode {
            id: 1,
            address: "127.0.0.1:9092".into(),
            cluster_address: "127.0.0.1:9093".into(),
            rack: None,
        },
        Command::RegisterNode {
            id: 2,
            address: "127.0.0.1:9192".into(),
            cluster_address: String::new(),
            rack: None,
        },
        Command::CreateLog {
            log: orders.clone(),
            config,
            request: 77,
        },
        Command::CreateLog {
            log: log("audit.v1"),
            config: LogConfig::default(),
            request: 0,
        },
        Command::AlterIsr {
            log: orders.clone(),
            partition: 1,
            leader: 2,
            epoch: Epoch(1),
            isr: vec![2],
        },
        Command::AdvanceEpoch {
            log: orders.clone(),
            partition: 0,
            above: Epoch(5),
        },
        Command::JoinGroup {
            group: "billing".into(),
            request: JoinRequest {
                member: "m-1".into(),
                client: "client-a".into(),
                logs: vec![orders.clone()],
                session_timeout_ms: 10_000,
                rebalance_timeout_ms: 30_000,
                strategy: Default::default(),
            },
        },
        Command::ReportOwned {
            group: "billing".into(),
            member: "m-1".into(),
            owned: BTreeSet::from([(orders.clone(), 0)]),
        },
        Command::CommitOffsets {
            group: "billing".into(),
            member: Some(("m-1".into(), 1)),
            offsets: vec![OffsetCommit {
                log: orders.clone(),
                partition: 0,
                committed: Committed {
                    offset: 42,
                    metadata: "m".into(),
                    vlsn: Some(7),
                },
            }],
        },
        Command::InitProducer {
            name: Some("ingest".into()),
        },
        Command::FenceNode { id: 1 },
        Command::LeaveGroup {
            group: "billing".into(),
            members: vec!["m-1".into()],
        },
        Command::DeleteGroup {
            group: "billing".into(),
        },
        Command::DeleteLog { log: orders },
    ]
}

/// The seed history as a Raft log would carry it: one JSON command per line.
pub fn seed() -> Vec<u8> {
    let mut out = Vec::new();
    for c in commands() {
        out.extend(serde_json::to_vec(&c).expect("command serializes"));
        out.push(b'\n');
    }
    out
}

/// The input as JSON commands, one per line, applied in order; and as damage to the seed.
pub fn target(input: &[u8]) {
    run(input);
    let (plan, program) = plan(input);
    if !plan.replace {
        let mut text = seed();
        apply(&mut text, program);
        run(&text);
    }
    run(&structured(input));
}

/// The seed history followed by commands whose numbers come from the input (edge values
/// often): JSON edits rarely make an epoch of `u64::MAX`.
fn structured(input: &[u8]) -> Vec<u8> {
    let mut n = Numbers(input);
    let orders = log("orders");
    let mut cmds = commands();
    cmds.truncate(cmds.len() - 1); // keep the log
    while !n.is_empty() && cmds.len() < 40 {
        let small = |v: u64| (v % 4) as u32;
        let cmd = match n.u64() % 11 {
            0 => Command::AdvanceEpoch {
                log: orders.clone(),
                partition: small(n.u64()),
                above: Epoch(n.u64()),
            },
            1 => Command::AlterIsr {
                log: orders.clone(),
                partition: small(n.u64()),
                leader: n.u64(),
                epoch: Epoch(n.u64()),
                isr: vec![n.u64(), n.u64()],
            },
            2 => Command::RegisterNode {
                id: n.u64(),
                address: "127.0.0.1:1".into(),
                cluster_address: String::new(),
                rack: ["a", "b", "c"]
                    .get(small(n.u64()) as usize)
                    .map(|r| (*r).to_owned()),
            },
            3 => Command::FenceNode { id: n.u64() },
            4 => Command::CreateLog {
                log: log(&format!("l{}", n.u64() % 3)),
                config: LogConfig {
                    partition_count: n.u64() as u32,
                    replication_factor: n.u64() as u16,
                    min_in_sync_replicas: n.u64() as u16,
                    ..LogConfig::default()
                },
                request: n.u64(),
            },
            5 => Command::JoinGroup {
                group: "g".into(),
                request: JoinRequest {
                    member: format!("m{}", n.u64() % 3),
                    client: "c".into(),
                    logs: vec![orders.clone()],
                    session_timeout_ms: n.u64(),
                    rebalance_timeout_ms: n.u64(),
                    strategy: Default::default(),
                },
            },
            6 => Command::LeaveCluster { id: n.u64() },
            7 => Command::BalanceLeaders,
            8 => Command::ReassignPartitions {
                moves: vec![PartitionMove {
                    log: orders.clone(),
                    partition: small(n.u64()),
                    replicas: vec![n.u64() % 4, n.u64() % 4],
                }],
            },
            9 => Command::DecommissionNode { id: n.u64() % 4 },
            _ => Command::CommitOffsets {
                group: "g".into(),
                member: Some((format!("m{}", n.u64() % 3), n.u64())),
                offsets: vec![OffsetCommit {
                    log: orders.clone(),
                    partition: small(n.u64()),
                    committed: Committed {
                        offset: n.u64(),
                        metadata: String::new(),
                        vlsn: Some(n.u64()),
                    },
                }],
            },
        };
        cmds.push(cmd);
    }
    let mut out = Vec::new();
    for c in cmds {
        out.extend(serde_json::to_vec(&c).expect("command serializes"));
        out.push(b'\n');
    }
    out
}

fn run(text: &[u8]) {
    let mut a = ClusterState::default();
    let mut b = ClusterState::default();
    for line in text.split(|&c| c == b'\n') {
        let Ok(cmd) = serde_json::from_slice::<Command>(line) else {
            continue;
        };
        let again: Command = serde_json::from_slice(&serde_json::to_vec(&cmd).expect("serializes"))
            .expect("a decoded command decodes again");
        assert_eq!(again, cmd, "command changed in a JSON round trip");
        let ra = a.apply(&cmd);
        let rb = b.apply(&again);
        assert_eq!(ra, rb, "two replicas answered differently");
    }
    assert_eq!(a, b, "two replicas diverged");
    let snapshot = serde_json::to_vec(&a).expect("state serializes");
    let restored: ClusterState = serde_json::from_slice(&snapshot).expect("snapshot decodes");
    assert_eq!(restored, a, "state changed in a snapshot round trip");
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyralog_controller::CommandResult;

    #[test]
    fn the_seed_history_applies_without_rejections() {
        let mut s = ClusterState::default();
        for c in commands() {
            let r = s.apply(&c);
            assert!(!matches!(r, CommandResult::Rejected(_)), "{c:?}: {r:?}");
        }
    }
}
