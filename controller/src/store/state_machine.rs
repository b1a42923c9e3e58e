//! The applied state: [`ClusterState`] plus what openraft needs to know about it (the last
//! applied log id and membership), and its snapshots.
//!
//! Applying is in memory only; durability comes from the log (openraft re-applies the
//! committed entries after the snapshot when it starts) and from snapshots, written atomically
//! as `snapshot/snapshot.json` every `snapshot_every` entries. Every change of the cluster
//! state is published on a `watch` channel, which is how the rest of the node reads it.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use openraft::storage::RaftStateMachine;
use openraft::{
    AnyError, EntryPayload, ErrorSubject, ErrorVerb, RaftSnapshotBuilder, StorageIOError,
};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::fsutil::{create_dir_all, read_optional, write_atomic};
use super::{blocking, StoreError};
use crate::raft_types::{
    Entry, LogId, Snapshot, SnapshotMeta, StorageError, StoredMembership, TypeConfig,
};
use crate::state::{ClusterState, CommandResult};

const SNAPSHOT_FILE: &str = "snapshot.json";

/// Everything a snapshot holds; also the bytes sent to a follower that needs it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct StateMachineData {
    pub(crate) last_applied: Option<LogId>,
    pub(crate) last_membership: StoredMembership,
    pub(crate) state: ClusterState,
}

/// The snapshot file.
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta,
    data: StateMachineData,
}

/// Where the current snapshot lives; shared by the state machine and its snapshot builders,
/// which run on their own task.
#[derive(Debug)]
struct SnapshotDir {
    dir: PathBuf,
    /// Serializes snapshot writes, so an older snapshot never replaces a newer one.
    write: Mutex<()>,
}

impl SnapshotDir {
    fn load(&self) -> Result<Option<SnapshotFile>, StoreError> {
        let Some(bytes) = read_optional(&self.dir, SNAPSHOT_FILE)? else {
            return Ok(None);
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path: self.dir.join(SNAPSHOT_FILE),
                offset: 0,
                reason: e.to_string(),
            })
    }

    /// Writes `file` unless the current snapshot is newer; answers whether it wrote.
    fn save(&self, file: &SnapshotFile) -> Result<bool, StoreError> {
        let _guard = self.write.lock();
        if let Some(current) = self.load()? {
            if current.meta.last_log_id > file.meta.last_log_id {
                return Ok(false);
            }
        }
        let bytes = serde_json::to_vec(file).map_err(|source| StoreError::Encode {
            what: "snapshot",
            source,
        })?;
        write_atomic(&self.dir, SNAPSHOT_FILE, &bytes)?;
        Ok(true)
    }
}

/// openraft's state machine.
#[derive(Debug)]
pub(crate) struct StateMachineStore {
    data: StateMachineData,
    snapshots: Arc<SnapshotDir>,
    published: watch::Sender<Arc<ClusterState>>,
    /// Snapshots built by this process, to make snapshot ids unique.
    built: u64,
}

/// Builds a snapshot of the state as it was when openraft asked for the builder.
#[derive(Debug)]
pub(crate) struct SnapshotBuilder {
    data: StateMachineData,
    snapshots: Arc<SnapshotDir>,
    id: u64,
}

impl StateMachineStore {
    /// Opens the state machine: the latest snapshot, or the empty state.
    pub(crate) async fn open(dir: PathBuf) -> Result<StateMachineStore, StoreError> {
        let snapshots = Arc::new(SnapshotDir {
            dir,
            write: Mutex::new(()),
        });
        let loaded = {
            let snapshots = Arc::clone(&snapshots);
            blocking(move || {
                create_dir_all(&snapshots.dir)?;
                snapshots.load()
            })
            .await?
        };
        let data = loaded.map(|f| f.data).unwrap_or_default();
        let (published, _) = watch::channel(Arc::new(data.state.clone()));
        Ok(StateMachineStore {
            data,
            snapshots,
            published,
            built: 0,
        })
    }

    /// The applied cluster state, updated at every change.
    pub(crate) fn subscribe(&self) -> watch::Receiver<Arc<ClusterState>> {
        self.published.subscribe()
    }

    fn publish(&self) {
        self.published
            .send_replace(Arc::new(self.data.state.clone()));
    }
}

fn snapshot_error(meta: Option<&SnapshotMeta>, verb: ErrorVerb, e: &StoreError) -> StorageError {
    let subject = match meta {
        Some(m) => ErrorSubject::Snapshot(Some(m.signature())),
        None => ErrorSubject::Snapshot(None),
    };
    StorageIOError::new(subject, verb, AnyError::new(e)).into()
}

fn to_snapshot(file: SnapshotFile) -> Result<Snapshot, StoreError> {
    let bytes = serde_json::to_vec(&file.data).map_err(|source| StoreError::Encode {
        what: "snapshot",
        source,
    })?;
    Ok(Snapshot {
        meta: file.meta,
        snapshot: Box::new(Cursor::new(bytes)),
    })
}

impl RaftSnapshotBuilder<TypeConfig> for SnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot, StorageError> {
        let last = self.data.last_applied;
        let snapshot_id = match last {
            Some(l) => format!("{}-{}-{}", l.leader_id.term, l.index, self.id),
            None => format!("0-0-{}", self.id),
        };
        let file = SnapshotFile {
            meta: SnapshotMeta {
                last_log_id: last,
                last_membership: self.data.last_membership.clone(),
                snapshot_id,
            },
            data: self.data.clone(),
        };
        let snapshots = Arc::clone(&self.snapshots);
        let meta = file.meta.clone();
        blocking(move || {
            snapshots.save(&file)?;
            to_snapshot(file)
        })
        .await
        .map_err(|e| snapshot_error(Some(&meta), ErrorVerb::Write, &e))
    }
}

impl RaftStateMachine<TypeConfig> for StateMachineStore {
    type SnapshotBuilder = SnapshotBuilder;

    async fn applied_state(&mut self) -> Result<(Option<LogId>, StoredMembership), StorageError> {
        Ok((self.data.last_applied, self.data.last_membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandResult>, StorageError>
    where
        I: IntoIterator<Item = Entry> + Send,
        I::IntoIter: Send,
    {
        let mut results = Vec::new();
        let mut changed = false;
        for entry in entries {
            self.data.last_applied = Some(entry.log_id);
            let result = match entry.payload {
                EntryPayload::Blank => CommandResult::Done,
                EntryPayload::Normal(cmd) => {
                    let result = self.data.state.apply(&cmd);
                    changed |= !matches!(result, CommandResult::Rejected(_));
                    result
                }
                EntryPayload::Membership(m) => {
                    self.data.last_membership = StoredMembership::new(Some(entry.log_id), m);
                    CommandResult::Done
                }
            };
            results.push(result);
        }
        if changed {
            self.publish();
        }
        Ok(results)
    }

    async fn get_snapshot_builder(&mut self) -> SnapshotBuilder {
        self.built += 1;
        SnapshotBuilder {
            data: self.data.clone(),
            snapshots: Arc::clone(&self.snapshots),
            id: self.built,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError> {
        let bytes = snapshot.into_inner();
        let data: StateMachineData = serde_json::from_slice(&bytes).map_err(|e| {
            let e = StoreError::Corrupt {
                path: PathBuf::from("<received snapshot>"),
                offset: 0,
                reason: e.to_string(),
            };
            snapshot_error(Some(meta), ErrorVerb::Read, &e)
        })?;
        if data.last_applied != meta.last_log_id {
            let e = StoreError::Corrupt {
                path: PathBuf::from("<received snapshot>"),
                offset: 0,
                reason: format!(
                    "holds state up to {:?}, but its meta says {:?}",
                    data.last_applied, meta.last_log_id
                ),
            };
            return Err(snapshot_error(Some(meta), ErrorVerb::Read, &e));
        }
        let file = SnapshotFile {
            meta: meta.clone(),
            data: data.clone(),
        };
        let snapshots = Arc::clone(&self.snapshots);
        blocking(move || snapshots.save(&file))
            .await
            .map_err(|e| snapshot_error(Some(meta), ErrorVerb::Write, &e))?;
        self.data = data;
        self.publish();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot>, StorageError> {
        let snapshots = Arc::clone(&self.snapshots);
        blocking(move || snapshots.load()?.map(to_snapshot).transpose())
            .await
            .map_err(|e| snapshot_error(None, ErrorVerb::Read, &e))
    }
}

/// Where snapshots live under the controller directory.
pub(crate) fn snapshot_dir(controller_dir: &Path) -> PathBuf {
    controller_dir.join("snapshot")
}
