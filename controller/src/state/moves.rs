//! Moving replicas between nodes: reassignment (`pyralog cluster reassign`) and
//! decommissioning (`pyralog cluster decommission`).
//!
//! A move never copies in the controller: it widens the partition's replica set to the old
//! and the new replicas together (`replicas`, with the goal in `target`), the new replicas
//! follow the leader like any follower and join the ISR once caught up (the leader's
//! `AlterIsr`), and the moment every member of the target is in sync the replica set becomes
//! exactly the target: leaders outside it hand over to a target member, in a new epoch.
//! Because the target is then wholly in the ISR, and every ISR member holds every
//! acknowledged record, no move loses an acknowledged write. The leader keeps its epoch while
//! the set only widens, so writes go on during the copy.

use std::collections::{BTreeMap, BTreeSet};

use pyralog_types::{Epoch, LogId, NodeId, PartitionId};
use serde::{Deserialize, Serialize};

use super::{ClusterState, CommandResult, NodeInfo, PartitionMeta, Rejection, MAX_EPOCH};

/// One partition's new replica set, first the preferred leader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionMove {
    pub log: LogId,
    pub partition: PartitionId,
    pub replicas: Vec<NodeId>,
}

/// Moves in one command, at most.
pub(super) const MAX_MOVES: usize = 10_000;

pub(super) fn validate(moves: &[PartitionMove]) -> Result<(), String> {
    if moves.is_empty() || moves.len() > MAX_MOVES {
        return Err(format!("1..={MAX_MOVES} partition moves at a time"));
    }
    let mut seen = BTreeSet::new();
    for m in moves {
        if !seen.insert((&m.log, m.partition)) {
            return Err(format!("{}/{} is moved twice", m.log, m.partition));
        }
        if m.replicas.is_empty() || m.replicas.len() > usize::from(u8::MAX) {
            return Err(format!("{}/{}: 1..=255 replicas", m.log, m.partition));
        }
        let distinct: BTreeSet<_> = m.replicas.iter().collect();
        if distinct.len() != m.replicas.len() {
            return Err(format!(
                "{}/{}: a node twice in {:?}",
                m.log, m.partition, m.replicas
            ));
        }
    }
    Ok(())
}

impl ClusterState {
    pub(super) fn reassign(&mut self, moves: &[PartitionMove]) -> CommandResult {
        for m in moves {
            let Some(p) = self.partition(&m.log, m.partition) else {
                return CommandResult::Rejected(Rejection::PartitionNotFound {
                    log: m.log.clone(),
                    partition: m.partition,
                });
            };
            if let Some(target) = &p.target {
                return CommandResult::Rejected(Rejection::Invalid(format!(
                    "{}/{} is already moving to {target:?}",
                    m.log, m.partition
                )));
            }
            for r in &m.replicas {
                match self.nodes.get(r) {
                    Some(n) if !n.fenced && !n.draining => {}
                    Some(n) if n.draining => {
                        return CommandResult::Rejected(Rejection::Invalid(format!(
                            "node {r} is being decommissioned"
                        )))
                    }
                    _ => {
                        return CommandResult::Rejected(Rejection::Invalid(format!(
                            "node {r} is not a live node"
                        )))
                    }
                }
            }
        }
        for m in moves {
            if let Some(p) = self
                .logs
                .get_mut(&m.log)
                .and_then(|l| l.partitions.get_mut(m.partition as usize))
            {
                start(p, &m.replicas, &self.nodes);
            }
        }
        CommandResult::Done
    }

    pub(super) fn decommission(&mut self, id: NodeId) -> CommandResult {
        if !self.nodes.contains_key(&id) {
            return CommandResult::Rejected(Rejection::Invalid(format!(
                "node {id} is not registered"
            )));
        }
        // Replicas each other node will hold: the fewest get the next one.
        let mut load: BTreeMap<NodeId, usize> = self
            .placeable_nodes()
            .into_iter()
            .filter(|n| *n != id)
            .map(|n| (n, 0))
            .collect();
        for p in self.logs.values().flat_map(|l| &l.partitions) {
            for r in p.target.as_ref().unwrap_or(&p.replicas) {
                if let Some(c) = load.get_mut(r) {
                    *c += 1;
                }
            }
        }
        let mut plan = Vec::new();
        for (log, meta) in &self.logs {
            for (i, p) in meta.partitions.iter().enumerate() {
                let set = p.target.as_ref().unwrap_or(&p.replicas);
                if !set.contains(&id) {
                    continue;
                }
                // A rack the staying replicas do not cover yet first, then the least loaded.
                let staying: Vec<Option<&str>> = set
                    .iter()
                    .filter(|r| **r != id)
                    .map(|r| self.rack_of(*r))
                    .collect();
                let clashes = |n: NodeId| {
                    self.rack_of(n)
                        .is_some_and(|rack| staying.contains(&Some(rack)))
                };
                let Some(to) = load
                    .iter()
                    .filter(|(n, _)| !set.contains(n))
                    .min_by_key(|(n, c)| (clashes(**n), **c, **n))
                    .map(|(n, _)| *n)
                else {
                    return CommandResult::Rejected(Rejection::Invalid(format!(
                        "node {id} cannot be decommissioned: {log}/{i} has replicas {set:?} \
                         and no other live node can take node {id}'s place"
                    )));
                };
                *load.entry(to).or_default() += 1;
                let target: Vec<NodeId> =
                    set.iter().map(|r| if *r == id { to } else { *r }).collect();
                plan.push((log.clone(), i, target));
            }
        }
        if let Some(n) = self.nodes.get_mut(&id) {
            n.draining = true;
        }
        for (log, i, target) in plan {
            if let Some(p) = self
                .logs
                .get_mut(&log)
                .and_then(|l| l.partitions.get_mut(i))
            {
                start(p, &target, &self.nodes);
            }
        }
        CommandResult::Done
    }
}

/// Starts moving `p` to `target` (replacing a move in progress).
fn start(p: &mut PartitionMeta, target: &[NodeId], nodes: &BTreeMap<NodeId, NodeInfo>) {
    for r in target {
        if !p.replicas.contains(r) {
            p.replicas.push(*r);
        }
    }
    p.target = Some(target.to_vec());
    finish_if_in_sync(p, nodes);
}

/// Ends the move of `p` once every member of its target is in sync: the replica set becomes
/// the target, and a leader outside it hands over to the first live target member.
pub(super) fn finish_if_in_sync(p: &mut PartitionMeta, nodes: &BTreeMap<NodeId, NodeInfo>) {
    let Some(target) = p.target.clone() else {
        return;
    };
    if !target.iter().all(|r| p.isr.contains(r)) {
        return;
    }
    let live = |r: &NodeId| nodes.get(r).is_some_and(|n| !n.fenced);
    let leader = match p.leader {
        Some(l) if target.contains(&l) => Some(l),
        _ => target.iter().copied().find(live),
    };
    if leader != p.leader {
        let Some(next) = p.epoch.0.checked_add(1).filter(|e| *e <= MAX_EPOCH) else {
            return;
        };
        p.epoch = Epoch(next);
        p.leader = leader;
    }
    p.isr = target.clone();
    p.replicas = target;
    p.target = None;
}

#[cfg(test)]
mod tests;
