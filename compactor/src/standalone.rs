//! The standalone compactor (`pyralog compactor --config FILE`): cold-tier work without a node.
//!
//! It reads the logs registered in the bucket (`_pyralog/logs/`), and for each partition of
//! each log runs one compaction pass on the archive, applies total retention to it and
//! collects orphaned objects. It never touches a node's disk, so it can run anywhere that
//! reaches the bucket: another machine, a cron job, a different scaling group.
//!
//! Exclusion: every change is a conditional manifest commit, so a node's archiver, the node's
//! own compactor and any number of standalone compactors can run at once; the one whose
//! manifest moved commits nothing (its uploads become orphans, collected after the grace
//! period) and the next pass starts from the new manifest.
//!
//! Each pass also publishes the partition's manifest to the log's Iceberg table (unless
//! `[iceberg] enabled = false`), as a node does after its own commits, and never collects an
//! object that a kept table snapshot still lists.
//!
//! With `object_lock` set (the bucket's objects are under S3 Object Lock, as the nodes'
//! `[cold_tier] object_lock` locks them), compaction and retention of the archive are refused
//! per partition and orphans are kept: the compactor then only publishes tables.

use std::sync::Arc;
use std::time::Duration;

use object_store::ObjectStore;
use pyralog_cold_tier::{
    check_access, gc_orphans, open_store, ColdError, ColdPartition, ColdReader, Layout,
    LogRegistry, ManifestStore, ObjectLockSettings, ObjectStoreConfig, WriteOnce,
};
use pyralog_lakehouse::{base_uri, IcebergTables, TableSettings};
use pyralog_types::{CompactionMode, LogConfig, LogId, PartitionId, TimestampMicros};
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::compact::{
    compact_partition, ColdTarget, CompactOptions, CompactTarget, CompactionReport,
};
use crate::error::CompactorError;
use crate::retention::{apply_retention, Archive, RetentionReport};

/// `pyralog compactor`'s config file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StandaloneConfig {
    /// The bucket (and prefix) the nodes archive to.
    pub store: ObjectStoreConfig,
    /// Time between passes.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Unreferenced objects younger than this are kept.
    #[serde(with = "humantime_serde")]
    pub orphan_grace: Duration,
    /// Logs to work on; empty means every registered log.
    pub logs: Vec<String>,
    /// Apply each log's total retention to the archive as well.
    pub retention: bool,
    /// The logs' Iceberg tables (published after each pass).
    pub iceberg: TableSettings,
    /// The bucket's objects are under S3 Object Lock (the nodes' `[cold_tier] object_lock`):
    /// compaction and retention of the archive are refused, orphans kept.
    pub object_lock: Option<ObjectLockSettings>,
}

impl Default for StandaloneConfig {
    fn default() -> Self {
        StandaloneConfig {
            store: ObjectStoreConfig::default(),
            interval: Duration::from_secs(300),
            orphan_grace: Duration::from_secs(3600),
            logs: Vec::new(),
            retention: true,
            iceberg: TableSettings::default(),
            object_lock: None,
        }
    }
}

/// What one pass did for one partition.
#[derive(Debug, Clone)]
pub struct PartitionPass {
    pub log: LogId,
    pub partition: PartitionId,
    pub compaction: Result<CompactionReport, String>,
    pub retention: Option<RetentionReport>,
    pub orphans_deleted: usize,
}

/// A compactor bound to one bucket.
#[derive(Debug)]
pub struct StandaloneCompactor {
    config: StandaloneConfig,
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    manifests: ManifestStore,
    registry: LogRegistry,
    reader: Arc<ColdReader>,
    tables: IcebergTables,
}

impl StandaloneCompactor {
    /// Opens the store and checks that it answers (a wrong bucket or endpoint fails here).
    /// A config with `object_lock` needs [`StandaloneCompactor::open_with`].
    pub async fn open(config: StandaloneConfig) -> Result<Self, CompactorError> {
        Self::open_with(config, None).await
    }

    /// [`StandaloneCompactor::open`] with the bucket's write-once lock (S3 Object Lock, from
    /// `pyralog-object-lock`), which `object_lock` requires: with it, compaction and
    /// retention of the archive are refused and orphans kept.
    pub async fn open_with(
        config: StandaloneConfig,
        write_once: Option<Arc<dyn WriteOnce>>,
    ) -> Result<Self, CompactorError> {
        if let Some(lock) = &config.object_lock {
            lock.validate(&config.store).map_err(ColdError::Config)?;
            if write_once.is_none() {
                return Err(ColdError::Config(
                    "object_lock is set but no S3 Object Lock client was given".into(),
                )
                .into());
            }
        }
        let layout = config.store.layout()?;
        let store = open_store(&config.store)?;
        check_access(store.as_ref(), &layout).await?;
        // Opened even with publishing off: orphan collection keeps what tables list.
        let tables = IcebergTables::new(
            store.clone(),
            layout.clone(),
            base_uri(&config.store)?,
            config.iceberg.clone(),
        );
        let mut manifests = ManifestStore::new(store.clone(), layout.clone());
        if let Some(lock) = write_once {
            manifests = manifests.with_write_once(lock);
        }
        Ok(StandaloneCompactor {
            tables,
            manifests,
            registry: LogRegistry::new(store.clone(), layout.clone()),
            reader: Arc::new(ColdReader::new(store.clone())),
            store,
            layout,
            config,
        })
    }

    pub fn config(&self) -> &StandaloneConfig {
        &self.config
    }

    /// One pass over every selected log and partition; failures are reported per partition
    /// and retried by the next pass.
    pub async fn run_once(
        &self,
        now: TimestampMicros,
    ) -> Result<Vec<PartitionPass>, CompactorError> {
        let logs: Vec<(LogId, LogConfig)> = self.registry.list().await?;
        let mut out = Vec::new();
        for (log, config) in logs {
            if !self.config.logs.is_empty() && !self.config.logs.iter().any(|l| l == log.as_str()) {
                continue;
            }
            for p in 0..config.partition_count {
                out.push(self.partition_pass(&log, p, &config, now).await);
            }
        }
        Ok(out)
    }

    async fn partition_pass(
        &self,
        log: &LogId,
        partition: PartitionId,
        config: &LogConfig,
        now: TimestampMicros,
    ) -> PartitionPass {
        let mut pass = PartitionPass {
            log: log.clone(),
            partition,
            compaction: Ok(CompactionReport::default()),
            retention: None,
            orphans_deleted: 0,
        };
        let cold = match ColdPartition::open(
            log.clone(),
            partition,
            self.manifests.clone(),
            self.reader.clone(),
        )
        .await
        {
            Ok(c) => c,
            Err(e) => {
                pass.compaction = Err(format!("loading the manifest: {e}"));
                return pass;
            }
        };
        if config.compaction != CompactionMode::None {
            let target = CompactTarget {
                log,
                partition,
                config,
                hot: None,
                cold: Some(ColdTarget {
                    partition: &cold,
                    store: self.store.as_ref(),
                    layout: &self.layout,
                }),
            };
            pass.compaction = compact_partition(target, now, &CompactOptions::default())
                .await
                .map_err(|e| e.to_string());
            match &pass.compaction {
                Ok(r) if r.segments_rewritten() + r.cold_segments_removed > 0 => {
                    info!(%log, partition, records_before = r.records_before,
                        records_after = r.records_after, bytes_reclaimed = r.bytes_reclaimed(),
                        "compacted");
                }
                Ok(_) => {}
                Err(e) => warn!(%log, partition, error = %e, "compaction failed"),
            }
        }
        if self.config.retention {
            match apply_retention(None, Archive::Owned(&cold), config.retention, now).await {
                Ok(r) => pass.retention = Some(r),
                Err(e @ CompactorError::ObjectLock(_)) => {
                    warn!(%log, partition, error = %e, "retention refused: object_lock is set");
                }
                Err(e) => warn!(%log, partition, error = %e, "retention failed"),
            }
        }
        let manifest = cold.manifest();
        let published = if self.config.iceberg.enabled {
            self.tables
                .publish(log, std::slice::from_ref(&manifest), now / 1000)
                .await
                .map(drop)
        } else {
            Ok(())
        };
        let in_table = match published {
            Ok(()) => self.tables.referenced_keys(log, partition).await,
            Err(e) => Err(e),
        };
        let in_table = match in_table {
            Ok(keys) => keys,
            Err(e) => {
                warn!(%log, partition, error = %e, "Iceberg table not updated; no orphan GC");
                return pass;
            }
        };
        if self.manifests.write_once().is_some() {
            // Every orphan is a locked object: kept (see the module doc).
            return pass;
        }
        match gc_orphans(
            self.store.as_ref(),
            &self.layout,
            &manifest,
            &in_table,
            self.config.orphan_grace,
            now,
        )
        .await
        {
            Ok(deleted) => {
                if !deleted.is_empty() {
                    info!(%log, partition, objects = deleted.len(), "deleted orphaned objects");
                }
                pass.orphans_deleted = deleted.len();
            }
            Err(e) => warn!(%log, partition, error = %e, "orphan GC failed"),
        }
        pass
    }
}
