//! Node leases, kept by the controller leader in memory.
//!
//! Heartbeats are not replicated (that would put every node's heartbeat through Raft): the
//! Raft leader notes when it last heard from each node and proposes `FenceNode` once a lease
//! runs out. A new Raft leader knows nothing about past heartbeats, so it starts by giving
//! every node a full lease ([`Leases::reset`]); a node that is really gone is fenced one lease
//! later. Time comes from the caller, so this is plain data and testable without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use pyralog_types::NodeId;

use crate::state::ClusterState;

#[derive(Debug, Clone)]
pub struct Leases {
    lease: Duration,
    /// When the leader last heard from each node (or took over, whichever is later).
    last_seen: BTreeMap<NodeId, Instant>,
    since: Instant,
}

impl Leases {
    pub fn new(lease: Duration, now: Instant) -> Self {
        Leases {
            lease,
            last_seen: BTreeMap::new(),
            since: now,
        }
    }

    /// This voter just became the Raft leader: every node gets a full lease from now.
    pub fn reset(&mut self, now: Instant) {
        self.last_seen.clear();
        self.since = now;
    }

    pub fn heartbeat(&mut self, node: NodeId, now: Instant) {
        let seen = self.last_seen.entry(node).or_insert(now);
        *seen = (*seen).max(now);
    }

    /// Live (unfenced) nodes of `state` whose lease ran out at `now`.
    pub fn expired(&self, state: &ClusterState, now: Instant) -> Vec<NodeId> {
        state
            .live_nodes()
            .into_iter()
            .filter(|id| {
                let last = self
                    .last_seen
                    .get(id)
                    .copied()
                    .unwrap_or(self.since)
                    .max(self.since);
                now.saturating_duration_since(last) > self.lease
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::Command;

    #[test]
    fn a_node_is_expired_only_after_a_full_lease_without_heartbeats() {
        let t0 = Instant::now();
        let lease = Duration::from_secs(3);
        let mut state = ClusterState::default();
        for id in [1, 2] {
            state.apply(&Command::RegisterNode {
                id,
                address: String::new(),
            });
        }
        let mut leases = Leases::new(lease, t0);
        leases.heartbeat(1, t0 + Duration::from_secs(2));
        assert!(
            leases.expired(&state, t0 + lease).is_empty(),
            "everyone gets a lease at start"
        );
        assert_eq!(leases.expired(&state, t0 + Duration::from_secs(4)), vec![2]);
        assert_eq!(
            leases.expired(&state, t0 + Duration::from_secs(6)),
            vec![1, 2]
        );
        // A new leader gives everyone a fresh lease, whatever the old one saw.
        leases.reset(t0 + Duration::from_secs(6));
        assert!(leases
            .expired(&state, t0 + Duration::from_secs(8))
            .is_empty());
        // Fenced nodes are not reported again.
        state.apply(&Command::FenceNode { id: 2 });
        assert_eq!(
            leases.expired(&state, t0 + Duration::from_secs(10)),
            vec![1]
        );
    }
}
