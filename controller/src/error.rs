//! What can go wrong in the controller, in terms a caller can act on.
//!
//! A command the state machine refuses is not an error here: it is committed like any other
//! and answered as [`CommandResult::Rejected`](crate::CommandResult::Rejected). These errors
//! mean the command's fate is unknown or it never reached Raft; [`ControllerError::reason`]
//! maps them to the stable wire reasons.

use std::error::Error as StdError;
use std::time::Duration;

use pyralog_types::{NodeId, Reason};

pub use crate::store::StoreError;

/// An error of the controller runtime.
#[derive(Debug, thiserror::Error)]
pub enum ControllerError {
    #[error("invalid controller config: {0}")]
    InvalidConfig(String),
    /// The Raft log, vote or snapshot files could not be read or written.
    #[error("controller storage: {0}")]
    Storage(#[from] StoreError),
    /// openraft failed (a fatal error stops this voter's Raft).
    #[error("raft {context}: {source}")]
    Raft {
        context: &'static str,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// This voter is not the Raft leader; `leader` is the leader's address when known.
    #[error("not the controller leader (leader: {})", leader.as_deref().unwrap_or("unknown"))]
    NotLeader { leader: Option<String> },
    /// No leader accepted the command in time; it may or may not have been applied.
    #[error("no controller answer within {0:?}; the command may or may not have been applied")]
    Timeout(Duration),
    #[error("the controller is shutting down")]
    ShuttingDown,
    /// Another voter answered with an error this node cannot recover from by retrying.
    #[error("controller voter {node} answered: {message}")]
    Remote { node: NodeId, message: String },
    /// The state machine refused the request (for requests answered outside a write, such as
    /// group heartbeats).
    #[error("{0}")]
    Rejected(crate::state::Rejection),
    /// A request no controller could grant (a voter asking to be added as a learner, a bad
    /// address).
    #[error("{0}")]
    InvalidRequest(String),
    /// Bytes from another voter could not be decoded.
    #[error("bad controller message: {0}")]
    Decode(#[source] serde_json::Error),
}

impl ControllerError {
    /// The wire reason for this error.
    pub fn reason(&self) -> Reason {
        match self {
            ControllerError::NotLeader { .. } => Reason::NotLeader,
            ControllerError::Timeout(_) => Reason::Timeout,
            ControllerError::ShuttingDown => Reason::ShuttingDown,
            ControllerError::Storage(_) => Reason::StorageError,
            ControllerError::InvalidConfig(_) => Reason::InvalidConfig,
            ControllerError::InvalidRequest(_) => Reason::InvalidRequest,
            ControllerError::Rejected(r) => r.reason(),
            ControllerError::Raft { .. }
            | ControllerError::Remote { .. }
            | ControllerError::Decode(_) => Reason::Internal,
        }
    }

    pub(crate) fn raft(
        context: &'static str,
        source: impl StdError + Send + Sync + 'static,
    ) -> ControllerError {
        ControllerError::Raft {
            context,
            source: Box::new(source),
        }
    }
}
