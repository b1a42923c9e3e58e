//! The node's cold tier: the object store, the read cache, and per-partition manifests.
//!
//! Opened once at node start (a store that cannot be written refuses the start with a message
//! naming the problem), it hands each partition a [`ColdPartition`] and keeps the bucket's
//! registry of logs in step with the node's, so a node started on an empty disk can recreate
//! every archived log. With `[cold_tier.iceberg] enabled` (the default) it also runs the
//! lakehouse publisher: every manifest a partition commits becomes a snapshot of the log's
//! Iceberg table, and opening a partition offers its manifest, so a table that missed a
//! commit (a crash between the two) catches up at the next start.
//!
//! With `[cold_tier] object_lock` the bucket must have S3 Object Lock enabled (checked here, a
//! start on another bucket is refused); every partition's manifests then lock what they
//! commit and the objects they add (`pyralog-object-lock`, see `pyralog_cold_tier::write_once`).

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::WriteOnce;
use pyralog_cold_tier::{
    check_access, open_store, ChunkCache, ColdError, ColdPartition, ColdReader, Layout,
    LogRegistry, ManifestStore,
};
use pyralog_lakehouse::{base_uri, IcebergTables, Publisher};
use pyralog_ledger::SigningKey;
use pyralog_ledger_audit::{create_key_file, CheckpointStore, Checkpointer};
use pyralog_object_lock::S3ObjectLock;
use pyralog_types::clock::Clock;
use pyralog_types::{LogConfig, LogId, PartitionId};
use tokio_util::sync::{CancellationToken, DropGuard};
use tracing::warn;

use crate::config::ColdTierSettings;

#[derive(Debug)]
pub(crate) struct ColdTier {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) layout: Layout,
    pub(crate) settings: ColdTierSettings,
    manifests: ManifestStore,
    reader: Arc<ColdReader>,
    registry: LogRegistry,
    cache: Arc<ChunkCache>,
    lakehouse: Option<Lakehouse>,
    /// Signs the checkpoints of ledger logs' archives.
    pub(crate) checkpointer: Checkpointer,
    clock: Arc<dyn Clock>,
}

/// The log tables and their publisher (`None` with `[cold_tier.iceberg] enabled = false`;
/// stopped when the cold tier is dropped or stopped).
#[derive(Debug)]
pub(crate) struct Lakehouse {
    pub(crate) tables: Arc<IcebergTables>,
    publisher: Option<Publisher>,
    cancel: CancellationToken,
    _stop_on_drop: DropGuard,
}

impl ColdTier {
    /// Opens the store (or uses `injected`), probes it, and opens the read cache.
    pub(crate) async fn open(
        settings: &ColdTierSettings,
        injected: Option<Arc<dyn ObjectStore>>,
        data_dir: &Path,
        clock: Arc<dyn Clock>,
    ) -> Result<ColdTier, ColdError> {
        let layout = settings.store.layout()?;
        let store = match injected {
            Some(s) => s,
            None => open_store(&settings.store)?,
        };
        check_access(store.as_ref(), &layout).await?;
        let mut manifests = ManifestStore::new(store.clone(), layout.clone());
        if let Some(lock) = settings.object_lock {
            let lock = S3ObjectLock::new(&settings.store, lock)?.with_clock(clock.clone());
            lock.check_bucket().await?;
            tracing::info!(bucket = lock.bucket(), lock = %lock.describe(),
                "write-once storage: archived objects and manifests are locked as they are \
                 stored; retention and compaction of archived data are refused, orphaned \
                 objects are kept");
            manifests = manifests.with_write_once(Arc::new(lock));
        }
        let cache_dir = settings
            .cache
            .dir
            .clone()
            .unwrap_or_else(|| data_dir.join("cold-cache"));
        let cache = ChunkCache::open(&settings.cache, cache_dir).await?;
        let reader = Arc::new(
            ColdReader::new(store.clone())
                .with_decode_concurrency(settings.decode_threads())
                .with_cache(cache.clone(), settings.cache.readahead())
                .with_decoded_cache(settings.cache.decoded_bytes),
        );
        // The tables are always opened: with publishing off, orphan collection still keeps
        // what tables written earlier (or by another process) list.
        let base = base_uri(&settings.store).map_err(|e| ColdError::Config(e.to_string()))?;
        let tables = Arc::new(IcebergTables::new(
            store.clone(),
            layout.clone(),
            base,
            settings.iceberg.clone(),
        ));
        let cancel = CancellationToken::new();
        let publisher = settings.iceberg.enabled.then(|| {
            let (publisher, _task) =
                Publisher::spawn(tables.clone(), clock.clone(), cancel.clone());
            publisher
        });
        let key_file = settings
            .ledger_signing_key
            .clone()
            .unwrap_or_else(|| data_dir.join("ledger-signing.key"));
        let checkpoints = CheckpointStore::new(store.clone(), &layout);
        let checkpointer = Checkpointer::new(
            load_or_create_key(&key_file, &checkpoints).await?,
            checkpoints,
            clock.clone(),
        );
        checkpointer
            .publish_key()
            .await
            .map_err(|e| ColdError::Config(format!("publishing the ledger key: {e}")))?;
        let lakehouse = Some(Lakehouse {
            tables,
            publisher,
            _stop_on_drop: cancel.clone().drop_guard(),
            cancel,
        });
        Ok(ColdTier {
            lakehouse,
            checkpointer,
            clock,
            manifests,
            registry: LogRegistry::new(store.clone(), layout.clone()),
            store,
            layout,
            settings: settings.clone(),
            reader,
            cache,
        })
    }

    pub(crate) async fn partition(
        &self,
        log: &LogId,
        partition: PartitionId,
    ) -> Result<ColdPartition, ColdError> {
        let cold = ColdPartition::open(
            log.clone(),
            partition,
            self.manifests.clone(),
            self.reader.clone(),
        )
        .await?
        .with_clock(self.clock.clone());
        Ok(
            match self.lakehouse.as_ref().and_then(|l| l.publisher.as_ref()) {
                Some(publisher) => {
                    publisher.offer(&cold.manifest());
                    cold.with_observer(Arc::new(publisher.clone()))
                }
                None => cold,
            },
        )
    }

    /// The log tables, when Iceberg publication is on.
    pub(crate) fn lakehouse(&self) -> Option<&Lakehouse> {
        self.lakehouse.as_ref()
    }

    /// Stops the table publisher (what it had not published yet, the next start offers again).
    pub(crate) fn stop(&self) {
        if let Some(l) = &self.lakehouse {
            l.cancel.cancel();
        }
    }

    pub(crate) async fn registered_logs(&self) -> Result<Vec<(LogId, LogConfig)>, ColdError> {
        self.registry.list().await
    }

    pub(crate) async fn register(&self, log: &LogId, config: &LogConfig) -> Result<(), ColdError> {
        self.registry.put(log, config).await
    }

    /// Forgets a deleted log: its registry entry, manifests and objects (best effort; what
    /// is left is unreachable and harmless).
    pub(crate) async fn forget(&self, log: &LogId, partitions: u32) {
        if let Err(e) = self.registry.delete(log).await {
            warn!(%log, error = %e, "could not remove the log from the bucket registry");
        }
        if let Some(l) = &self.lakehouse {
            if let Some(p) = &l.publisher {
                p.forget(log);
            }
            if let Err(e) = l.tables.drop_table(log).await {
                warn!(%log, error = %e, "could not delete the log's Iceberg table");
            }
        }
        self.checkpointer.forget(log);
        let checkpoints = CheckpointStore::new(self.store.clone(), &self.layout);
        for p in 0..partitions {
            // A ledger's checkpoints go with it (only a break-glass delete gets here): a log
            // created again under the same name starts a new history.
            for dir in [
                self.layout.manifest_dir(log, p),
                self.layout.partition_dir(log, p),
                checkpoints.partition_dir(log, p),
            ] {
                let listed: Result<Vec<_>, _> = self.store.list(Some(&dir)).try_collect().await;
                match listed {
                    Ok(objs) => {
                        for o in objs {
                            if let Err(e) = self.store.delete(&o.location).await {
                                warn!(key = %o.location, error = %e, "could not delete object");
                            }
                        }
                    }
                    Err(e) => warn!(%dir, error = %e, "could not list objects of a deleted log"),
                }
            }
        }
    }

    pub(crate) fn cache(&self) -> &Arc<ChunkCache> {
        &self.cache
    }
}

/// The ledger signing key in `path`, or a new one written there (owner-only) when the file
/// does not exist. A new key while the bucket already lists another is said loudly: the
/// checkpoints this node signs then verify only with both keys (give every node of a cluster
/// the same `ledger_signing_key`).
async fn load_or_create_key(
    path: &Path,
    checkpoints: &CheckpointStore,
) -> Result<SigningKey, ColdError> {
    let bad = |what: &str, e: &dyn std::fmt::Display| {
        ColdError::Config(format!(
            "ledger signing key {}: {what}: {e}",
            path.display()
        ))
    };
    match std::fs::read_to_string(path) {
        Ok(text) => SigningKey::from_seed_hex(&text).map_err(|e| bad("unreadable", &e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = create_key_file(path).map_err(|e| bad("cannot create", &e))?;
            let others = checkpoints.published_keys().await.unwrap_or_default();
            if others.is_empty() {
                tracing::info!(path = %path.display(), key_id = %key.verifying_key().key_id(),
                    "created a ledger signing key");
            } else {
                warn!(path = %path.display(), key_id = %key.verifying_key().key_id(),
                    published = others.len(),
                    "created a new ledger signing key while the bucket lists other keys: \
                     ledger checkpoints this node signs verify only with this key too; give \
                     every node the same [cold_tier] ledger_signing_key");
            }
            Ok(key)
        }
        Err(e) => Err(bad("cannot read", &e)),
    }
}
