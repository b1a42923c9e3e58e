//! The node's cold tier: the object store, the read cache, and per-partition manifests.
//!
//! Opened once at node start (a store that cannot be written refuses the start with a message
//! naming the problem), it hands each partition a [`ColdPartition`] and keeps the bucket's
//! registry of logs in step with the node's, so a node started on an empty disk can recreate
//! every archived log.

use std::path::Path;
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::{
    check_access, open_store, ChunkCache, ColdError, ColdPartition, ColdReader, Layout,
    LogRegistry, ManifestStore,
};
use pyralog_types::{LogConfig, LogId, PartitionId};
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
}

impl ColdTier {
    /// Opens the store (or uses `injected`), probes it, and opens the read cache.
    pub(crate) async fn open(
        settings: &ColdTierSettings,
        injected: Option<Arc<dyn ObjectStore>>,
        data_dir: &Path,
    ) -> Result<ColdTier, ColdError> {
        let layout = settings.store.layout()?;
        let store = match injected {
            Some(s) => s,
            None => open_store(&settings.store)?,
        };
        check_access(store.as_ref(), &layout).await?;
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
        Ok(ColdTier {
            manifests: ManifestStore::new(store.clone(), layout.clone()),
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
        ColdPartition::open(
            log.clone(),
            partition,
            self.manifests.clone(),
            self.reader.clone(),
        )
        .await
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
        for p in 0..partitions {
            for dir in [
                self.layout.manifest_dir(log, p),
                self.layout.partition_dir(log, p),
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
