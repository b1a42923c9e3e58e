//! The controller: the single source of truth for the cluster's metadata (design §5).
//!
//! A Raft group (openraft) of 1, 3 or 5 voters replicates [`Command`]s; every voter applies
//! them to its [`ClusterState`], so any node can read the current placement, leaders, epochs
//! and ISRs locally. Only the controller bumps epochs.
//!
//! - [`state`]: the pure state machine (nodes, logs, placement, elections, ISR changes).
//! - [`leases`]: the Raft leader's liveness bookkeeping (pure; the caller brings the clock).
//! - `store`: openraft's log and state-machine storage in plain files (CRC-framed log
//!   segments, atomic vote and snapshot files).
//! - `network` and `service`: openraft's RPCs over the node's gRPC server (JSON payloads).
//! - [`Controller`]: the runtime that ties them together: bootstrap, writes forwarded to the
//!   leader, node heartbeats and lease-based fencing.

mod config;
mod controller;
mod error;
pub mod leases;
mod network;
mod raft_types;
mod service;
pub mod state;
mod store;

pub use config::ControllerConfig;
pub use controller::Controller;
pub use error::{ControllerError, StoreError};
pub use leases::Leases;
pub use state::{
    ClusterState, Command, CommandResult, LogMeta, NodeInfo, PartitionMeta, Rejection,
};
