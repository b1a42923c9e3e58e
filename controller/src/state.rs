//! The controller's state machine: what the cluster is, and the only code that changes it.
//!
//! Everything here is pure and deterministic (no clock, no I/O, no randomness): openraft
//! applies the same committed [`Command`]s in the same order on every voter, and every voter
//! must end in the same [`ClusterState`]. That is also what makes it testable without a
//! cluster (see the property tests below).
//!
//! Rules it enforces (design §5):
//! - Only the controller bumps epochs: a partition's epoch grows by one at every leader
//!   change, including "no leader" (so a fenced leader's epoch is stale at once).
//! - A leader is elected from the ISR only, among nodes that are not fenced; a log that sets
//!   `unclean_leader_election` may fall back to any live replica.
//! - A fenced node leaves every ISR it is in, except when it is the last member: then it stays,
//!   so that when it returns it is the one replica known to hold every acknowledged record.
//! - ISR changes come from the partition's leader in its current epoch; anything else is
//!   stale and rejected.
//! - Every command is validated here, whoever sent it and however it arrived (the public API
//!   validates too, but the state machine is the last line of defence): log configs pass the
//!   same checks as `CreateLog` on the API, epochs never wrap, ACL entries are well-formed.

use std::collections::{BTreeMap, BTreeSet};

use pyralog_types::acl::{AclEntry, MAX_ACL_ENTRIES};
use pyralog_types::{Epoch, LogConfig, LogId, NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::assign::Tp;
use crate::groups::{self, GroupMeta, JoinRequest, Joined, OffsetCommit, ProducerIdentity};

/// A node as the controller knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Where clients reach its client listener (`host:port`): the address of `NOT_LEADER`
    /// redirects and `DescribeCluster`.
    pub address: String,
    /// Where other nodes reach its cluster listener (replication, controller); empty in
    /// states written before the two listeners were split (the voter list then tells).
    #[serde(default)]
    pub cluster_address: String,
    /// Its lease ran out (or it shut down): it leads nothing and is in no ISR until it
    /// registers again.
    pub fenced: bool,
    /// Decommissioned: its replicas are moving elsewhere and nothing new is placed on it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
    /// Its failure domain, as it registered it (`cluster.rack`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rack: Option<String>,
}

/// Replica placement and leadership of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMeta {
    /// Every node that stores this partition, in preference order (the first is the
    /// preferred leader).
    pub replicas: Vec<NodeId>,
    /// `None` while no eligible replica is alive.
    pub leader: Option<NodeId>,
    /// The leader epoch; every batch the leader appends carries it.
    pub epoch: Epoch,
    /// The in-sync replicas, in `replicas` order; always contains the leader when there is one.
    pub isr: Vec<NodeId>,
    /// A reassignment in progress: the replica set the partition moves to. Until every
    /// member of it is in sync, `replicas` holds the old replicas and the new ones together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<Vec<NodeId>>,
}

/// What the cluster knows about one log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMeta {
    pub config: LogConfig,
    /// The state version that created it: a log deleted and created again under the same
    /// name is another incarnation, and nodes must not mistake its old files for its data.
    pub incarnation: u64,
    /// The request that created it (0 if none was given).
    #[serde(default)]
    pub created_by: u64,
    /// Index = partition id.
    pub partitions: Vec<PartitionMeta>,
}

/// The whole replicated state. Nodes read it from their local state machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClusterState {
    pub nodes: BTreeMap<NodeId, NodeInfo>,
    pub logs: BTreeMap<LogId, LogMeta>,
    /// Grows by one with every applied command that changed something.
    pub version: u64,
    /// Where the next log's placement starts, so logs spread over the nodes.
    next_placement: u64,
    /// Consumer groups: members, assignments, committed offsets (see [`crate::groups`]).
    #[serde(default)]
    pub groups: BTreeMap<String, GroupMeta>,
    /// The next producer id `InitProducer` hands out.
    #[serde(default)]
    next_producer_id: i64,
    /// Producers that asked for an identity by name, and the identity they got last.
    #[serde(default)]
    pub producers: BTreeMap<String, ProducerIdentity>,
    /// Access control lists (see `pyralog_types::acl`), kept sorted and without duplicates.
    #[serde(default)]
    pub acls: BTreeSet<AclEntry>,
}

/// A change proposed to the controller.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// A node (re)joins: it is unfenced, and partitions without a leader may elect it.
    RegisterNode {
        id: NodeId,
        address: String,
        #[serde(default)]
        cluster_address: String,
        /// Its failure domain (a rack, a zone): replicas of a partition go to distinct
        /// racks first.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        rack: Option<String>,
    },
    /// A node lost its lease: it loses its leaderships and ISR memberships.
    FenceNode {
        id: NodeId,
    },
    /// Controlled shutdown: a node about to stop hands off what it does, as `FenceNode` does,
    /// but asked by the node itself before it stops, so its partitions get new leaders from
    /// their ISRs at once instead of after its lease runs out, and leaders stop waiting for
    /// it. It registers again when it starts.
    LeaveCluster {
        id: NodeId,
    },
    /// Moves partitions to new replica sets (`pyralog cluster reassign`), all or none: the
    /// new replicas join `replicas` and copy from the leader; once every member of a target
    /// is in sync the partition's replicas become exactly the target (see `state::moves`).
    ReassignPartitions {
        moves: Vec<PartitionMove>,
    },
    /// Decommissions a node: every replica it holds moves to another live node and nothing
    /// new is placed on it (`pyralog cluster decommission`).
    DecommissionNode {
        id: NodeId,
    },
    /// Preferred-leader balancing: every partition whose preferred replica (the first) is
    /// live, in the ISR and not leading gets it back as leader, in a new epoch. Proposed by
    /// the controller leader when [`ClusterState::preferred_leader_moves`] finds any.
    BalanceLeaders,
    /// `request` (non-zero) identifies the caller's request: a retry of a creation that was
    /// committed but whose answer was lost gets `LogCreated` again, not `LogAlreadyExists`.
    CreateLog {
        log: LogId,
        config: LogConfig,
        #[serde(default)]
        request: u64,
    },
    DeleteLog {
        log: LogId,
    },
    /// Raises a log's partition count to `partition_count` (never lowers it): the new
    /// partitions are placed like a new log's, and groups consuming the log rebalance. The
    /// same count again is a no-op (a retry after a lost answer).
    AddPartitions {
        log: LogId,
        partition_count: u32,
    },
    /// Moves a partition's epoch past `above` (same leader): a replica found archived data
    /// written in epochs up to `above` (a restored or replaced disk), and new appends must be
    /// in a newer epoch than anything in the log. No-op if the epoch is already newer.
    AdvanceEpoch {
        log: LogId,
        partition: PartitionId,
        above: Epoch,
    },
    /// The leader of `epoch` reports the partition's new ISR.
    AlterIsr {
        log: LogId,
        partition: PartitionId,
        leader: NodeId,
        epoch: Epoch,
        isr: Vec<NodeId>,
    },
    /// `node`'s copy of the partition is damaged and about to be cut and fetched again
    /// (`pyralog logs repair`): it leaves the ISR, so no election can pick it while it holds
    /// less than the high watermark; if it leads, the first other live ISR member takes over.
    /// Refused when no other live ISR member would remain. The epoch moves on either way, so
    /// every replica restarts its role (the leader with the new ISR, `node` as a follower).
    LeaveIsr {
        log: LogId,
        partition: PartitionId,
        node: NodeId,
    },
    /// A member joins `group` (or a member already in it updates its subscription).
    JoinGroup {
        group: String,
        request: JoinRequest,
    },
    /// Members leave `group` (asked to, or their session ran out).
    LeaveGroup {
        group: String,
        members: Vec<String>,
    },
    /// A member reports the partitions it still consumes (after giving some up).
    ReportOwned {
        group: String,
        member: String,
        owned: BTreeSet<Tp>,
    },
    /// Committed offsets: from a member in `generation`, or administrative (`member: None`,
    /// only while the group has no members).
    CommitOffsets {
        group: String,
        member: Option<(String, u64)>,
        offsets: Vec<OffsetCommit>,
    },
    DeleteGroup {
        group: String,
    },
    /// Hands out a producer id (and epoch, for a named producer).
    InitProducer {
        name: Option<String>,
    },
    /// Adds ACL entries (entries already present are kept once).
    AddAcls {
        entries: Vec<AclEntry>,
    },
    /// Removes ACL entries (entries not present are ignored).
    RemoveAcls {
        entries: Vec<AclEntry>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CommandResult {
    Done,
    LogCreated(Box<LogMeta>),
    Joined(Box<Joined>),
    Producer(ProducerIdentity),
    Rejected(Rejection),
}

/// Why a command changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub enum Rejection {
    #[error("log {0} already exists")]
    LogAlreadyExists(LogId),
    #[error("log {0} does not exist")]
    LogNotFound(LogId),
    #[error("log {log} has no partition {partition}")]
    PartitionNotFound { log: LogId, partition: PartitionId },
    #[error("replication factor {needed} needs as many live nodes; {available} are live")]
    NotEnoughNodes { needed: u16, available: usize },
    #[error("node {node} is not the leader of epoch {epoch} (current: leader {leader:?}, epoch {current})")]
    StaleLeader {
        node: NodeId,
        epoch: Epoch,
        leader: Option<NodeId>,
        current: Epoch,
    },
    #[error("invalid ISR: {0}")]
    InvalidIsr(String),
    #[error("group {0} does not exist")]
    GroupNotFound(String),
    #[error("group {group} has {members} active members; stop them first")]
    GroupNotEmpty { group: String, members: usize },
    #[error("member {member} is not in group {group} (removed after its session expired, or it left); join again")]
    UnknownMember { group: String, member: String },
    #[error("member {member} of group {group} acts on generation {generation}, but its assignment changed in generation {current}")]
    IllegalGeneration {
        group: String,
        member: String,
        generation: u64,
        current: u64,
    },
    #[error("member {member} of group {group} does not own {log}/{partition}")]
    NotAssigned {
        group: String,
        member: String,
        log: LogId,
        partition: PartitionId,
    },
    /// The command itself is malformed (bad config, epoch overflow, bad ACL entry).
    #[error("invalid command: {0}")]
    Invalid(String),
    #[error("group {group} uses the {current} strategy; a member asked for {asked}")]
    InconsistentStrategy {
        group: String,
        current: String,
        asked: String,
    },
}

impl Rejection {
    /// The wire reason for this rejection.
    pub fn reason(&self) -> pyralog_types::Reason {
        use pyralog_types::Reason;
        match self {
            Rejection::LogAlreadyExists(_) => Reason::LogAlreadyExists,
            Rejection::LogNotFound(_) => Reason::LogNotFound,
            Rejection::PartitionNotFound { .. } => Reason::PartitionNotFound,
            Rejection::NotEnoughNodes { .. } => Reason::NotEnoughReplicas,
            Rejection::StaleLeader { .. } => Reason::NotLeader,
            Rejection::InvalidIsr(_)
            | Rejection::InconsistentStrategy { .. }
            | Rejection::Invalid(_) => Reason::InvalidRequest,
            Rejection::GroupNotFound(_) => Reason::GroupNotFound,
            Rejection::GroupNotEmpty { .. } => Reason::GroupNotEmpty,
            Rejection::UnknownMember { .. } => Reason::UnknownMember,
            Rejection::IllegalGeneration { .. } => Reason::IllegalGeneration,
            Rejection::NotAssigned { .. } => Reason::NotAssigned,
        }
    }
}

impl ClusterState {
    /// Applies one committed command. Deterministic: same state and command, same outcome.
    pub fn apply(&mut self, cmd: &Command) -> CommandResult {
        if let Err(why) = validate(cmd) {
            return CommandResult::Rejected(Rejection::Invalid(why));
        }
        let result = match cmd {
            Command::RegisterNode {
                id,
                address,
                cluster_address,
                rack,
            } => self.register_node(*id, address, cluster_address, rack.as_deref()),
            Command::FenceNode { id } | Command::LeaveCluster { id } => self.fence_node(*id),
            Command::BalanceLeaders => self.balance_leaders(),
            Command::ReassignPartitions { moves } => self.reassign(moves),
            Command::DecommissionNode { id } => self.decommission(*id),
            Command::CreateLog {
                log,
                config,
                request,
            } => {
                let r = self.create_log(log, config, *request);
                groups::logs_changed(&mut self.groups, &self.logs, log);
                r
            }
            Command::DeleteLog { log } => match self.logs.remove(log) {
                Some(_) => {
                    groups::logs_changed(&mut self.groups, &self.logs, log);
                    CommandResult::Done
                }
                None => CommandResult::Rejected(Rejection::LogNotFound(log.clone())),
            },
            Command::AddPartitions {
                log,
                partition_count,
            } => {
                let r = self.add_partitions(log, *partition_count);
                groups::logs_changed(&mut self.groups, &self.logs, log);
                r
            }
            Command::AdvanceEpoch {
                log,
                partition,
                above,
            } => match self
                .logs
                .get_mut(log)
                .and_then(|l| l.partitions.get_mut(*partition as usize))
            {
                Some(p) if p.epoch <= *above => match above.0.checked_add(1) {
                    Some(next) if next <= MAX_EPOCH => {
                        p.epoch = Epoch(next);
                        CommandResult::Done
                    }
                    _ => CommandResult::Rejected(Rejection::Invalid(format!(
                        "epoch {above} is beyond the largest epoch {MAX_EPOCH}"
                    ))),
                },
                Some(_) => CommandResult::Done,
                None => CommandResult::Rejected(Rejection::PartitionNotFound {
                    log: log.clone(),
                    partition: *partition,
                }),
            },
            Command::AlterIsr {
                log,
                partition,
                leader,
                epoch,
                isr,
            } => self.alter_isr(log, *partition, *leader, *epoch, isr),
            Command::LeaveIsr {
                log,
                partition,
                node,
            } => self.leave_isr(log, *partition, *node),
            Command::JoinGroup { group, request } => {
                groups::join(&mut self.groups, &self.logs, group, request)
            }
            Command::LeaveGroup { group, members } => {
                groups::remove_members(&mut self.groups, &self.logs, group, members)
            }
            Command::ReportOwned {
                group,
                member,
                owned,
            } => groups::report_owned(&mut self.groups, &self.logs, group, member, owned),
            Command::CommitOffsets {
                group,
                member,
                offsets,
            } => groups::commit(&mut self.groups, group, member.as_ref(), offsets),
            Command::DeleteGroup { group } => groups::delete(&mut self.groups, group),
            Command::InitProducer { name } => CommandResult::Producer(groups::init_producer(
                &mut self.next_producer_id,
                &mut self.producers,
                name.as_deref(),
            )),
            Command::AddAcls { entries } => {
                let new = entries.iter().filter(|e| !self.acls.contains(e)).count();
                if self.acls.len() + new > MAX_ACL_ENTRIES {
                    CommandResult::Rejected(Rejection::Invalid(format!(
                        "a cluster holds at most {MAX_ACL_ENTRIES} ACL entries"
                    )))
                } else {
                    self.acls.extend(entries.iter().cloned());
                    CommandResult::Done
                }
            }
            Command::RemoveAcls { entries } => {
                for e in entries {
                    self.acls.remove(e);
                }
                CommandResult::Done
            }
        };
        if !matches!(result, CommandResult::Rejected(_)) {
            self.version += 1;
        }
        result
    }

    /// Nodes that are registered and not fenced, in id order.
    pub fn live_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.fenced)
            .map(|(id, _)| *id)
            .collect()
    }

    /// Live nodes that take new replicas (not draining), in id order.
    pub fn placeable_nodes(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| !n.fenced && !n.draining)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The rack `node` registered with.
    pub fn rack_of(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).and_then(|n| n.rack.as_deref())
    }

    pub fn is_live(&self, node: NodeId) -> bool {
        self.nodes.get(&node).is_some_and(|n| !n.fenced)
    }

    pub fn address(&self, node: NodeId) -> Option<&str> {
        self.nodes.get(&node).map(|n| n.address.as_str())
    }

    /// Where `node`'s cluster listener is, if it registered one.
    pub fn cluster_address(&self, node: NodeId) -> Option<&str> {
        self.nodes
            .get(&node)
            .map(|n| n.cluster_address.as_str())
            .filter(|a| !a.is_empty())
    }

    pub fn partition(&self, log: &LogId, partition: PartitionId) -> Option<&PartitionMeta> {
        self.logs
            .get(log)
            .and_then(|l| l.partitions.get(partition as usize))
    }

    fn register_node(
        &mut self,
        id: NodeId,
        address: &str,
        cluster_address: &str,
        rack: Option<&str>,
    ) -> CommandResult {
        let draining = self.nodes.get(&id).is_some_and(|n| n.draining);
        self.nodes.insert(
            id,
            NodeInfo {
                address: address.to_owned(),
                cluster_address: cluster_address.to_owned(),
                fenced: false,
                draining,
                rack: rack.map(str::to_owned),
            },
        );
        let nodes = &self.nodes;
        for log in self.logs.values_mut() {
            let unclean = log.config.unclean_leader_election;
            for p in &mut log.partitions {
                if p.leader.is_none() {
                    elect(p, nodes, unclean);
                }
            }
        }
        CommandResult::Done
    }

    fn fence_node(&mut self, id: NodeId) -> CommandResult {
        match self.nodes.get_mut(&id) {
            Some(n) if !n.fenced => n.fenced = true,
            // Unknown or already fenced: nothing to do, but not an error (leases expire
            // again after a controller failover).
            _ => return CommandResult::Done,
        }
        let nodes = &self.nodes;
        for log in self.logs.values_mut() {
            let unclean = log.config.unclean_leader_election;
            for p in &mut log.partitions {
                if p.isr.len() > 1 {
                    p.isr.retain(|r| *r != id);
                }
                if p.leader == Some(id) {
                    p.leader = None;
                    if !elect(p, nodes, unclean) {
                        // Leaderless, but in a new epoch: the old leader is fenced anyway.
                        p.epoch = Epoch(p.epoch.0 + 1);
                    }
                }
            }
        }
        CommandResult::Done
    }

    fn create_log(&mut self, log: &LogId, config: &LogConfig, request: u64) -> CommandResult {
        if let Some(existing) = self.logs.get(log) {
            if request != 0 && existing.created_by == request {
                // The same request again (a retry after a lost answer): same answer.
                return CommandResult::LogCreated(Box::new(existing.clone()));
            }
            return CommandResult::Rejected(Rejection::LogAlreadyExists(log.clone()));
        }
        let live = self.placeable_nodes();
        let rf = usize::from(config.replication_factor.max(1));
        if live.len() < rf {
            return CommandResult::Rejected(Rejection::NotEnoughNodes {
                needed: config.replication_factor.max(1),
                available: live.len(),
            });
        }
        let partitions = self.place(config.partition_count, rf);
        let meta = LogMeta {
            config: config.clone(),
            incarnation: self.version + 1,
            created_by: request,
            partitions,
        };
        self.logs.insert(log.clone(), meta.clone());
        CommandResult::LogCreated(Box::new(meta))
    }

    /// Places `count` new partitions of `rf` replicas each over the live nodes (at least `rf`
    /// of them), round-robin from where the last placement ended, on distinct racks first
    /// ([`placement`]); each starts in epoch 1, led by its first replica, with every replica
    /// in sync (all empty).
    fn place(&mut self, count: u32, rf: usize) -> Vec<PartitionMeta> {
        let order = placement::rack_alternating(
            self.placeable_nodes()
                .into_iter()
                .map(|id| (id, self.rack_of(id))),
        );
        let start = self.next_placement;
        let partitions = (0..u64::from(count))
            .map(|p| {
                let replicas = placement::replicas(&order, start.wrapping_add(p), rf);
                PartitionMeta {
                    leader: replicas.first().copied(),
                    epoch: Epoch(1),
                    isr: replicas.clone(),
                    replicas,
                    target: None,
                }
            })
            .collect();
        self.next_placement = self.next_placement.wrapping_add(u64::from(count));
        partitions
    }

    fn leave_isr(&mut self, log: &LogId, partition: PartitionId, node: NodeId) -> CommandResult {
        let Some(p) = self
            .logs
            .get_mut(log)
            .and_then(|l| l.partitions.get_mut(partition as usize))
        else {
            return CommandResult::Rejected(Rejection::PartitionNotFound {
                log: log.clone(),
                partition,
            });
        };
        if !p.replicas.contains(&node) {
            return CommandResult::Rejected(Rejection::InvalidIsr(format!(
                "{node} is not a replica of {log}/{partition} (replicas {:?})",
                p.replicas
            )));
        }
        let nodes = &self.nodes;
        let live = |r: &NodeId| nodes.get(r).is_some_and(|n| !n.fenced);
        // The leader stays when it is not the one leaving; otherwise the first other live
        // ISR member in replica order leads.
        let leader = match p.leader {
            Some(l) if l != node => Some(l),
            _ => p
                .replicas
                .iter()
                .copied()
                .find(|r| *r != node && p.isr.contains(r) && live(r)),
        };
        let Some(leader) = leader.filter(|l| live(l) && p.isr.contains(l)) else {
            return CommandResult::Rejected(Rejection::InvalidIsr(format!(
                "node {node} holds the only live in-sync copy of {log}/{partition} (ISR {:?})",
                p.isr
            )));
        };
        let Some(next) = p.epoch.0.checked_add(1).filter(|e| *e <= MAX_EPOCH) else {
            return CommandResult::Rejected(Rejection::Invalid(format!(
                "epoch {} is the largest epoch",
                p.epoch
            )));
        };
        p.isr.retain(|r| *r != node);
        p.leader = Some(leader);
        p.epoch = Epoch(next);
        CommandResult::Done
    }

    fn alter_isr(
        &mut self,
        log: &LogId,
        partition: PartitionId,
        leader: NodeId,
        epoch: Epoch,
        isr: &[NodeId],
    ) -> CommandResult {
        let Some(meta) = self.logs.get_mut(log) else {
            return CommandResult::Rejected(Rejection::LogNotFound(log.clone()));
        };
        let Some(p) = meta.partitions.get_mut(partition as usize) else {
            return CommandResult::Rejected(Rejection::PartitionNotFound {
                log: log.clone(),
                partition,
            });
        };
        if p.leader != Some(leader) || p.epoch != epoch {
            return CommandResult::Rejected(Rejection::StaleLeader {
                node: leader,
                epoch,
                leader: p.leader,
                current: p.epoch,
            });
        }
        if !isr.contains(&leader) {
            return CommandResult::Rejected(Rejection::InvalidIsr(format!(
                "{isr:?} leaves out the leader {leader}"
            )));
        }
        if let Some(r) = isr.iter().find(|r| !p.replicas.contains(r)) {
            return CommandResult::Rejected(Rejection::InvalidIsr(format!(
                "{r} is not a replica (replicas {:?})",
                p.replicas
            )));
        }
        // Fenced nodes never join. Refused rather than left out: the leader counts its
        // proposal as the new ISR once it is committed, so what commits must be exactly it
        // (a silently shortened ISR left the leader waiting on a proposal that never came).
        let nodes = &self.nodes;
        let fenced = |r: &NodeId| *r != leader && nodes.get(r).is_none_or(|n| n.fenced);
        if let Some(r) = isr.iter().find(|r| fenced(r)) {
            return CommandResult::Rejected(Rejection::InvalidIsr(format!(
                "{r} is fenced; it joins again after it registers"
            )));
        }
        // The order is the replicas' order, without duplicates.
        p.isr = p
            .replicas
            .iter()
            .copied()
            .filter(|r| isr.contains(r))
            .collect();
        moves::finish_if_in_sync(p, &self.nodes);
        CommandResult::Done
    }
}

/// The largest epoch a partition may reach: far beyond any real history (a leader change per
/// millisecond for millions of years), and far enough from `u64::MAX` that nothing wraps.
pub const MAX_EPOCH: u64 = 1 << 62;

/// Upper bound on names the state machine stores (group, member, producer names).
const MAX_NAME_BYTES: usize = 1024;

/// Checks a command on its own, before it touches the state.
fn validate(cmd: &Command) -> Result<(), String> {
    let address = |what: &str, a: &str, required: bool| -> Result<(), String> {
        if a.is_empty() && !required {
            return Ok(());
        }
        let port_ok = a
            .rsplit_once(':')
            .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
        if a.len() > 255 || !port_ok || a.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("{what} {a:?} is not host:port"));
        }
        Ok(())
    };
    let name = |what: &str, n: &str| -> Result<(), String> {
        if n.is_empty() || n.len() > MAX_NAME_BYTES {
            return Err(format!("{what} must be 1..={MAX_NAME_BYTES} bytes"));
        }
        Ok(())
    };
    match cmd {
        Command::RegisterNode {
            id,
            address: a,
            cluster_address,
            rack,
        } => {
            if *id == 0 {
                return Err("node id 0 is reserved".into());
            }
            address("address", a, true)?;
            address("cluster address", cluster_address, false)?;
            match rack {
                Some(r) => placement::validate_rack(r),
                None => Ok(()),
            }
        }
        Command::CreateLog { config, .. } => config.validate().map_err(|e| e.to_string()),
        Command::AdvanceEpoch { above, .. } if above.0 >= MAX_EPOCH => Err(format!(
            "epoch {above} is beyond the largest epoch {MAX_EPOCH}"
        )),
        Command::AlterIsr { isr, .. } if isr.len() > usize::from(u8::MAX) => {
            Err("an ISR of more than 255 nodes".into())
        }
        Command::ReassignPartitions { moves } => moves::validate(moves),
        Command::JoinGroup { group, .. }
        | Command::LeaveGroup { group, .. }
        | Command::ReportOwned { group, .. }
        | Command::CommitOffsets { group, .. }
        | Command::DeleteGroup { group } => name("group name", group),
        Command::InitProducer { name: Some(n) } => name("producer name", n),
        Command::AddAcls { entries } | Command::RemoveAcls { entries } => {
            if entries.is_empty() || entries.len() > MAX_ACL_ENTRIES {
                return Err(format!("1..={MAX_ACL_ENTRIES} ACL entries at a time"));
            }
            entries
                .iter()
                .try_for_each(|e| e.validate().map_err(|e| e.to_string()))
        }
        _ => Ok(()),
    }
}

/// Picks a leader for a partition that has none: the first live ISR member in replica order,
/// or with `unclean`, the first live replica (which then becomes the whole ISR). Bumps the
/// epoch and returns `true` when it elects.
fn elect(p: &mut PartitionMeta, nodes: &BTreeMap<NodeId, NodeInfo>, unclean: bool) -> bool {
    let live = |r: &NodeId| nodes.get(r).is_some_and(|n| !n.fenced);
    let clean = p
        .replicas
        .iter()
        .copied()
        .find(|r| p.isr.contains(r) && live(r));
    let chosen = match clean {
        Some(r) => Some(r),
        None if unclean => {
            let r = p.replicas.iter().copied().find(live);
            if let Some(r) = r {
                p.isr = vec![r];
            }
            r
        }
        None => None,
    };
    let Some(r) = chosen else {
        return false;
    };
    p.leader = Some(r);
    p.epoch = Epoch(p.epoch.0 + 1);
    // The ISR keeps only live members (a fenced last member stays until someone is
    // elected, so it is never empty).
    p.isr.retain(|m| *m == r || live(m));
    true
}

mod leaders;
mod moves;
mod partitions;
pub mod placement;
pub use moves::PartitionMove;

#[cfg(test)]
mod tests;
