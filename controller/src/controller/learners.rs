//! Learners: broker-only nodes that follow the controller's Raft log without voting.
//!
//! Voters are static (the `voters` list); learners come and go. Every broker needs the
//! cluster state (placement, leaders, epochs, ISRs) applied locally, but a quorum of 3 or 5
//! is what keeps commits and elections fast, so brokers beyond the voters join Raft as
//! learners: the leader replicates the log to them (a snapshot when they are far behind) and
//! they apply it like a voter, but they never vote and never count toward a commit.
//!
//! Joining is driven by the learner: until the membership it has applied names it, it asks
//! the leader (`Controller.AddLearner`, trying every voter and following `NOT_LEADER`
//! hints). The leader adds it with openraft's non-blocking `add_learner`. Asking again
//! changes nothing when the leader already has the learner at that address (no membership
//! entry is written); a learner that comes back at a new address gets its address updated.
//! A learner's writes (registration, heartbeats, ISR changes) go to the leader like any
//! non-leader's.

use std::collections::BTreeMap;
use std::sync::Weak;
use std::time::Duration;

use openraft::{BasicNode, ChangeMembers};
use pyralog_proto::internal::AddLearnerRequest;
use pyralog_proto::status::reason_of;
use pyralog_types::{NodeId, Reason};
use tokio_util::sync::CancellationToken;

use super::Controller;
use crate::error::ControllerError;

impl Controller {
    /// Whether the Raft membership this node has applied names it (as voter or learner).
    pub fn is_member(&self) -> bool {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        metrics
            .membership_config
            .membership()
            .get_node(&self.config.node_id)
            .is_some()
    }

    /// The learners in the membership this node has applied, with their addresses.
    pub fn learners(&self) -> BTreeMap<NodeId, String> {
        let metrics = self.raft.metrics();
        let metrics = metrics.borrow();
        let membership = metrics.membership_config.membership();
        membership
            .learner_ids()
            .filter_map(|id| membership.get_node(&id).map(|n| (id, n.addr.clone())))
            .collect()
    }

    /// `Controller.AddLearner` on this voter: adds node `id` at `address` as a learner when
    /// this voter leads, `NotLeader` otherwise. Returns the leader's id.
    pub(crate) async fn add_learner_as_leader(
        &self,
        id: NodeId,
        address: String,
    ) -> Result<NodeId, ControllerError> {
        if self.cancel.is_cancelled() {
            return Err(ControllerError::ShuttingDown);
        }
        check_learner(id, &address, &self.config.voters)?;
        if !self.is_leader() {
            return Err(self.not_leader());
        }
        let known = {
            let metrics = self.raft.metrics();
            let metrics = metrics.borrow();
            let membership = metrics.membership_config.membership();
            if membership.voter_ids().any(|v| v == id) {
                return Err(ControllerError::InvalidRequest(format!(
                    "node {id} is a controller voter; it cannot join as a learner"
                )));
            }
            membership.get_node(&id).map(|n| n.addr.clone())
        };
        let node = BasicNode::new(&address);
        let result = match known {
            Some(addr) if addr == address => return Ok(self.config.node_id),
            Some(old) => {
                tracing::info!(node = id, %old, new = %address, "learner moved: updating its address");
                self.raft
                    .change_membership(ChangeMembers::SetNodes(BTreeMap::from([(id, node)])), true)
                    .await
            }
            None => {
                tracing::info!(node = id, %address, "adding a controller learner");
                self.raft.add_learner(id, node, false).await
            }
        };
        match result {
            Ok(_) => Ok(self.config.node_id),
            Err(e) => match e.forward_to_leader() {
                Some(_) => Err(self.not_leader()),
                None => Err(ControllerError::raft("adding a learner", e)),
            },
        }
    }

    /// One attempt to join: asks the voter at `address` to add this node as a learner.
    async fn ask_to_join(&self, address: &str) -> Result<(), ControllerError> {
        let mut client = self.peer(address)?;
        let timeout = self.config.write_timeout.min(Duration::from_secs(5));
        let mut request = tonic::Request::new(AddLearnerRequest {
            node_id: self.config.node_id,
            cluster_address: self.config.own_cluster_address(),
        });
        request.set_timeout(timeout);
        match tokio::time::timeout(timeout, client.add_learner(request)).await {
            Err(_) => Err(ControllerError::Timeout(timeout)),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(status)) => Err(match reason_of(&status) {
                Some((Reason::NotLeader, meta)) => ControllerError::NotLeader {
                    leader: meta.get("leader").cloned(),
                },
                _ => ControllerError::Remote {
                    node: self.voter_at(address),
                    message: status.message().to_owned(),
                },
            }),
        }
    }
}

/// What no leader may grant a learner: node 0, a configured voter, an address that is not
/// `host:port`. (The leader also refuses a node its membership has as a voter.)
pub fn check_learner(
    id: NodeId,
    address: &str,
    voters: &BTreeMap<NodeId, String>,
) -> Result<(), ControllerError> {
    let invalid = |m: String| Err(ControllerError::InvalidRequest(m));
    if id == 0 {
        return invalid("node id 0 is reserved".to_owned());
    }
    if voters.contains_key(&id) {
        return invalid(format!(
            "node {id} is a controller voter; it cannot join as a learner"
        ));
    }
    let port_ok = address
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !port_ok || address.len() > 255 || address.chars().any(char::is_whitespace) {
        return invalid(format!("learner address {address:?} is not host:port"));
    }
    Ok(())
}

/// A learner's join task: until the membership it applied names it, asks the voters (the
/// known leader first) to add it; then checks again every heartbeat period, so a learner
/// removed from the membership (or one whose disk was replaced) asks again.
pub(super) async fn join_loop(weak: Weak<Controller>, cancel: CancellationToken) {
    let period = match weak.upgrade() {
        Some(c) => c.config.node_heartbeat,
        None => return,
    };
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut hint: Option<String> = None;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(controller) = weak.upgrade() else {
            return;
        };
        if controller.is_member() {
            continue;
        }
        let mut targets: Vec<String> = hint.take().into_iter().collect();
        targets.extend(controller.leader_address());
        targets.extend(controller.config.voters.values().cloned());
        targets.dedup();
        for address in targets {
            let attempt = tokio::select! {
                _ = cancel.cancelled() => return,
                r = controller.ask_to_join(&address) => r,
            };
            match attempt {
                Ok(()) => {
                    tracing::info!(node = controller.config.node_id, leader = %address,
                        "joined the controller as a learner");
                    break;
                }
                Err(ControllerError::NotLeader { leader: Some(l) }) if !l.is_empty() => {
                    hint = Some(l);
                }
                Err(e) => tracing::debug!(node = controller.config.node_id, voter = %address,
                    error = %e, "joining the controller: will retry"),
            }
        }
    }
}
