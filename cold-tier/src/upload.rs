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

use bytes::Bytes;
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
    /// The wait before retry number `attempt + 1` (0-based): doubling from
    /// `initial_backoff`, capped at `max_backoff`.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX);
        self.initial_backoff
            .saturating_mul(factor)
            .min(self.max_backoff)
    }
}

/// How to upload a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadOptions {
    /// Compaction generation of the segment (0 for a first upload); part of its key.
    pub generation: u64,
    pub retry: RetryPolicy,
    /// Size of one part of a streamed upload ([`upload_streamed`]); a file no larger than
    /// one part is sent with a single PUT. S3 needs at least 5 MiB for every part but the last.
    pub part_bytes: usize,
    /// Parts of one streamed upload sent at once.
    pub max_parts_in_flight: usize,
}

impl Default for UploadOptions {
    fn default() -> Self {
        UploadOptions {
            generation: 0,
            retry: RetryPolicy::default(),
            part_bytes: 8 * 1024 * 1024,
            max_parts_in_flight: 2,
        }
    }
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
    put_create(store, &key, encoded.bytes.clone(), &opts.retry).await?;
    Ok(ColdSegment::uploaded(
        meta,
        key.to_string(),
        encoded.bytes.len() as u64,
        opts.generation,
    ))
}

/// One create-if-absent PUT of `bytes` at `key`, retried with backoff; an identical object
/// already there (the retry of a PUT whose success was lost) counts as success.
pub(crate) async fn put_create(
    store: &dyn ObjectStore,
    key: &Path,
    bytes: Bytes,
    retry: &RetryPolicy,
) -> Result<(), ColdError> {
    let attempts = retry.attempts.max(1);
    let mut attempt = 0;
    loop {
        let put = PutOptions::from(PutMode::Create);
        let res = store
            .put_opts(key, PutPayload::from(bytes.clone()), put)
            .await;
        let err = match res {
            Ok(_) => return Ok(()),
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let len = bytes.len() as u64;
                let tail_from = bytes.len().saturating_sub(TAIL_CHECK_BYTES as usize);
                match same_object(store, key, len, &bytes[tail_from..], None).await {
                    Ok(()) => {
                        debug!(%key, "segment already uploaded by an earlier attempt");
                        return Ok(());
                    }
                    Err(e @ ColdError::ObjectMismatch { .. }) => return Err(e),
                    Err(e) => e,
                }
            }
            Err(e) => ColdError::store("put", key, e),
        };
        attempt += 1;
        if attempt >= attempts || !err.is_retriable() {
            return Err(err);
        }
        warn!(%key, attempt, error = %err, "segment upload failed; retrying");
        tokio::time::sleep(retry.backoff(attempt - 1)).await;
    }
}

/// Whether the object at `key` is ours: `len` bytes (`size`, if the caller already has it
/// from a HEAD) ending in `tail`, the file's last bytes, which hold its footer: every row
/// group's statistics and the segment's metadata.
pub(crate) async fn same_object(
    store: &dyn ObjectStore,
    key: &Path,
    len: u64,
    tail: &[u8],
    size: Option<u64>,
) -> Result<(), ColdError> {
    let size = match size {
        Some(s) => s,
        None => {
            store
                .head(key)
                .await
                .map_err(|e| ColdError::store("head", key, e))?
                .size
        }
    };
    let mismatch = || ColdError::ObjectMismatch {
        path: key.to_string(),
        existing: size,
        ours: len,
    };
    if size != len {
        return Err(mismatch());
    }
    let from = len.saturating_sub(tail.len() as u64);
    let theirs = store
        .get_range(key, from..len)
        .await
        .map_err(|e| ColdError::store("get", key, e))?;
    if theirs.as_ref() != tail {
        return Err(mismatch());
    }
    Ok(())
}

/// Deletes `.parquet` objects under the directory of `manifest`'s partition that neither it nor
/// `also_keep` names and whose last modification is older than `grace` before `now`. Returns
/// what was deleted. `manifest` must be the latest committed one; objects younger than
/// `grace` are always kept, which covers uploads whose commit is still in flight. `also_keep`
/// holds the keys other readers may still open: the objects the kept snapshots of the log's
/// Iceberg table list (see `pyralog-lakehouse`).
pub async fn gc_orphans(
    store: &dyn ObjectStore,
    layout: &Layout,
    manifest: &Manifest,
    also_keep: &std::collections::HashSet<String>,
    grace: Duration,
    now: TimestampMicros,
) -> Result<Vec<Path>, ColdError> {
    let dir = layout.partition_dir(&manifest.log, manifest.partition);
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
        let key = obj.location.as_ref();
        if !is_segment || !old || named.contains(key) || also_keep.contains(key) {
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

mod stream;
pub use stream::{part_channel, upload_streamed, PartSink, PartStream};

#[cfg(test)]
mod tests;
