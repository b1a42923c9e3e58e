//! Consumer groups and producer ids: the coordinator's state, kept in the controller's
//! replicated state machine (so it is durable and survives a controller failover the same way
//! log metadata does), and the pure code that changes it.
//!
//! # Cooperative rebalancing
//!
//! The coordinator assigns partitions itself (see [`crate::assign`]); members never see each
//! other. For every member it keeps three sets:
//!
//! - `target`: what the strategy wants the member to have;
//! - `assigned`: what the member may consume now: its target, minus partitions another member
//!   may still be consuming;
//! - `owned`: what the member may still be consuming: its assignment plus partitions taken
//!   from it that it has not yet reported giving up.
//!
//! A partition that moves from A to B leaves A's assignment at once, but enters B's only after
//! A reports (in a heartbeat) that it stopped and committed, or after A is removed (left,
//! session expired). Members not involved keep consuming throughout. Hence the invariant every
//! test checks: **a partition is in at most one member's `owned` set**, so at most one member
//! consumes it at any time.
//!
//! # Generations and fencing
//!
//! The group's `generation` grows whenever any member's assignment changes; a member's own
//! `generation` is the group generation at which its assignment last changed. A commit names
//! the member and the generation it believes in: it is accepted only if the member is still in
//! the group, its generation is not older than the member's, and it owns every partition it
//! commits. A zombie (removed for missing heartbeats, or acting on an assignment that has since
//! changed) is refused with a reason instead of overwriting the new owner's progress.

use std::collections::{BTreeMap, BTreeSet};

use pyralog_types::{LogId, PartitionId};
use serde::{Deserialize, Serialize};

use crate::assign::{assign, Strategy, Tp};
use crate::state::{CommandResult, LogMeta, Rejection};

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// The client's own name for itself (for `groups describe`).
    pub client: String,
    /// The logs it subscribes to.
    pub logs: Vec<LogId>,
    pub session_timeout_ms: u64,
    /// How long it may take to give up partitions taken from it before it is removed.
    pub rebalance_timeout_ms: u64,
    pub target: BTreeSet<Tp>,
    pub assigned: BTreeSet<Tp>,
    pub owned: BTreeSet<Tp>,
    /// The group generation at which `assigned` last changed.
    pub generation: u64,
}

impl Member {
    /// Partitions taken from it that it has not reported giving up yet.
    pub fn revoking(&self) -> impl Iterator<Item = &Tp> {
        self.owned.difference(&self.assigned)
    }
}

/// A committed position of a group in one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    /// The next offset to consume.
    pub offset: u64,
    /// Free-form client metadata.
    pub metadata: String,
    /// The client-managed sequence number (VLSN) of the last processed record, when the
    /// commit was made by VLSN.
    pub vlsn: Option<u64>,
}

/// One consumer group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupMeta {
    pub generation: u64,
    pub strategy: Strategy,
    pub members: BTreeMap<String, Member>,
    /// Committed offsets by log, then partition.
    pub offsets: BTreeMap<LogId, BTreeMap<PartitionId, Committed>>,
}

/// One entry of a commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    pub log: LogId,
    pub partition: PartitionId,
    pub committed: Committed,
}

/// A member's view after a join.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Joined {
    pub member: String,
    pub generation: u64,
    pub assigned: BTreeSet<Tp>,
}

/// A producer id and epoch handed out by `InitProducer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerIdentity {
    pub id: i64,
    pub epoch: i16,
}

/// What a join asks for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JoinRequest {
    pub member: String,
    pub client: String,
    pub logs: Vec<LogId>,
    pub session_timeout_ms: u64,
    pub rebalance_timeout_ms: u64,
    pub strategy: Strategy,
}

/// All groups, by name.
pub type Groups = BTreeMap<String, GroupMeta>;

fn unknown_member(group: &str, member: &str) -> CommandResult {
    CommandResult::Rejected(Rejection::UnknownMember {
        group: group.to_owned(),
        member: member.to_owned(),
    })
}

/// Adds the member (or updates its subscription and timeouts when it is already in) and
/// rebalances.
pub(crate) fn join(
    groups: &mut Groups,
    logs: &BTreeMap<LogId, LogMeta>,
    group: &str,
    req: &JoinRequest,
) -> CommandResult {
    let g = groups.entry(group.to_owned()).or_default();
    if g.members.is_empty() {
        g.strategy = req.strategy;
    } else if g.strategy != req.strategy {
        return CommandResult::Rejected(Rejection::InconsistentStrategy {
            group: group.to_owned(),
            current: g.strategy.as_str().to_owned(),
            asked: req.strategy.as_str().to_owned(),
        });
    }
    let m = g
        .members
        .entry(req.member.clone())
        .or_insert_with(|| Member {
            client: String::new(),
            logs: Vec::new(),
            session_timeout_ms: 0,
            rebalance_timeout_ms: 0,
            target: BTreeSet::new(),
            assigned: BTreeSet::new(),
            owned: BTreeSet::new(),
            generation: 0,
        });
    m.client.clone_from(&req.client);
    m.logs = req
        .logs
        .iter()
        .cloned()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    m.session_timeout_ms = req.session_timeout_ms;
    m.rebalance_timeout_ms = req.rebalance_timeout_ms;
    rebalance(g, logs);
    let m = &g.members[&req.member];
    CommandResult::Joined(Box::new(Joined {
        member: req.member.clone(),
        generation: m.generation,
        assigned: m.assigned.clone(),
    }))
}

/// Removes members (they left, or their session or rebalance time ran out) and rebalances.
pub(crate) fn remove_members(
    groups: &mut Groups,
    logs: &BTreeMap<LogId, LogMeta>,
    group: &str,
    members: &[String],
) -> CommandResult {
    let Some(g) = groups.get_mut(group) else {
        return CommandResult::Done;
    };
    let before = g.members.len();
    g.members.retain(|m, _| !members.contains(m));
    if g.members.len() != before {
        rebalance(g, logs);
    }
    CommandResult::Done
}

/// A member reports what it still consumes: partitions taken from it that it no longer holds
/// leave its `owned` set (and may now go to their new owners).
pub(crate) fn report_owned(
    groups: &mut Groups,
    logs: &BTreeMap<LogId, LogMeta>,
    group: &str,
    member: &str,
    owned: &BTreeSet<Tp>,
) -> CommandResult {
    let Some(m) = groups
        .get_mut(group)
        .and_then(|g| g.members.get_mut(member))
    else {
        return unknown_member(group, member);
    };
    let still: BTreeSet<Tp> = m.owned.intersection(owned).cloned().collect();
    m.owned = m.assigned.union(&still).cloned().collect();
    if let Some(g) = groups.get_mut(group) {
        rebalance(g, logs);
    }
    CommandResult::Done
}

/// Stores committed offsets. `member` is `(id, generation)` for a group member; `None` is an
/// administrative commit (reset), allowed only while the group has no members.
pub(crate) fn commit(
    groups: &mut Groups,
    group: &str,
    member: Option<&(String, u64)>,
    offsets: &[OffsetCommit],
) -> CommandResult {
    let g = groups.entry(group.to_owned()).or_default();
    match member {
        None if !g.members.is_empty() => {
            return CommandResult::Rejected(Rejection::GroupNotEmpty {
                group: group.to_owned(),
                members: g.members.len(),
            })
        }
        None => {}
        Some((id, generation)) => {
            let Some(m) = g.members.get(id) else {
                return unknown_member(group, id);
            };
            if *generation < m.generation || *generation > g.generation {
                return CommandResult::Rejected(Rejection::IllegalGeneration {
                    group: group.to_owned(),
                    member: id.clone(),
                    generation: *generation,
                    current: m.generation,
                });
            }
            if let Some(c) = offsets
                .iter()
                .find(|c| !m.owned.contains(&(c.log.clone(), c.partition)))
            {
                return CommandResult::Rejected(Rejection::NotAssigned {
                    group: group.to_owned(),
                    member: id.clone(),
                    log: c.log.clone(),
                    partition: c.partition,
                });
            }
        }
    }
    for c in offsets {
        g.offsets
            .entry(c.log.clone())
            .or_default()
            .insert(c.partition, c.committed.clone());
    }
    CommandResult::Done
}

/// Deletes a group with no members (and its committed offsets).
pub(crate) fn delete(groups: &mut Groups, group: &str) -> CommandResult {
    match groups.get(group) {
        None => CommandResult::Rejected(Rejection::GroupNotFound(group.to_owned())),
        Some(g) if !g.members.is_empty() => CommandResult::Rejected(Rejection::GroupNotEmpty {
            group: group.to_owned(),
            members: g.members.len(),
        }),
        Some(_) => {
            groups.remove(group);
            CommandResult::Done
        }
    }
}

/// After logs were created or deleted: rebalance every group that subscribes to one.
pub(crate) fn logs_changed(groups: &mut Groups, logs: &BTreeMap<LogId, LogMeta>, log: &LogId) {
    for g in groups.values_mut() {
        if g.members.values().any(|m| m.logs.contains(log)) {
            rebalance(g, logs);
        }
        if !logs.contains_key(log) {
            g.offsets.remove(log);
        }
    }
}

/// Recomputes targets and assignments; bumps the generation when any assignment changed.
fn rebalance(g: &mut GroupMeta, logs: &BTreeMap<LogId, LogMeta>) {
    let eligible: BTreeMap<String, BTreeSet<Tp>> = g
        .members
        .iter()
        .map(|(id, m)| {
            let tps = m
                .logs
                .iter()
                .filter_map(|l| logs.get(l).map(|meta| (l, meta.partitions.len())))
                .flat_map(|(l, n)| (0..n as PartitionId).map(move |p| (l.clone(), p)))
                .collect();
            (id.clone(), tps)
        })
        .collect();
    let previous: BTreeMap<String, BTreeSet<Tp>> = g
        .members
        .iter()
        .map(|(id, m)| (id.clone(), m.target.clone()))
        .collect();
    let targets = assign(g.strategy, &eligible, &previous);
    // Partitions that no longer exist are owned by nobody.
    let exists = |tp: &Tp| {
        logs.get(&tp.0)
            .is_some_and(|meta| (tp.1 as usize) < meta.partitions.len())
    };
    let before: BTreeMap<String, BTreeSet<Tp>> = g
        .members
        .iter()
        .map(|(id, m)| (id.clone(), m.assigned.clone()))
        .collect();
    for (id, m) in &mut g.members {
        m.target = targets.get(id).cloned().unwrap_or_default();
        m.owned.retain(|tp| exists(tp));
    }
    // Give each member the rest of its target that nobody else may still be consuming.
    let owned_by: BTreeMap<Tp, String> = g
        .members
        .iter()
        .flat_map(|(id, m)| m.owned.iter().map(move |tp| (tp.clone(), id.clone())))
        .collect();
    let mut changed = false;
    let next = g.generation + 1;
    for (id, m) in &mut g.members {
        let assigned: BTreeSet<Tp> = m
            .target
            .iter()
            .filter(|tp| owned_by.get(*tp).is_none_or(|o| o == id))
            .cloned()
            .collect();
        // What was taken from it stays owned until it reports giving it up.
        m.owned = m.owned.union(&assigned).cloned().collect();
        if before.get(id) != Some(&assigned) || m.generation == 0 {
            m.generation = next;
            changed = true;
        }
        m.assigned = assigned;
    }
    if changed {
        g.generation = next;
    }
}

/// Hands out a producer identity: a fresh id at epoch 0, or for a named producer its id at
/// the next epoch (fencing the previous instance), a fresh id once the epoch would overflow.
pub(crate) fn init_producer(
    next_id: &mut i64,
    named: &mut BTreeMap<String, ProducerIdentity>,
    name: Option<&str>,
) -> ProducerIdentity {
    let mut fresh = || {
        let id = *next_id;
        *next_id += 1;
        ProducerIdentity { id, epoch: 0 }
    };
    let Some(name) = name else {
        return fresh();
    };
    let identity = match named.get(name) {
        Some(p) if p.epoch < i16::MAX => ProducerIdentity {
            id: p.id,
            epoch: p.epoch + 1,
        },
        _ => fresh(),
    };
    named.insert(name.to_owned(), identity);
    identity
}

#[cfg(test)]
mod tests;
