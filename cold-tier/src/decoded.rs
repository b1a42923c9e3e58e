//! Decoded row groups in memory.
//!
//! The chunk cache ([`crate::cache`]) saves the GET, but a row group's bytes still need
//! decompressing and Parquet decoding, which is most of a cold read's cost: a re-read from
//! the chunk cache was no faster than a cold one. This cache keeps row groups *decoded*, as
//! Arrow record batches, so a warm re-read only copies rows into batches. It is foyer's
//! in-memory cache weighted by the batches' memory size; entries are keyed by object, size
//! and row group, and objects are immutable, so an entry never goes stale.

use std::sync::Arc;

use arrow_array::RecordBatch;
use foyer::{Cache, CacheBuilder};

/// `(object key, object size, row group)`.
pub(crate) type GroupKey = (String, u64, usize);

/// One row group's rows, decoded.
pub(crate) type DecodedGroup = Arc<[RecordBatch]>;

/// Decoded row groups, bounded by their memory size.
pub(crate) struct DecodedCache {
    inner: Cache<GroupKey, DecodedGroup>,
}

impl std::fmt::Debug for DecodedCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecodedCache")
            .field("usage", &self.inner.usage())
            .field("capacity", &self.inner.capacity())
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
        DecodedCache { inner }
    }

    pub(crate) fn get(&self, key: &GroupKey) -> Option<DecodedGroup> {
        self.inner.get(key).map(|e| e.value().clone())
    }

    pub(crate) fn insert(&self, key: GroupKey, group: DecodedGroup) {
        self.inner.insert(key, group);
    }
}
