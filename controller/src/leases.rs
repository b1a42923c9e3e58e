//! Node leases, kept by the controller leader in memory.
//!
//! Heartbeats are not replicated (that would put every node's heartbeat through Raft): the
//! Raft leader notes when it last heard from each node and proposes `FenceNode` once a lease
//! runs out. A new Raft leader knows nothing about past heartbeats, so it starts by giving
//! every node a full lease ([`Leases::reset`]); a node that is really gone is fenced one lease
//! later. Time comes from the caller, so this is plain data and testable without sleeping.
//!
//! Consumer group members get the same treatment ([`MemberSessions`]): their heartbeats stay
//! on the leader, and only their removal (`LeaveGroup`) goes through Raft.

use std::collections::{BTreeMap, BTreeSet};
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

/// Group members' sessions, kept by the controller leader in memory.
///
/// A member is removed when it sends no heartbeat for its session timeout, or when it keeps
/// partitions taken from it for longer than its rebalance timeout (it is stuck, and its
/// partitions' new owner waits). A member this leader has not heard from yet (it joined
/// through another voter, or this voter just took over) gets a full session from the moment
/// the leader first sees it in the state.
#[derive(Debug, Clone, Default)]
pub struct MemberSessions {
    last_seen: BTreeMap<(String, String), Instant>,
    revoking_since: BTreeMap<(String, String), Instant>,
}

impl MemberSessions {
    /// This voter just became the Raft leader: every member gets a full session from now.
    pub fn reset(&mut self) {
        self.last_seen.clear();
        self.revoking_since.clear();
    }

    pub fn heartbeat(&mut self, group: &str, member: &str, now: Instant) {
        let seen = self
            .last_seen
            .entry((group.to_owned(), member.to_owned()))
            .or_insert(now);
        *seen = (*seen).max(now);
    }

    /// Members of `state` to remove at `now`, as (group, member).
    pub fn expired(&mut self, state: &ClusterState, now: Instant) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut present = BTreeSet::new();
        for (group, g) in &state.groups {
            for (id, m) in &g.members {
                let key = (group.clone(), id.clone());
                let last = *self.last_seen.entry(key.clone()).or_insert(now);
                let session = Duration::from_millis(m.session_timeout_ms);
                let mut expired = now.saturating_duration_since(last) > session;
                if m.revoking().next().is_some() {
                    let since = *self.revoking_since.entry(key.clone()).or_insert(now);
                    let rebalance = Duration::from_millis(m.rebalance_timeout_ms);
                    expired |= now.saturating_duration_since(since) > rebalance;
                } else {
                    self.revoking_since.remove(&key);
                }
                if expired {
                    out.push(key.clone());
                }
                present.insert(key);
            }
        }
        self.last_seen.retain(|k, _| present.contains(k));
        self.revoking_since.retain(|k, _| present.contains(k));
        out
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
                address: "n:1".into(),
                cluster_address: String::new(),
                rack: None,
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

    #[test]
    fn a_member_is_removed_after_its_session_or_a_stuck_revocation() {
        use crate::assign::Strategy;
        use crate::groups::JoinRequest;
        use pyralog_types::{LogConfig, LogId};

        let t0 = Instant::now();
        let s = |secs: u64| t0 + Duration::from_secs(secs);
        let mut state = ClusterState::default();
        state.apply(&Command::RegisterNode {
            id: 1,
            address: "n:1".into(),
            cluster_address: String::new(),
            rack: None,
        });
        let orders = LogId::new("orders").expect("log");
        state.apply(&Command::CreateLog {
            log: orders.clone(),
            config: LogConfig {
                partition_count: 4,
                ..LogConfig::default()
            },
            request: 0,
        });
        let join = |member: &str| Command::JoinGroup {
            group: "g".into(),
            request: JoinRequest {
                member: member.into(),
                client: String::new(),
                logs: vec![orders.clone()],
                session_timeout_ms: 3_000,
                rebalance_timeout_ms: 10_000,
                strategy: Strategy::Sticky,
            },
        };
        state.apply(&join("a"));
        let mut sessions = MemberSessions::default();
        assert!(
            sessions.expired(&state, s(0)).is_empty(),
            "first seen: full session"
        );
        sessions.heartbeat("g", "a", s(2));
        assert!(sessions.expired(&state, s(4)).is_empty());
        assert_eq!(
            sessions.expired(&state, s(6)),
            vec![("g".to_owned(), "a".to_owned())]
        );
        // b joins; a must give up two partitions and keeps heartbeating but never reports.
        state.apply(&join("b"));
        for t in 6..=16 {
            sessions.heartbeat("g", "a", s(t));
            sessions.heartbeat("g", "b", s(t));
            let expired = sessions.expired(&state, s(t));
            assert!(expired.is_empty(), "at {t}: {expired:?}");
        }
        sessions.heartbeat("g", "a", s(17));
        sessions.heartbeat("g", "b", s(17));
        assert_eq!(
            sessions.expired(&state, s(17)),
            vec![("g".to_owned(), "a".to_owned())],
            "stuck revoking past the rebalance timeout"
        );
    }
}
