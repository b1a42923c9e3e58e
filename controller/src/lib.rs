//! The controller: the single source of truth for the cluster's metadata (design §5).
//!
//! A Raft group (openraft) of 1, 3 or 5 voters replicates [`Command`]s; every voter applies
//! them to its [`ClusterState`], so any node can read the current placement, leaders, epochs
//! and ISRs locally. Only the controller bumps epochs.
//!
//! - [`state`]: the pure state machine (nodes, logs, placement, elections, ISR changes).
//! - [`groups`] and [`assign`]: consumer groups (cooperative rebalancing, generation-fenced
//!   commits) and producer ids, part of the same state machine.
//! - [`leases`]: the Raft leader's liveness bookkeeping for nodes and group members (pure;
//!   the caller brings the clock).
//! - `store`: openraft's log and state-machine storage in plain files (CRC-framed log
//!   segments, atomic vote and snapshot files).
//! - `network` and `service`: openraft's RPCs over the node's cluster listener (JSON
//!   payloads); the node supplies the channels ([`PeerChannels`]: mutual TLS in a secure
//!   cluster) and tells the services which node a request came from ([`PeerNode`]), so a
//!   node cannot speak for another.
//! - [`Controller`]: the runtime that ties them together: bootstrap, writes forwarded to the
//!   leader, node heartbeats and lease-based fencing.

pub mod assign;
mod config;
mod controller;
mod error;
pub mod groups;
pub mod leases;
mod network;
mod raft_types;
mod service;
pub mod state;
mod store;

pub use assign::{Strategy, Tp};
pub use config::{ControllerConfig, Roles};
pub use controller::{check_learner, Controller, GroupHeartbeat, GroupHeartbeatAnswer, Leave};
pub use error::{ControllerError, StoreError};
pub use groups::{
    Committed, GroupMeta, JoinRequest, Joined, Member, OffsetCommit, ProducerIdentity,
};
pub use leases::{Leases, MemberSessions};
pub use network::{PeerChannels, PeerNode, PlainChannels};
pub use raft_types::TypeConfig as RaftTypeConfig;
pub use state::{
    ClusterState, Command, CommandResult, LogMeta, NodeInfo, PartitionMeta, PartitionMove,
    Rejection,
};
