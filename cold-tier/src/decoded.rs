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
    /// (a failed or cancelled decode is not shared: the next asker tries again).
    pub(crate) async fn get_or_decode(
        &self,
        key: GroupKey,
        decode: impl Future<Output = Result<DecodedGroup, ColdError>>,
    ) -> Result<DecodedGroup, ColdError> {
        if let Some(group) = self.get(&key) {
            return Ok(group);
        }
        match self.claim(key.clone(), false) {
            Some(claim) => claim.decode(decode).await,
            // Decoded meanwhile; evicted again in between is rare enough to decode alone.
            None => match self.get(&key) {
                Some(group) => Ok(group),
                None => decode.await,
            },
        }
    }

    /// Claims the groups of `keys` that are neither decoded nor being decoded, so that later
    /// planners see them as ready (a background decoder claims its whole list at once and
    /// no second decoder plans the same groups). A claim not decoded is released when dropped.
    pub(crate) fn claim_new(&self, keys: impl IntoIterator<Item = GroupKey>) -> Vec<Claim> {
        keys.into_iter()
            .filter_map(|key| self.claim(key, true))
            .collect()
    }

    /// The cell decoding `key`: joined if one exists (unless `only_new`), else created. None
    /// when the group is in memory already, or `only_new` and someone is decoding it.
    fn claim(&self, key: GroupKey, only_new: bool) -> Option<Claim> {
        let mut decoding = self.decoding.lock();
        // Checked under the lock: a finished decode moves its group into memory and out of
        // `decoding` under the same lock, so the group is always in one or the other.
        if self.inner.contains(&key) {
            return None;
        }
        let cell = match decoding.get(&key) {
            Some(_) if only_new => return None,
            Some(cell) => cell.clone(),
            None => {
                let cell = Arc::<OnceCell<DecodedGroup>>::default();
                decoding.insert(key.clone(), cell.clone());
                cell
            }
        };
        Some(Claim {
            cache: self.clone(),
            key,
            cell,
        })
    }
}

/// A share in decoding one row group. Whoever finishes the decode first puts the group in
/// memory; when the last holder of an undecoded claim goes (failed, cancelled or never
/// started), the claim is released, so no group stays "being decoded" forever.
pub(crate) struct Claim {
    cache: DecodedCache,
    key: GroupKey,
    cell: Arc<OnceCell<DecodedGroup>>,
}

impl Claim {
    pub(crate) fn key(&self) -> &GroupKey {
        &self.key
    }

    /// The group, decoded by `decode` unless another holder of the claim did it first.
    pub(crate) async fn decode(
        self,
        decode: impl Future<Output = Result<DecodedGroup, ColdError>>,
    ) -> Result<DecodedGroup, ColdError> {
        self.cell.get_or_try_init(|| decode).await.cloned()
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let mut decoding = self.cache.decoding.lock();
        if !decoding
            .get(&self.key)
            .is_some_and(|c| Arc::ptr_eq(c, &self.cell))
        {
            return;
        }
        if let Some(group) = self.cell.get() {
            self.cache.inner.insert(self.key.clone(), group.clone());
            decoding.remove(&self.key);
        } else if Arc::strong_count(&self.cell) == 2 {
            // Only the map and this claim hold the cell (clones are made under the lock).
            decoding.remove(&self.key);
        }
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
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| ColdError::InvalidInput(format!("decode pool closed: {e}")))?;
        // The permit goes with the work: a caller that gives up does not free a slot while
        // its work still runs.
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ColdError::Corrupt {
            what: "decode task".into(),
            reason: format!("decoding stopped: {e}"),
        })?
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    fn key(g: usize) -> GroupKey {
        ("obj".to_string(), 10, g)
    }

    fn group() -> DecodedGroup {
        Arc::from(Vec::<RecordBatch>::new())
    }

    #[tokio::test]
    async fn a_group_wanted_twice_at_once_is_decoded_once() {
        let cache = DecodedCache::new(1 << 20);
        let runs = AtomicUsize::new(0);
        let decode = || async {
            runs.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(group())
        };
        let (a, b) = tokio::join!(
            cache.get_or_decode(key(0), decode()),
            cache.get_or_decode(key(0), decode())
        );
        assert!(a.is_ok() && b.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert!(cache.get(&key(0)).is_some(), "kept in memory");
        assert!(cache.decoding.lock().is_empty());
    }

    #[tokio::test]
    async fn a_cancelled_or_failed_decode_leaves_the_group_to_the_next_asker() {
        let cache = DecodedCache::new(1 << 20);
        let slow = cache.get_or_decode(key(1), async {
            tokio::time::sleep(Duration::from_secs(60)).await;
            Ok(group())
        });
        assert!(tokio::time::timeout(Duration::from_millis(10), slow)
            .await
            .is_err());
        assert!(!cache.is_ready(&key(1)), "a cancelled decode is forgotten");

        let failed = cache
            .get_or_decode(key(1), async { Err(ColdError::InvalidInput("no".into())) })
            .await;
        assert!(failed.is_err());
        assert!(!cache.is_ready(&key(1)), "a failed decode is forgotten");
        let ok = cache.get_or_decode(key(1), async { Ok(group()) }).await;
        assert!(ok.is_ok());
        assert!(cache.is_ready(&key(1)));
    }

    #[tokio::test]
    async fn groups_claimed_by_one_decoder_are_not_planned_again_until_released() {
        let cache = DecodedCache::new(1 << 20);
        let claims = cache.claim_new([key(0), key(1), key(2)]);
        assert_eq!(claims.len(), 3);
        assert!(
            cache.claim_new([key(1), key(3)]).len() == 1,
            "only the unclaimed group (whose claim is released at once)"
        );
        let mut claims = claims.into_iter();
        let first = claims.next().expect("claim");
        first.decode(async { Ok(group()) }).await.expect("decoded");
        drop(claims);
        assert!(cache.is_ready(&key(0)));
        assert!(!cache.is_ready(&key(1)) && !cache.is_ready(&key(2)));
        assert_eq!(cache.claim_new([key(0), key(1)]).len(), 1);
    }

    #[tokio::test]
    async fn a_panic_while_decoding_is_an_error_and_frees_its_thread() {
        let pool = DecodePool::new(1);
        let err = pool
            .run::<()>(|| panic!("bad page"))
            .await
            .expect_err("panicked");
        assert!(matches!(err, ColdError::Corrupt { .. }), "{err:?}");
        assert_eq!(pool.run(|| Ok(7)).await.expect("runs"), 7);
    }
}
