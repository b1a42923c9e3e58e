//! Cluster metadata as the gateway sees it: which logs exist, their configs, and each
//! partition's epoch.
//!
//! [`MetadataStore`] is the seam where the Raft controller plugs in later; until then
//! [`LocalMetadataStore`] keeps the metadata in one JSON file in the node's data directory,
//! replaced atomically (write temp, fsync, rename, fsync dir) on every change.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use pyralog_controller::ClusterState;
use pyralog_types::acl::AclEntry;
use pyralog_types::{Epoch, LogConfig, LogId};
use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("log {0} already exists")]
    AlreadyExists(LogId),
    #[error("log {0} does not exist")]
    NotFound(LogId),
    #[error("the controller refused: {0}")]
    Rejected(String),
    #[error("the controller is unavailable: {0}")]
    Unavailable(String),
    #[error("metadata file {path}: {detail}")]
    Storage { path: PathBuf, detail: String },
}

/// What the cluster knows about one log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogMeta {
    pub config: LogConfig,
    /// Current leader epoch of each partition (index = partition id).
    pub epochs: Vec<Epoch>,
}

/// A snapshot of the ACL entries, cheap to take on every request.
#[derive(Debug, Clone)]
pub struct Acls(AclSource);

#[derive(Debug, Clone)]
enum AclSource {
    Cluster(Arc<ClusterState>),
    Local(Arc<BTreeSet<AclEntry>>),
}

impl Acls {
    pub fn from_cluster(state: Arc<ClusterState>) -> Acls {
        Acls(AclSource::Cluster(state))
    }

    pub fn entries(&self) -> &BTreeSet<AclEntry> {
        match &self.0 {
            AclSource::Cluster(s) => &s.acls,
            AclSource::Local(a) => a,
        }
    }
}

#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    async fn create_log(&self, log: &LogId, config: &LogConfig) -> Result<LogMeta, MetadataError>;
    async fn delete_log(&self, log: &LogId) -> Result<(), MetadataError>;
    /// Raises the log's partition count to `partition_count` (the same count is a no-op;
    /// fewer is refused).
    async fn add_partitions(
        &self,
        log: &LogId,
        partition_count: u32,
    ) -> Result<LogMeta, MetadataError>;
    async fn list_logs(&self) -> Result<BTreeMap<LogId, LogMeta>, MetadataError>;
    /// The ACL entries now.
    fn acls(&self) -> Acls;
    /// Adds, then removes, ACL entries (validated by the caller and by the store).
    async fn alter_acls(
        &self,
        add: Vec<AclEntry>,
        remove: Vec<AclEntry>,
    ) -> Result<(), MetadataError>;
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct MetadataFile {
    version: u32,
    logs: BTreeMap<LogId, LogMeta>,
    #[serde(default)]
    acls: BTreeSet<AclEntry>,
}

/// Single-node metadata in `{dir}/metadata.json`.
#[derive(Debug)]
pub struct LocalMetadataStore {
    path: PathBuf,
    state: Mutex<MetadataFile>,
    /// The ACL entries of `state`, shared with requests (replaced, never mutated).
    acls: Mutex<Arc<BTreeSet<AclEntry>>>,
}

impl LocalMetadataStore {
    pub fn open(dir: &Path) -> Result<Self, MetadataError> {
        let path = dir.join("metadata.json");
        let err = |detail: String| MetadataError::Storage {
            path: path.clone(),
            detail,
        };
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
        let state = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice::<MetadataFile>(&bytes)
                .map_err(|e| err(format!("cannot parse: {e}")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => MetadataFile {
                version: 1,
                ..MetadataFile::default()
            },
            Err(e) => return Err(err(e.to_string())),
        };
        Ok(LocalMetadataStore {
            path,
            acls: Mutex::new(Arc::new(state.acls.clone())),
            state: Mutex::new(state),
        })
    }

    fn persist(&self, state: &MetadataFile) -> Result<(), MetadataError> {
        let err = |detail: String| MetadataError::Storage {
            path: self.path.clone(),
            detail,
        };
        let bytes = serde_json::to_vec_pretty(state).map_err(|e| err(e.to_string()))?;
        let tmp = self.path.with_extension("json.tmp");
        {
            use std::io::Write;
            let mut f = std::fs::File::create(&tmp).map_err(|e| err(e.to_string()))?;
            f.write_all(&bytes).map_err(|e| err(e.to_string()))?;
            f.sync_all().map_err(|e| err(e.to_string()))?;
        }
        std::fs::rename(&tmp, &self.path).map_err(|e| err(e.to_string()))?;
        if let Some(parent) = self.path.parent() {
            if let Ok(d) = std::fs::File::open(parent) {
                let _ = d.sync_all();
            }
        }
        Ok(())
    }
}

#[async_trait]
impl MetadataStore for LocalMetadataStore {
    async fn create_log(&self, log: &LogId, config: &LogConfig) -> Result<LogMeta, MetadataError> {
        let mut state = self.state.lock();
        if state.logs.contains_key(log) {
            return Err(MetadataError::AlreadyExists(log.clone()));
        }
        let meta = LogMeta {
            config: config.clone(),
            epochs: vec![Epoch(1); config.partition_count as usize],
        };
        state.logs.insert(log.clone(), meta.clone());
        if let Err(e) = self.persist(&state) {
            state.logs.remove(log);
            return Err(e);
        }
        Ok(meta)
    }

    async fn add_partitions(
        &self,
        log: &LogId,
        partition_count: u32,
    ) -> Result<LogMeta, MetadataError> {
        let mut state = self.state.lock();
        let Some(meta) = state.logs.get(log).cloned() else {
            return Err(MetadataError::NotFound(log.clone()));
        };
        let have = meta.config.partition_count;
        if partition_count < have {
            return Err(MetadataError::Rejected(format!(
                "log {log} has {have} partitions; a partition count can only grow"
            )));
        }
        let mut grown = meta.clone();
        grown.config.partition_count = partition_count;
        grown
            .config
            .validate()
            .map_err(|e| MetadataError::Rejected(e.to_string()))?;
        grown.epochs.resize(partition_count as usize, Epoch(1));
        state.logs.insert(log.clone(), grown.clone());
        if let Err(e) = self.persist(&state) {
            state.logs.insert(log.clone(), meta);
            return Err(e);
        }
        Ok(grown)
    }

    async fn delete_log(&self, log: &LogId) -> Result<(), MetadataError> {
        let mut state = self.state.lock();
        let Some(old) = state.logs.remove(log) else {
            return Err(MetadataError::NotFound(log.clone()));
        };
        if let Err(e) = self.persist(&state) {
            state.logs.insert(log.clone(), old);
            return Err(e);
        }
        Ok(())
    }

    async fn list_logs(&self) -> Result<BTreeMap<LogId, LogMeta>, MetadataError> {
        Ok(self.state.lock().logs.clone())
    }

    fn acls(&self) -> Acls {
        Acls(AclSource::Local(self.acls.lock().clone()))
    }

    async fn alter_acls(
        &self,
        add: Vec<AclEntry>,
        remove: Vec<AclEntry>,
    ) -> Result<(), MetadataError> {
        for e in add.iter().chain(&remove) {
            e.validate()
                .map_err(|e| MetadataError::Rejected(e.to_string()))?;
        }
        let mut state = self.state.lock();
        let mut acls = state.acls.clone();
        acls.extend(add);
        for e in &remove {
            acls.remove(e);
        }
        if acls.len() > pyralog_types::acl::MAX_ACL_ENTRIES {
            return Err(MetadataError::Rejected(format!(
                "at most {} ACL entries",
                pyralog_types::acl::MAX_ACL_ENTRIES
            )));
        }
        let old = std::mem::replace(&mut state.acls, acls);
        if let Err(e) = self.persist(&state) {
            state.acls = old;
            return Err(e);
        }
        *self.acls.lock() = Arc::new(state.acls.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn survives_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = LogId::new("orders").expect("valid");
        {
            let store = LocalMetadataStore::open(dir.path()).expect("open");
            let cfg = LogConfig {
                partition_count: 3,
                ..Default::default()
            };
            store.create_log(&log, &cfg).await.expect("create");
            assert!(matches!(
                store.create_log(&log, &cfg).await,
                Err(MetadataError::AlreadyExists(_))
            ));
        }
        let store = LocalMetadataStore::open(dir.path()).expect("reopen");
        let logs = store.list_logs().await.expect("list");
        assert_eq!(logs[&log].config.partition_count, 3);
        assert_eq!(logs[&log].epochs.len(), 3);
        store.delete_log(&log).await.expect("delete");
        assert!(matches!(
            store.delete_log(&log).await,
            Err(MetadataError::NotFound(_))
        ));
    }

    #[test]
    fn corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("metadata.json"), b"{not json").expect("write");
        let e = LocalMetadataStore::open(dir.path()).expect_err("corrupt");
        assert!(e.to_string().contains("cannot parse"), "{e}");
    }
}
