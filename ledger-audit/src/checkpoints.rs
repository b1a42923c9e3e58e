//! Signed checkpoints in the bucket, and the node's checkpointer.
//!
//! A checkpoint is written once per tree size, create-only: a second writer of the same tree
//! size (a retry whose answer was lost, or another node after a failover) finds one already
//! there and accepts it when it names the same root; a different root under the same size is
//! a fork of history and an error, never overwritten. Public keys are published next to the
//! checkpoints for convenience (`_ledger/keys/{key_id}.pub`), but a verifier should be given
//! the key it trusts: whoever can write the bucket can also write a key there.

use std::sync::Arc;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use pyralog_cold_tier::{Layout, Manifest};
use pyralog_ledger::{merkle, Checkpoint, SignedCheckpoint, SigningKey, VerifyingKey};
use pyralog_types::clock::Clock;
use pyralog_types::{LogId, PartitionId};
use tracing::debug;

use crate::error::AuditError;
use crate::tree::{archive_leaves, summaries};

/// Largest checkpoint or key object read from the bucket.
const MAX_OBJECT_BYTES: u64 = 64 * 1024;

/// Where checkpoints and keys live in the bucket.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl CheckpointStore {
    pub fn new(store: Arc<dyn ObjectStore>, layout: &Layout) -> Self {
        CheckpointStore {
            store,
            root: layout.prefix().clone().join("_ledger"),
        }
    }

    /// `{prefix}/_ledger/log={log}/partition={p}`.
    pub fn partition_dir(&self, log: &LogId, partition: PartitionId) -> Path {
        self.root
            .clone()
            .join(format!("log={log}").as_str())
            .join(format!("partition={partition}").as_str())
    }

    /// The checkpoint of `tree_size` objects.
    pub fn checkpoint_key(&self, log: &LogId, partition: PartitionId, tree_size: u64) -> Path {
        self.partition_dir(log, partition)
            .join(format!("{tree_size:020}.json").as_str())
    }

    fn key_key(&self, key_id: &str) -> Path {
        self.root
            .clone()
            .join("keys")
            .join(format!("{key_id}.pub").as_str())
    }

    /// Publishes a public key (idempotent).
    pub async fn publish_key(&self, key: &VerifyingKey) -> Result<(), AuditError> {
        let path = self.key_key(&key.key_id());
        let body = PutPayload::from(Bytes::from(key.to_hex()));
        match self
            .store
            .put_opts(&path, body, PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) | Err(object_store::Error::AlreadyExists { .. }) => Ok(()),
            Err(object_store::Error::Precondition { .. }) => Ok(()),
            Err(e) => Err(AuditError::store("put", &path, e)),
        }
    }

    /// The public keys published in the bucket.
    pub async fn published_keys(&self) -> Result<Vec<VerifyingKey>, AuditError> {
        let dir = self.root.clone().join("keys");
        let listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| AuditError::store("list", &dir, e))?;
        let mut keys = Vec::new();
        for obj in listed {
            let bytes = self.get_small(&obj.location, Some(obj.size)).await?;
            let text = String::from_utf8_lossy(&bytes);
            keys.push(VerifyingKey::from_hex(text.trim())?);
        }
        Ok(keys)
    }

    /// Writes `cp` unless a checkpoint of the same tree size is there. One with the same
    /// root is accepted (the retry of a lost answer, or a checkpoint another node signed);
    /// one with another root is [`AuditError::Unprovable`]: two histories under one size.
    pub async fn put(&self, cp: &SignedCheckpoint) -> Result<(), AuditError> {
        let c = &cp.checkpoint;
        let log = LogId::new(c.log.clone())
            .map_err(|e| AuditError::NotFound(format!("checkpoint names a bad log: {e}")))?;
        let path = self.checkpoint_key(&log, c.partition, c.tree_size);
        let body = PutPayload::from(Bytes::from(cp.to_json()));
        match self
            .store
            .put_opts(&path, body, PutOptions::from(PutMode::Create))
            .await
        {
            Ok(_) => Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let there = self.get_small(&path, None).await?;
                let there = SignedCheckpoint::from_json(&there)?;
                if there.checkpoint.root == c.root && there.checkpoint.last_offset == c.last_offset
                {
                    debug!(%path, "checkpoint already written");
                    Ok(())
                } else {
                    Err(AuditError::Unprovable(format!(
                        "{path} already holds a checkpoint of {} objects with another root: \
                         two histories of one ledger partition",
                        c.tree_size
                    )))
                }
            }
            Err(e) => Err(AuditError::store("put", &path, e)),
        }
    }

    /// Every checkpoint object of a partition, ascending by tree size, each parsed or with
    /// why it does not parse.
    pub async fn list(
        &self,
        log: &LogId,
        partition: PartitionId,
    ) -> Result<Vec<(Path, Result<SignedCheckpoint, AuditError>)>, AuditError> {
        let dir = self.partition_dir(log, partition);
        let mut listed: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| AuditError::store("list", &dir, e))?;
        listed.retain(|o| o.location.extension() == Some("json"));
        listed.sort_by(|a, b| a.location.cmp(&b.location));
        let mut out = Vec::with_capacity(listed.len());
        for obj in listed {
            let parsed = match self.get_small(&obj.location, Some(obj.size)).await {
                Ok(bytes) => SignedCheckpoint::from_json(&bytes).map_err(AuditError::from),
                Err(e) => Err(e),
            };
            out.push((obj.location, parsed));
        }
        Ok(out)
    }

    async fn get_small(&self, path: &Path, size: Option<u64>) -> Result<Bytes, AuditError> {
        let size = match size {
            Some(s) => s,
            None => {
                self.store
                    .head(path)
                    .await
                    .map_err(|e| AuditError::store("head", path, e))?
                    .size
            }
        };
        if size > MAX_OBJECT_BYTES {
            return Err(AuditError::Unprovable(format!(
                "{path} is {size} bytes, more than a checkpoint or key can be \
                 ({MAX_OBJECT_BYTES})"
            )));
        }
        self.store
            .get(path)
            .await
            .map_err(|e| AuditError::store("get", path, e))?
            .bytes()
            .await
            .map_err(|e| AuditError::store("get", path, e))
    }
}

/// Signs and writes a checkpoint after each archive commit of a ledger partition.
#[derive(Debug)]
pub struct Checkpointer {
    key: SigningKey,
    checkpoints: CheckpointStore,
    clock: Arc<dyn Clock>,
    /// The tree size last written per partition by this process (see
    /// [`Checkpointer::checkpoint_if_behind`]).
    written: parking_lot::Mutex<std::collections::HashMap<(String, PartitionId), u64>>,
}

impl Checkpointer {
    pub fn new(key: SigningKey, checkpoints: CheckpointStore, clock: Arc<dyn Clock>) -> Self {
        Checkpointer {
            key,
            checkpoints,
            clock,
            written: Default::default(),
        }
    }

    /// The public half of the signing key.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Publishes the public key in the bucket (see the module documentation for what that
    /// copy is worth).
    pub async fn publish_key(&self) -> Result<(), AuditError> {
        self.checkpoints
            .publish_key(&self.key.verifying_key())
            .await
    }

    /// Forgets what it wrote for `log` (deleted: a log created again under its name starts
    /// over).
    pub fn forget(&self, log: &LogId) {
        self.written
            .lock()
            .retain(|(name, _), _| name != log.as_str());
    }

    /// [`Checkpointer::checkpoint`] unless this process already wrote the checkpoint of
    /// `manifest`'s tree size. Called on every archive tick of a partition it leads, so a
    /// checkpoint that failed (or was never written: a crash between a manifest commit and
    /// its checkpoint, a failover) is written at the next tick; the first call after a
    /// start re-puts the newest one, which the store accepts as already there.
    pub async fn checkpoint_if_behind(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        let size = manifest.segments.len() as u64;
        let id = (manifest.log.to_string(), manifest.partition);
        if size == 0 || self.written.lock().get(&id) == Some(&size) {
            return Ok(None);
        }
        let signed = self.checkpoint(manifest).await?;
        self.written.lock().insert(id, size);
        Ok(signed)
    }

    /// Signs and writes the checkpoint of everything `manifest` (a ledger partition's
    /// committed manifest) archives. `None` when it archives nothing yet.
    pub async fn checkpoint(
        &self,
        manifest: &Manifest,
    ) -> Result<Option<SignedCheckpoint>, AuditError> {
        let objects = summaries(manifest)?;
        let Some(last) = objects.last() else {
            return Ok(None);
        };
        let cp = Checkpoint {
            log: manifest.log.to_string(),
            partition: manifest.partition,
            tree_size: objects.len() as u64,
            last_offset: last.last_offset,
            root: merkle::root(&archive_leaves(&objects)),
            chain_head: last.chain_end,
            manifest_version: manifest.version,
            time_us: self.clock.now_micros(),
        };
        let signed = self.key.sign(cp);
        self.checkpoints.put(&signed).await?;
        Ok(Some(signed))
    }
}
