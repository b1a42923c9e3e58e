//! Putting segment objects in the bucket, and taking unreferenced ones out.
//!
//! An upload is idempotent: the key is derived from the segment's offsets (and compaction
//! generation), and the PUT is a create-if-absent. If the object is already there, the
//! upload checks that it is *ours* (same size and same Parquet footer, which holds every row
//! group's statistics and the segment metadata) and reports success; this is the retry after
//! a PUT that succeeded but reported failure. Anything else at that key is an error, never
//! overwritten. Transient failures are retried with capped exponential backoff.
//!
//! An uploaded object is invisible until a manifest names it. Objects that no manifest names
//! (a crash between upload and commit, a lost commit race, segments replaced by compaction)
//! are deleted by [`gc_orphans`] once older than a grace period, long enough that no reader
//! holding an older manifest can still be reading them.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use pyralog_types::{LogId, PartitionId, TimestampMicros};
use tracing::{debug, warn};

use crate::codec::EncodedSegment;
use crate::error::ColdError;
use crate::layout::Layout;
use crate::manifest::{ColdSegment, Manifest};

/// Bytes of the file tail compared when an object already exists at a segment's key.
const TAIL_CHECK_BYTES: u64 = 64 * 1024;

/// Bounded retries with capped exponential backoff.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total attempts, the first included (at least 1).
    pub attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How to upload a segment.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UploadOptions {
    /// Compaction generation of the segment (0 for a first upload); part of its key.
    pub generation: u64,
    pub retry: RetryPolicy,
}

/// Uploads an encoded segment and returns its manifest entry. The caller then commits a
/// manifest containing it (see [`crate::manifest::ManifestStore::commit`]).
pub async fn upload_segment(
    store: &dyn ObjectStore,
    layout: &Layout,
    log: &LogId,
    partition: PartitionId,
    encoded: &EncodedSegment,
    opts: &UploadOptions,
) -> Result<ColdSegment, ColdError> {
    let meta = &encoded.meta;
    let key = layout.segment_key(
        log,
        partition,
        meta.base_offset,
        meta.last_offset,
        opts.generation,
    );
    let attempts = opts.retry.attempts.max(1);
    let mut attempt = 0;
    loop {
        let put = PutOptions::from(PutMode::Create);
        let res = store
            .put_opts(&key, PutPayload::from(encoded.bytes.clone()), put)
            .await;
        let err = match res {
            Ok(_) => break,
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => match same_object(store, &key, &encoded.bytes).await {
                Ok(()) => {
                    debug!(%key, "segment already uploaded by an earlier attempt");
                    break;
                }
                Err(e @ ColdError::ObjectMismatch { .. }) => return Err(e),
                Err(e) => e,
            },
            Err(e) => ColdError::store("put", &key, e),
        };
        attempt += 1;
        if attempt >= attempts || !err.is_retriable() {
            return Err(err);
        }
        warn!(%key, attempt, error = %err, "segment upload failed; retrying");
        tokio::time::sleep(opts.retry.backoff(attempt - 1)).await;
    }
    Ok(ColdSegment {
        base_offset: meta.base_offset,
        last_offset: meta.last_offset,
        min_timestamp: meta.min_timestamp,
        max_timestamp: meta.max_timestamp,
        key: key.to_string(),
        size_bytes: encoded.bytes.len() as u64,
        record_count: meta.record_count,
        generation: opts.generation,
        last_epoch: meta.epochs.last().map_or(0, |e| e.epoch.0),
        bucket_seconds: 0,
    })
}

/// Whether the object at `key` is `ours`: same size and same tail (footer).
async fn same_object(
    store: &dyn ObjectStore,
    key: &Path,
    ours: &bytes::Bytes,
) -> Result<(), ColdError> {
    let head = store
        .head(key)
        .await
        .map_err(|e| ColdError::store("head", key, e))?;
    let len = ours.len() as u64;
    let mismatch = || ColdError::ObjectMismatch {
        path: key.to_string(),
        existing: head.size,
        ours: len,
    };
    if head.size != len {
        return Err(mismatch());
    }
    let from = len.saturating_sub(TAIL_CHECK_BYTES);
    let tail = store
        .get_range(key, from..len)
        .await
        .map_err(|e| ColdError::store("get", key, e))?;
    let start = usize::try_from(from).map_err(|_| mismatch())?;
    if tail.as_ref() != &ours[start..] {
        return Err(mismatch());
    }
    Ok(())
}

/// Deletes `.parquet` objects under the partition's directory that `manifest` does not name
/// and whose last modification is older than `grace` before `now`. Returns what was deleted.
/// `manifest` must be the latest committed one; objects younger than `grace` are always kept,
/// which covers uploads whose commit is still in flight.
pub async fn gc_orphans(
    store: &dyn ObjectStore,
    layout: &Layout,
    log: &LogId,
    partition: PartitionId,
    manifest: &Manifest,
    grace: Duration,
    now: TimestampMicros,
) -> Result<Vec<Path>, ColdError> {
    let dir = layout.partition_dir(log, partition);
    let grace_us = i64::try_from(grace.as_micros()).unwrap_or(i64::MAX);
    let cutoff = now.saturating_sub(grace_us);
    let named: std::collections::HashSet<&str> =
        manifest.segments.iter().map(|s| s.key.as_str()).collect();
    let listed: Vec<_> = store
        .list(Some(&dir))
        .try_collect()
        .await
        .map_err(|e| ColdError::store("list", &dir, e))?;
    let mut deleted = Vec::new();
    for obj in listed {
        let is_segment = obj.location.extension() == Some("parquet");
        let old = obj.last_modified.timestamp_micros() < cutoff;
        if !is_segment || !old || named.contains(obj.location.as_ref()) {
            continue;
        }
        match store.delete(&obj.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {
                debug!(key = %obj.location, "deleted orphan cold segment");
                deleted.push(obj.location);
            }
            Err(e) => return Err(ColdError::store("delete", &obj.location, e)),
        }
    }
    Ok(deleted)
}

#[cfg(test)]
mod tests;
