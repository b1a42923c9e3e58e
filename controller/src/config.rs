//! Settings of one controller voter: plain data, defaults that suit a LAN cluster, checked once
//! when the controller starts (so a bad value fails `start`, not an election hours later).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyralog_types::NodeId;

use crate::error::ControllerError;

/// Settings of one controller voter.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub node_id: NodeId,
    /// This node's advertised gRPC address (`127.0.0.1:7001`); the Raft and Controller
    /// services are mounted on the node's one gRPC server at that address.
    pub address: String,
    /// Where the Raft log, vote and snapshots live (e.g. `{data_dir}/controller`).
    pub dir: PathBuf,
    /// Every voter, this node included: node id -> gRPC address. One entry = single-voter
    /// controller (`pyralog dev`).
    pub voters: BTreeMap<NodeId, String>,
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
        match self.voters.get(&self.node_id) {
            None => {
                return invalid(format!(
                    "node {} is not among the voters {:?}",
                    self.node_id,
                    self.voters.keys().collect::<Vec<_>>()
                ))
            }
            // Other voters connect to the listed address; the node registers its own. They
            // usually match, but a proxy or a name may stand between them.
            Some(addr) if *addr != self.address => tracing::warn!(
                node = self.node_id,
                listed = %addr,
                address = %self.address,
                "this voter's address differs from the one in the voter list"
            ),
            Some(_) => {}
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
