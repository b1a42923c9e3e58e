//! The controller: the single source of truth for the cluster's metadata (design §5).
//!
//! A Raft group (openraft) of 1, 3 or 5 voters replicates [`Command`]s; every voter applies
//! them to its [`ClusterState`], so any node can read the current placement, leaders, epochs
//! and ISRs locally. Only the controller bumps epochs.
//!
//! - [`state`]: the pure state machine (nodes, logs, placement, elections, ISR changes).
//! - [`leases`]: the Raft leader's liveness bookkeeping (pure; the caller brings the clock).

pub mod leases;
pub mod state;

pub use leases::Leases;
pub use state::{
    ClusterState, Command, CommandResult, LogMeta, NodeInfo, PartitionMeta, Rejection,
};
