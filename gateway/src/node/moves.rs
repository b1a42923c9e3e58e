//! Moving replicas (`ReassignPartitions`, `DecommissionNode`): the decisions are the
//! controller's (`pyralog_controller::state::moves`); here they are checked for what the
//! caller can be told about at once, and committed. The copies themselves are ordinary
//! follower fetches, started by the reconciler when the replica sets change.

use pyralog_controller::{Command, CommandResult, PartitionMove, Rejection};
use tracing::info;

use super::Node;
use crate::error::GatewayError;

impl Node {
    /// Starts moving partitions to new replica sets (all or none).
    pub async fn reassign(&self, moves: Vec<PartitionMove>) -> Result<(), GatewayError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| {
            GatewayError::InvalidRequest("a standalone node has no replicas to move".into())
        })?;
        if moves.is_empty() {
            return Err(GatewayError::InvalidRequest(
                "no partition moves given".into(),
            ));
        }
        let state = cluster.state();
        for m in &moves {
            let log = state
                .logs
                .get(&m.log)
                .ok_or_else(|| GatewayError::LogNotFound(m.log.clone()))?;
            if m.partition as usize >= log.partitions.len() {
                return Err(GatewayError::PartitionNotFound {
                    log: m.log.clone(),
                    partition: m.partition,
                    count: log.partitions.len() as u32,
                });
            }
        }
        let count = moves.len();
        let cmd = Command::ReassignPartitions { moves };
        commit(cluster.controller.write(cmd).await)?;
        info!(partitions = count, "partition moves started");
        Ok(())
    }

    /// Decommissions node `id`: every replica it holds moves to another live node. Returns
    /// how many partitions move.
    pub async fn decommission(&self, id: u64) -> Result<u32, GatewayError> {
        let cluster = self.cluster.as_ref().ok_or_else(|| {
            GatewayError::InvalidRequest("a standalone node cannot be decommissioned".into())
        })?;
        let holding = |s: &pyralog_controller::ClusterState| {
            s.logs
                .values()
                .flat_map(|l| &l.partitions)
                .filter(|p| p.target.as_ref().unwrap_or(&p.replicas).contains(&id))
                .count()
        };
        let moving = holding(&cluster.state());
        commit(
            cluster
                .controller
                .write(Command::DecommissionNode { id })
                .await,
        )?;
        info!(node = id, partitions = moving, "decommissioning");
        Ok(u32::try_from(moving).unwrap_or(u32::MAX))
    }
}

fn commit(
    r: Result<CommandResult, pyralog_controller::ControllerError>,
) -> Result<(), GatewayError> {
    match r {
        Ok(CommandResult::Rejected(Rejection::LogNotFound(l))) => Err(GatewayError::LogNotFound(l)),
        Ok(CommandResult::Rejected(r @ Rejection::NotEnoughNodes { .. })) => {
            Err(GatewayError::NotEnoughReplicas(r.to_string()))
        }
        Ok(CommandResult::Rejected(r)) => Err(GatewayError::InvalidRequest(r.to_string())),
        Ok(_) => Ok(()),
        Err(e) => Err(GatewayError::Unavailable(e.to_string())),
    }
}
