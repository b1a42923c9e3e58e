//! Leadership moves the controller runtime starts on its own: a node's controlled shutdown
//! ([`Controller::leave`]) and the leader's preferred-leader balancing. The decisions are the
//! state machine's (`state::leaders`); this is when to propose them.

use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Controller;
use crate::error::ControllerError;
use crate::state::{Command, CommandResult};

/// What [`Controller::leave`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The controller committed the hand-off and this voter has applied it: this node leads
    /// nothing and is in no ISR it shared with a live node.
    HandedOff,
    /// This node shared no ISR with another live node: nothing to hand off.
    NothingToHandOff,
}

impl Controller {
    /// Controlled shutdown: hands this node's leaderships and ISR places to the other live
    /// ISR members (`Command::LeaveCluster`) and waits until this voter has applied it, so
    /// the node's own partitions answer `NOT_LEADER` with the new leader before it stops.
    /// From here on the node does not register again; call it only on the way out.
    pub async fn leave(&self, timeout: Duration) -> Result<Leave, ControllerError> {
        self.leaving.store(true, Ordering::Release);
        let me = self.config.node_id;
        if !self.state.borrow().has_work_to_hand_off(me) {
            return Ok(Leave::NothingToHandOff);
        }
        let work = async {
            loop {
                if let CommandResult::Rejected(r) =
                    self.write(Command::LeaveCluster { id: me }).await?
                {
                    return Err(ControllerError::Rejected(r));
                }
                // A registration sent just before may commit after the hand-off and undo
                // it: leave again until this voter's state shows the node fenced.
                let mut state = self.state();
                let fenced = async {
                    state
                        .wait_for(|s| s.nodes.get(&me).is_none_or(|n| n.fenced))
                        .await
                        .is_ok()
                };
                match tokio::time::timeout(Duration::from_secs(1), fenced).await {
                    Ok(true) => return Ok(Leave::HandedOff),
                    Ok(false) => return Err(ControllerError::ShuttingDown),
                    Err(_) => {}
                }
            }
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| ControllerError::Timeout(timeout))?
    }

    /// On the leader: gives partitions back to their preferred replicas when any is live, in
    /// sync and not leading.
    pub(super) async fn balance_leaders(&self) {
        if !self.is_leader() || self.leaving.load(Ordering::Acquire) {
            return;
        }
        let moves = self.state.borrow().preferred_leader_moves();
        if moves.is_empty() {
            return;
        }
        tracing::info!(partitions = moves.len(), first = ?moves.first(),
            "moving leadership back to preferred replicas");
        if let Err(e) = self
            .write_local(Command::BalanceLeaders, self.config.write_timeout)
            .await
        {
            tracing::warn!(error = %e, "balancing leaders failed; will try again");
        }
    }
}
