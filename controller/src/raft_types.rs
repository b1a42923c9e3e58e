//! The openraft type configuration: what a log entry carries (a [`Command`]), what applying it
//! answers (a [`CommandResult`]), and how voters are addressed. Snapshots are small (the whole
//! cluster metadata as JSON), so they travel as one in-memory buffer.

use std::io::Cursor;

use openraft::BasicNode;
use pyralog_types::NodeId;

use crate::state::{Command, CommandResult};

openraft::declare_raft_types!(
    /// Pyralog's controller Raft types. Public so that the Raft RPCs' JSON payloads
    /// (`openraft::raft::AppendEntriesRequest<TypeConfig>`, ...) can be named outside the
    /// crate: the fuzz target of every request message decodes them as the node does.
    pub TypeConfig:
        D = Command,
        R = CommandResult,
        NodeId = NodeId,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

pub(crate) type Entry = openraft::Entry<TypeConfig>;
pub(crate) type LogId = openraft::LogId<NodeId>;
pub(crate) type Vote = openraft::Vote<NodeId>;
pub(crate) type StorageError = openraft::StorageError<NodeId>;
pub(crate) type StoredMembership = openraft::StoredMembership<NodeId, BasicNode>;
pub(crate) type SnapshotMeta = openraft::SnapshotMeta<NodeId, BasicNode>;
pub(crate) type Snapshot = openraft::Snapshot<TypeConfig>;
pub(crate) type Raft = openraft::Raft<TypeConfig>;
