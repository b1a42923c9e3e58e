//! The cold read cache: row-group bytes in memory, spilling to a local disk file.
//!
//! Catch-up consumers read the same Parquet row groups more than once (several consumers of
//! one log, a consumer restarting), and a sequential reader wants the *next* row group
//! before it asks. Both are served from here: [`crate::ColdReader`] looks up every row group
//! it needs before issuing ranged GETs, inserts what it fetched, and prefetches the row
//! groups after a read in the background. The cache is foyer's hybrid cache: a byte-weighted
//! in-memory tier in front of a block engine on a local file, so a warm working set larger
//! than memory still avoids the object store.
//!
//! A key names an object *and its size* plus a byte range; objects are immutable (a rewrite
//! gets a new key), so an entry can never go stale. Cache failures are misses, never errors.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use foyer::{BlockEngineConfig, DeviceBuilder, FsDeviceBuilder, HybridCache, HybridCacheBuilder};
use serde::{Deserialize, Serialize};
use tracing::debug;

use crate::error::ColdError;

/// Sizes and place of the read cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CacheSettings {
    /// In-memory tier, bytes.
    pub memory_bytes: usize,
    /// Disk tier, bytes (0: memory only is not supported by the block engine; use a small
    /// value to keep the disk tier tiny).
    pub disk_bytes: usize,
    /// Directory of the disk tier's file; `None`: `<data_dir>/cold-cache`.
    pub dir: Option<PathBuf>,
    /// Row groups fetched ahead of a sequential reader, at least (0 turns read-ahead off).
    pub readahead_row_groups: usize,
    /// Parquet bytes fetched ahead of a sequential reader, at least: the read-ahead window
    /// is fetched three quarters of a window at a time, in one ranged-GET call.
    pub readahead_bytes: u64,
    /// Row groups kept decoded in memory, bytes (0 turns it off): a re-read skips the
    /// Parquet decode ([`crate::ColdReader::with_decoded_cache`]).
    pub decoded_bytes: usize,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            memory_bytes: 64 * 1024 * 1024,
            disk_bytes: 1024 * 1024 * 1024,
            dir: None,
            readahead_row_groups: 2,
            readahead_bytes: 8 * 1024 * 1024,
            decoded_bytes: 128 * 1024 * 1024,
        }
    }
}

impl CacheSettings {
    /// The read-ahead window these settings ask for.
    pub fn readahead(&self) -> crate::reader::Readahead {
        crate::reader::Readahead {
            groups: self.readahead_row_groups,
            bytes: self.readahead_bytes,
        }
    }
}

/// Hit and miss counters, for metrics and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    pub inserted_bytes: u64,
}

/// Row-group bytes by `(object, size, range)`.
pub struct ChunkCache {
    inner: HybridCache<String, Bytes>,
    hits: AtomicU64,
    misses: AtomicU64,
    inserted_bytes: AtomicU64,
}

impl std::fmt::Debug for ChunkCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChunkCache")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl ChunkCache {
    /// Opens (creating) the cache with its disk file under `dir`.
    pub async fn open(
        settings: &CacheSettings,
        dir: PathBuf,
    ) -> Result<Arc<ChunkCache>, ColdError> {
        let bad = |e: &dyn std::fmt::Display| {
            ColdError::Config(format!("read cache in {}: {e}", dir.display()))
        };
        std::fs::create_dir_all(&dir).map_err(|e| bad(&e))?;
        let device = FsDeviceBuilder::new(&dir)
            .with_capacity(settings.disk_bytes.max(16 * 1024 * 1024))
            .build()
            .map_err(|e| bad(&e))?;
        let inner = HybridCacheBuilder::new()
            .with_name("pyralog-cold")
            .memory(settings.memory_bytes.max(1024 * 1024))
            .with_weighter(|k: &String, v: &Bytes| k.len() + v.len())
            .storage()
            .with_engine_config(BlockEngineConfig::new(device))
            .build()
            .await
            .map_err(|e| bad(&e))?;
        Ok(Arc::new(ChunkCache {
            inner,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            inserted_bytes: AtomicU64::new(0),
        }))
    }

    /// The cache key of bytes `start..end` of object `key` of `size` bytes.
    pub fn key(object: &str, size: u64, start: u64, end: u64) -> String {
        format!("{object}#{size}#{start}-{end}")
    }

    pub async fn get(&self, key: &str) -> Option<Bytes> {
        let found = match self.inner.get(key).await {
            Ok(e) => e.map(|e| e.value().clone()),
            Err(e) => {
                debug!(key, error = %e, "read cache lookup failed; treating as a miss");
                None
            }
        };
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Whether `key` is in the memory tier or possibly on disk (no I/O).
    pub fn may_contain(&self, key: &str) -> bool {
        self.inner.contains(key)
    }

    pub fn insert(&self, key: String, value: Bytes) {
        self.inserted_bytes
            .fetch_add(value.len() as u64, Ordering::Relaxed);
        self.inner.insert(key, value);
    }

    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
            inserted_bytes: self.inserted_bytes.load(Ordering::Relaxed),
        }
    }

    /// Flushes and closes the disk tier (on node shutdown).
    pub async fn close(&self) {
        if let Err(e) = self.inner.close().await {
            debug!(error = %e, "closing the read cache failed");
        }
    }
}
