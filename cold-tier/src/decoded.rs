//! Decoded row groups in memory, decoded once, on a bounded pool.
//!
//! The chunk cache ([`crate::cache`]) saves the GET, but a row group's bytes still need
//! decompressing and Parquet decoding, which is most of a cold read's cost: a re-read from
//! the chunk cache was no faster than a cold one. [`DecodedCache`] keeps row groups
//! *decoded*, as Arrow record batches, so a warm re-read only copies rows into batches. It is
//! foyer's in-memory cache weighted by the batches' memory size; entries are keyed by object,
//! size and row group, and objects are immutable, so an entry never goes stale.
//!
//! A group is decoded once even when a reader and the decode-ahead of another read want it
//! at the same time ([`DecodedCache::get_or_decode`]: the second waits for the first).
//! [`DecodePool`] runs the decoding itself off the async workers, at most `concurrency` at a
//! time, so cold reads take a bounded share of the cores and never stall produce requests.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use arrow_array::RecordBatch;
use foyer::{Cache, CacheBuilder};
use parking_lot::Mutex;
use tokio::sync::{OnceCell, Semaphore};

use crate::error::ColdError;

/// `(object key, object size, row group)`.
pub(crate) type GroupKey = (String, u64, usize);

/// One row group's rows, decoded.
pub(crate) type DecodedGroup = Arc<[RecordBatch]>;

/// Decoded row groups, bounded by their memory size; cheap to clone (shared).
#[derive(Clone)]
pub(crate) struct DecodedCache {
    inner: Cache<GroupKey, DecodedGroup>,
    /// Groups being decoded: later askers wait on the same cell.
    decoding: Arc<Mutex<HashMap<GroupKey, Arc<OnceCell<DecodedGroup>>>>>,
}

impl std::fmt::Debug for DecodedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedCache")
            .field("usage", &self.inner.usage())
            .field("capacity", &self.inner.capacity())
            .field("decoding", &self.decoding.lock().len())
            .finish()
    }
}

impl DecodedCache {
    pub(crate) fn new(bytes: usize) -> Self {
        let inner = CacheBuilder::new(bytes.max(1024 * 1024))
            .with_weighter(|k: &GroupKey, v: &DecodedGroup| {
                k.0.len()
                    + v.iter()
                        .map(RecordBatch::get_array_memory_size)
                        .sum::<usize>()
            })
            .build();
        DecodedCache {
            inner,
            decoding: Arc::default(),
        }
    }

    pub(crate) fn get(&self, key: &GroupKey) -> Option<DecodedGroup> {
        self.inner.get(key).map(|e| e.value().clone())
    }

    /// Whether the group is decoded or being decoded.
    pub(crate) fn is_ready(&self, key: &GroupKey) -> bool {
        self.inner.contains(key) || self.decoding.lock().contains_key(key)
    }

    /// The group from memory, or from `decode` run once however many ask at the same time
    /// (a failed decode is not shared: the next asker tries again).
    pub(crate) async fn get_or_decode(
        &self,
        key: GroupKey,
        decode: impl Future<Output = Result<DecodedGroup, ColdError>>,
    ) -> Result<DecodedGroup, ColdError> {
        if let Some(group) = self.get(&key) {
            return Ok(group);
        }
        let cell = self.decoding.lock().entry(key.clone()).or_default().clone();
        let result = cell.get_or_try_init(|| decode).await.cloned();
        if let Ok(group) = &result {
            if self.decoding.lock().remove(&key).is_some() {
                self.inner.insert(key, group.clone());
            }
        } else {
            // Let the next asker start afresh (unless a retry already replaced the cell).
            let mut decoding = self.decoding.lock();
            if decoding.get(&key).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                decoding.remove(&key);
            }
        }
        result
    }
}

/// Runs CPU-bound work (Parquet decoding, rebuilding batches) on the blocking pool, at most
/// `concurrency` at a time; cheap to clone (shared).
#[derive(Debug, Clone)]
pub(crate) struct DecodePool {
    permits: Arc<Semaphore>,
}

impl DecodePool {
    pub(crate) fn new(concurrency: usize) -> Self {
        DecodePool {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
        }
    }

    pub(crate) async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> Result<T, ColdError> + Send + 'static,
    ) -> Result<T, ColdError> {
        let _permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ColdError::InvalidInput(format!("decode pool closed: {e}")))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ColdError::InvalidInput(format!("decode task failed: {e}")))?
    }
}
