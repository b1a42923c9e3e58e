//! Leadership moves that are not failures: a node handing off before it stops (controlled
//! shutdown) and leadership going back to each partition's preferred replica (balancing).
//!
//! Both move leadership only to a live ISR member. That is what keeps them safe: the leader's
//! high watermark is the lowest log end among the ISR (`pyralog_hot_tier::replication`), so
//! every ISR member holds every acknowledged record, and the new epoch starts at its end.
//! Records the old leader appended beyond that end were never acknowledged; the old leader
//! cuts them when it follows in the new epoch, and their producers retry.

use pyralog_types::{Epoch, LogId, NodeId, PartitionId};

use super::{ClusterState, CommandResult, PartitionMeta, MAX_EPOCH};

impl ClusterState {
    /// Whether `node` leads a partition or holds an ISR place that another live node shares:
    /// then stopping it without handing off first would leave a partition leaderless until
    /// its lease ran out, or leaders waiting for it. A node alone in every ISR it is in (a
    /// single node, replication factor 1) has nothing to hand off.
    pub fn has_work_to_hand_off(&self, node: NodeId) -> bool {
        self.logs
            .values()
            .flat_map(|l| &l.partitions)
            .any(|p| p.isr.contains(&node) && p.isr.iter().any(|r| *r != node && self.is_live(*r)))
    }

    /// Partitions whose preferred replica is live, in the ISR and not leading.
    pub fn preferred_leader_moves(&self) -> Vec<(LogId, PartitionId)> {
        let mut out = Vec::new();
        for (id, log) in &self.logs {
            for (i, p) in log.partitions.iter().enumerate() {
                if self.preferred_can_lead(p) {
                    out.push((id.clone(), i as PartitionId));
                }
            }
        }
        out
    }

    /// Whether `p`'s preferred replica should lead again: live, in sync, not leading, not
    /// being decommissioned, and the partition not in the middle of a move (its first replica
    /// may be about to leave).
    fn preferred_can_lead(&self, p: &PartitionMeta) -> bool {
        match p.replicas.first() {
            Some(&preferred) => {
                p.target.is_none()
                    && p.leader != Some(preferred)
                    && p.isr.contains(&preferred)
                    && self
                        .nodes
                        .get(&preferred)
                        .is_some_and(|n| !n.fenced && !n.draining)
                    && p.epoch.0 < MAX_EPOCH
            }
            None => false,
        }
    }

    pub(super) fn balance_leaders(&mut self) -> CommandResult {
        let moves: Vec<(LogId, usize)> = self
            .logs
            .iter()
            .flat_map(|(id, log)| {
                log.partitions
                    .iter()
                    .enumerate()
                    .filter(|(_, p)| self.preferred_can_lead(p))
                    .map(move |(i, _)| (id.clone(), i))
            })
            .collect();
        for (id, i) in moves {
            if let Some(p) = self.logs.get_mut(&id).and_then(|l| l.partitions.get_mut(i)) {
                p.leader = p.replicas.first().copied();
                p.epoch = Epoch(p.epoch.0 + 1);
            }
        }
        CommandResult::Done
    }
}
