//! Settings of one controller member: plain data, defaults that suit a LAN cluster, checked
//! once when the controller starts (so a bad value fails `start`, not an election hours later).
//!
//! A member is a **voter** (listed in `voters`: it votes, may lead, and its disk holds the
//! quorum's log) or a **learner** (a broker-only node: Raft replicates the log to it and it
//! applies the same state, but it never votes, so the cluster can grow past the 3 or 5 voters
//! a quorum wants without slowing commits or elections).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyralog_types::NodeId;

use crate::error::ControllerError;

/// What a node does in the cluster (`cluster.roles` of the node config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Roles {
    /// A controller voter (it must be listed in `voters`); without it the node is a Raft
    /// learner that follows the metadata.
    pub controller: bool,
    /// Hosts partitions: registers with the controller, heartbeats, and is placed on.
    /// Without it the node is controller-only (no partitions, no lease).
    pub broker: bool,
}

impl Default for Roles {
    fn default() -> Self {
        Roles {
            controller: true,
            broker: true,
        }
    }
}

/// Settings of one controller member (voter or learner).
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// This node's advertised gRPC address (`127.0.0.1:7001`); the Raft and Controller
    /// services are mounted on the node's one gRPC server at that address.
    pub address: String,
    /// Where the Raft log, vote and snapshots live (e.g. `{data_dir}/controller`).
    pub dir: PathBuf,
    /// Every voter (this node included when it is one): node id -> cluster listener
    /// address. One entry = single-voter controller (`pyralog dev`).
    pub voters: BTreeMap<NodeId, String>,
    /// Voter, learner, broker or not (see [`Roles`]).
    pub roles: Roles,
    /// Where other nodes reach this node's cluster listener. `None` = its `voters` entry (a
    /// learner must set it: the leader replicates to it there).
    pub cluster_address: Option<String>,
    /// This node's failure domain (a rack, a zone), registered with the node: replicas of a
    /// partition go to distinct racks first.
    pub rack: Option<String>,
    /// Raft leader heartbeat interval.
    pub raft_heartbeat: Duration,
    pub election_timeout_min: Duration,
    pub election_timeout_max: Duration,
    /// A node that has not heartbeated for this long is fenced (`Command::FenceNode`) by the
    /// Raft leader.
    pub node_lease: Duration,
    /// How often this node sends its own heartbeat to the controller leader.
    pub node_heartbeat: Duration,
    /// Log entries between snapshots; the log behind a snapshot is purged.
    pub snapshot_every: u64,
    /// How long [`Controller::write`](crate::Controller::write) keeps trying (leader
    /// elections, forwarding, retries) before it answers [`ControllerError::Timeout`].
    pub write_timeout: Duration,
    /// Connect timeout for connections to other voters.
    pub connect_timeout: Duration,
    /// How often the Raft leader moves leadership back to preferred replicas that are live
    /// and in sync (`Command::BalanceLeaders`); zero turns balancing off.
    pub leader_balance_interval: Duration,
}

impl ControllerConfig {
    /// A config with the default timings.
    pub fn new(
        node_id: NodeId,
        address: impl Into<String>,
        dir: impl Into<PathBuf>,
        voters: BTreeMap<NodeId, String>,
    ) -> Self {
        ControllerConfig {
            node_id,
            address: address.into(),
            dir: dir.into(),
            voters,
            roles: Roles::default(),
            cluster_address: None,
            rack: None,
            raft_heartbeat: Duration::from_millis(100),
            election_timeout_min: Duration::from_millis(400),
            election_timeout_max: Duration::from_millis(800),
            node_lease: Duration::from_secs(3),
            node_heartbeat: Duration::from_millis(500),
            snapshot_every: 1000,
            write_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
            leader_balance_interval: Duration::from_secs(60),
        }
    }

    /// Rejects settings Raft cannot run with.
    pub fn validate(&self) -> Result<(), ControllerError> {
        let invalid = |msg: String| Err(ControllerError::InvalidConfig(msg));
        if !self.roles.controller && !self.roles.broker {
            return invalid(format!(
                "node {} has no role: it needs \"controller\", \"broker\" or both",
                self.node_id
            ));
        }
        if self.voters.is_empty() {
            return invalid("the controller needs at least one voter".to_owned());
        }
        match (self.roles.controller, self.voters.get(&self.node_id)) {
            (true, None) => {
                return invalid(format!(
                    "node {} has the controller role but is not among the voters {:?}",
                    self.node_id,
                    self.voters.keys().collect::<Vec<_>>()
                ))
            }
            (false, Some(_)) => {
                return invalid(format!(
                    "node {} is listed among the voters but has no controller role (a voter \
                     must run the controller)",
                    self.node_id
                ))
            }
            // Other voters connect to the listed address; the node registers its own. They
            // usually match, but a proxy or a name may stand between them.
            (true, Some(addr)) if *addr != self.address => tracing::warn!(
                node = self.node_id,
                listed = %addr,
                address = %self.address,
                "this voter's address differs from the one in the voter list"
            ),
            _ => {}
        }
        if self.node_id == 0 {
            return invalid("node id 0 is reserved".to_owned());
        }
        if !self.roles.controller && self.own_cluster_address().is_empty() {
            return invalid(format!(
                "node {} is a learner (broker only): it needs the address other nodes reach \
                 its cluster listener at",
                self.node_id
            ));
        }
        if let Some(rack) = &self.rack {
            crate::state::placement::validate_rack(rack).map_err(ControllerError::InvalidConfig)?;
        }
        if self.raft_heartbeat.is_zero() || self.raft_heartbeat >= self.election_timeout_min {
            return invalid(format!(
                "raft_heartbeat ({:?}) must be positive and below election_timeout_min ({:?})",
                self.raft_heartbeat, self.election_timeout_min
            ));
        }
        if self.election_timeout_min >= self.election_timeout_max {
            return invalid(format!(
                "election_timeout_min ({:?}) must be below election_timeout_max ({:?})",
                self.election_timeout_min, self.election_timeout_max
            ));
        }
        if self.node_heartbeat.is_zero() || self.node_heartbeat >= self.node_lease {
            return invalid(format!(
                "node_heartbeat ({:?}) must be positive and below node_lease ({:?})",
                self.node_heartbeat, self.node_lease
            ));
        }
        if self.snapshot_every == 0 {
            return invalid("snapshot_every must be positive".to_owned());
        }
        if self.write_timeout.is_zero() {
            return invalid("write_timeout must be positive".to_owned());
        }
        Ok(())
    }

    /// Where other nodes reach this node's cluster listener (empty when unknown).
    pub fn own_cluster_address(&self) -> String {
        self.cluster_address
            .clone()
            .or_else(|| self.voters.get(&self.node_id).cloned())
            .unwrap_or_default()
    }

    /// Whether this node votes in the controller quorum.
    pub fn is_voter(&self) -> bool {
        self.roles.controller
    }

    /// openraft's config for these settings.
    pub(crate) fn raft_config(&self) -> Result<openraft::Config, ControllerError> {
        let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1);
        let config = openraft::Config {
            cluster_name: "pyralog-controller".to_owned(),
            heartbeat_interval: ms(self.raft_heartbeat),
            election_timeout_min: ms(self.election_timeout_min),
            election_timeout_max: ms(self.election_timeout_max),
            snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(self.snapshot_every),
            // The snapshot holds everything; keep only a short tail of the log behind it, so
            // a follower a few entries behind is not sent a snapshot. One further behind gets
            // the snapshot (it is small).
            max_in_snapshot_log_to_keep: self.snapshot_every / 10,
            ..Default::default()
        };
        config
            .validate()
            .map_err(|e| ControllerError::InvalidConfig(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> ControllerConfig {
        let voters = [
            (1, "127.0.0.1:7001".to_owned()),
            (2, "127.0.0.1:7002".to_owned()),
        ];
        ControllerConfig::new(1, "127.0.0.1:7001", "/tmp/c", voters.into_iter().collect())
    }

    #[test]
    fn defaults_are_valid_and_bad_timings_are_refused() {
        let c = config();
        assert!(c.validate().is_ok());
        assert!(c.raft_config().is_ok());

        let mut c = config();
        c.node_id = 3;
        assert!(
            matches!(c.validate(), Err(ControllerError::InvalidConfig(m)) if m.contains("not among the voters"))
        );
        let mut c = config();
        c.roles.controller = false;
        assert!(
            matches!(c.validate(), Err(ControllerError::InvalidConfig(m)) if m.contains("no controller role"))
        );
        // A learner: not a voter, and it says where the leader reaches it.
        let mut c = config();
        c.node_id = 4;
        c.roles.controller = false;
        assert!(
            matches!(c.validate(), Err(ControllerError::InvalidConfig(m)) if m.contains("learner"))
        );
        c.cluster_address = Some("127.0.0.1:7004".to_owned());
        assert!(c.validate().is_ok());
        c.roles.broker = false;
        assert!(
            matches!(c.validate(), Err(ControllerError::InvalidConfig(m)) if m.contains("no role"))
        );
        let mut c = config();
        c.node_heartbeat = c.node_lease;
        assert!(c.validate().is_err());
        let mut c = config();
        c.election_timeout_max = c.election_timeout_min;
        assert!(c.validate().is_err());
        let mut c = config();
        c.raft_heartbeat = c.election_timeout_min;
        assert!(c.validate().is_err());
        let mut c = config();
        c.snapshot_every = 0;
        assert!(c.validate().is_err());
    }
}
