//! The per-partition manifest: the only way a cold object becomes visible.
//!
//! A manifest lists a partition's cold segments in offset order. Readers never list the
//! bucket to find data; they read the manifest, so an uploaded-but-uncommitted object is
//! invisible and a half-finished upload can never be served.
//!
//! # Storage: one immutable object per version
//!
//! Version `n` is stored as `{prefix}/_manifests/log={log}/partition={p}/{n:020}.json` and is
//! written with `PutMode::Create` (`If-None-Match: *` on S3 and Azure, generation-match 0 on
//! GCS, a no-clobber link on a local folder). A commit of version `n + 1` therefore succeeds
//! for exactly one writer; the others get [`ColdError::ManifestConflict`]. The latest
//! manifest is the highest version listed. We chose this over overwriting one
//! `manifest.json` with `PutMode::Update` (If-Match) because create-only works on every
//! backend, including the local folder of `pyralog dev` (which has no `Update`), and because
//! it makes "the PUT succeeded but reported failure" decidable: the retry finds an object
//! with exactly our bytes and reports [`CommitOutcome::AlreadyCommitted`].
//!
//! Old versions are removed by [`ManifestStore::prune`], which always keeps the newest. A
//! writer whose expected version was pruned could re-create it, so every commit checks after
//! its PUT that no newer version exists, and reports a conflict if one does.
//!
//! With write-once storage ([`ManifestStore::with_write_once`], S3 Object Lock), each version
//! is locked right after its PUT, before the commit reports success; `prune` then only hides
//! old versions behind delete markers (see [`crate::write_once`]).
//!
//! # Invariants (checked on load and before commit)
//!
//! Segments are sorted by offset and do not overlap; each has `base <= last`, a positive
//! record count that fits its range, and `min_timestamp <= max_timestamp`. **Gaps between
//! segments are allowed**: key-based compaction and retention remove records, and readers
//! skip to the next segment.

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use pyralog_types::{LogId, LogOffset, PartitionId, TimestampMicros};
use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::ColdError;
use crate::layout::Layout;
use crate::write_once::WriteOnce;

/// Version of the manifest JSON format.
pub const MANIFEST_FORMAT_VERSION: u32 = 1;

/// One segment in the cold tier.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdSegment {
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    pub min_timestamp: TimestampMicros,
    pub max_timestamp: TimestampMicros,
    /// Object key in the bucket (full path, prefix included).
    pub key: String,
    pub size_bytes: u64,
    pub record_count: u64,
    /// Compaction generation: 0 as first uploaded, bumped by each rewrite of the range.
    pub generation: u64,
    /// Epoch of the segment's last record (0 in manifests written before this field). A node
    /// restored from the bucket starts above it, so new records never reuse an old epoch.
    #[serde(default)]
    pub last_epoch: u64,
    /// Bucket width in seconds of a time-series segment downsampled by compaction (0: raw
    /// records). A segment at a log's coarsest tier is never rewritten again.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub bucket_seconds: u64,
    /// Bytes at the object's end holding its footer (0: not known), so a reader fetches the
    /// footer in one GET, however large it is.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub footer_bytes: u64,
    /// A ledger log's object seal: chain start and end, Merkle root (see `codec::ledger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ledger: Option<crate::codec::LedgerSeal>,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl ColdSegment {
    /// The manifest entry of a segment file just uploaded to `key` (`size_bytes` long).
    pub fn uploaded(
        meta: &crate::codec::SegmentMeta,
        key: String,
        size_bytes: u64,
        generation: u64,
    ) -> Self {
        ColdSegment {
            base_offset: meta.base_offset,
            last_offset: meta.last_offset,
            min_timestamp: meta.min_timestamp,
            max_timestamp: meta.max_timestamp,
            key,
            size_bytes,
            record_count: meta.record_count,
            generation,
            last_epoch: meta.epochs.last().map_or(0, |e| e.epoch.0),
            bucket_seconds: 0,
            footer_bytes: meta.footer_bytes,
            ledger: meta.ledger,
        }
    }

    pub fn contains(&self, offset: LogOffset) -> bool {
        self.base_offset <= offset && offset <= self.last_offset
    }

    pub fn path(&self) -> Path {
        Path::from(self.key.as_str())
    }
}

/// The cold segments of one partition at one version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub log: LogId,
    pub partition: PartitionId,
    /// 1 for the first committed manifest, +1 for each commit (0: never committed).
    pub version: u64,
    pub segments: Vec<ColdSegment>,
    /// One past the last offset ever archived. Usually the last segment's end; it stays when
    /// compaction empties the newest segment, so archiving never goes back over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_end: Option<LogOffset>,
    /// When this version was committed (µs since the epoch, the committer's clock); absent
    /// in manifests written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub committed_at: Option<TimestampMicros>,
    /// SHA-256 (hex) of the previous version's stored bytes ([`Manifest::link_of`]): the
    /// versions of a partition form a hash chain, so an older version edited in place no
    /// longer links to the one after it (`pyralog ledger verify` checks the versions the
    /// bucket keeps). Absent in version 1 and in manifests written before this field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
}

impl Manifest {
    /// The empty manifest of a partition never archived: version 0, which is never stored.
    /// Edit it with [`Manifest::with_segment`] (or [`Manifest::next_version`]) and commit the
    /// result, version 1, with `expected = None`.
    pub fn new(log: LogId, partition: PartitionId) -> Self {
        Manifest {
            format_version: MANIFEST_FORMAT_VERSION,
            log,
            partition,
            version: 0,
            segments: Vec::new(),
            archived_end: None,
            committed_at: None,
            prev_hash: None,
        }
    }

    /// The next version of this manifest with `segment` appended after the last one.
    pub fn with_segment(&self, segment: ColdSegment) -> Result<Manifest, ColdError> {
        let mut next = self.next_version();
        next.segments.push(segment);
        next.archived_end = next.end_offset();
        next.validate().map_err(ColdError::InvalidInput)?;
        Ok(next)
    }

    /// A copy with `version + 1`, linked to this version ([`Manifest::prev_hash`]), to edit
    /// and commit.
    pub fn next_version(&self) -> Manifest {
        Manifest {
            version: self.version + 1,
            prev_hash: (self.version > 0).then(|| Manifest::link_of(&self.encode())),
            ..self.clone()
        }
    }

    /// The stored bytes of this version (what [`ManifestStore::commit`] writes).
    pub fn encode(&self) -> Vec<u8> {
        // A struct of strings and integers always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// The link to a stored version: hex SHA-256 of its bytes.
    pub fn link_of(stored: &[u8]) -> String {
        pyralog_ledger::to_hex(&sha2::Sha256::digest(stored).into())
    }

    /// One past the last archived offset (`None` when nothing was ever archived).
    pub fn end_offset(&self) -> Option<LogOffset> {
        // Saturating: `validate` rejects a segment ending at `u64::MAX`, but an unvalidated
        // edit (`with_segment` computes the end before validating) must not overflow.
        let last = self
            .segments
            .last()
            .map(|s| LogOffset(s.last_offset.0.saturating_add(1)));
        last.max(self.archived_end)
    }

    pub fn start_offset(&self) -> Option<LogOffset> {
        self.segments.first().map(|s| s.base_offset)
    }

    /// The segment to read for `offset`: the one containing it, or, when `offset` falls in a
    /// gap (compaction, retention), the first segment after it. Binary search.
    pub fn segment_for_offset(&self, offset: LogOffset) -> Option<&ColdSegment> {
        let i = self.segments.partition_point(|s| s.last_offset < offset);
        self.segments.get(i)
    }

    /// The first segment that may hold a record with `timestamp >= ts` (the offset-for-time
    /// lookup). Record timestamps are not monotonic, so this is the first segment whose
    /// `max_timestamp >= ts`; a binary search over the running maximum.
    pub fn segment_for_timestamp(&self, ts: TimestampMicros) -> Option<&ColdSegment> {
        let mut running = Vec::with_capacity(self.segments.len());
        let mut max = TimestampMicros::MIN;
        for s in &self.segments {
            max = max.max(s.max_timestamp);
            running.push(max);
        }
        let i = running.partition_point(|&m| m < ts);
        self.segments.get(i)
    }

    /// Checks the invariants of the module doc; `Err` says which one broke.
    pub fn validate(&self) -> Result<(), String> {
        if self.format_version != MANIFEST_FORMAT_VERSION {
            return Err(format!(
                "unsupported manifest format {}",
                self.format_version
            ));
        }
        if self.version == u64::MAX {
            return Err("version has no successor".into());
        }
        for (i, s) in self.segments.iter().enumerate() {
            // Its end (`last_offset + 1`) must exist: `end_offset` and every reader add one.
            if s.last_offset == LogOffset::MAX {
                return Err(format!(
                    "segment {i} ({}) ends at the largest offset",
                    s.key
                ));
            }
            if s.base_offset > s.last_offset {
                return Err(format!("segment {i} ({}) has base > last", s.key));
            }
            let span = s.last_offset.0 - s.base_offset.0;
            if s.record_count == 0 || s.record_count - 1 > span {
                return Err(format!(
                    "segment {i} ({}) has {} records for its range",
                    s.key, s.record_count
                ));
            }
            if s.min_timestamp > s.max_timestamp {
                return Err(format!(
                    "segment {i} ({}) has min_timestamp > max_timestamp",
                    s.key
                ));
            }
            if let Some(prev) = i.checked_sub(1).and_then(|p| self.segments.get(p)) {
                if prev.last_offset >= s.base_offset {
                    return Err(format!(
                        "segments {} and {} overlap or are out of order",
                        prev.key, s.key
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Which committed manifest object a [`Manifest`] was loaded from (its version number); the
/// `expected` argument of the next [`ManifestStore::commit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ManifestVersion(pub u64);

/// How a commit ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommitOutcome {
    /// This call wrote the new version.
    Committed(ManifestVersion),
    /// An earlier attempt of this same commit had already written it (its success was lost).
    AlreadyCommitted(ManifestVersion),
}

impl CommitOutcome {
    pub fn version(&self) -> ManifestVersion {
        match *self {
            CommitOutcome::Committed(v) | CommitOutcome::AlreadyCommitted(v) => v,
        }
    }
}

/// Loads and commits manifests in the bucket.
#[derive(Debug, Clone)]
pub struct ManifestStore {
    store: Arc<dyn ObjectStore>,
    layout: Layout,
    write_once: Option<Arc<dyn WriteOnce>>,
}

impl ManifestStore {
    pub fn new(store: Arc<dyn ObjectStore>, layout: Layout) -> Self {
        ManifestStore {
            store,
            layout,
            write_once: None,
        }
    }

    /// Locks every version this store commits with `lock`, and makes the
    /// [`crate::ColdPartition`]s opened over it lock every object a commit adds.
    pub fn with_write_once(mut self, lock: Arc<dyn WriteOnce>) -> Self {
        self.write_once = Some(lock);
        self
    }

    /// The write-once lock, when archived objects and manifests are locked.
    pub fn write_once(&self) -> Option<&Arc<dyn WriteOnce>> {
        self.write_once.as_ref()
    }

    /// Locks version `version` of a partition's manifest (nothing without write-once
    /// storage).
    pub async fn lock_version(
        &self,
        log: &LogId,
        partition: PartitionId,
        version: u64,
    ) -> Result<(), ColdError> {
        match &self.write_once {
            Some(lock) => {
                lock.lock(&self.layout.manifest_key(log, partition, version), None)
                    .await
            }
            None => Ok(()),
        }
    }

    /// Committed versions of a partition's manifest, ascending.
    pub async fn versions(
        &self,
        log: &LogId,
        partition: PartitionId,
    ) -> Result<Vec<u64>, ColdError> {
        let dir = self.layout.manifest_dir(log, partition);
        let metas: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(|e| ColdError::store("list", &dir, e))?;
        let mut v: Vec<u64> = metas
            .iter()
            .filter_map(|m| Layout::parse_manifest_version(&m.location))
            .collect();
        v.sort_unstable();
        Ok(v)
    }

    /// The latest committed manifest, or `None` if the partition has never been archived.
    pub async fn load(
        &self,
        log: &LogId,
        partition: PartitionId,
    ) -> Result<Option<(Manifest, ManifestVersion)>, ColdError> {
        let Some(&latest) = self.versions(log, partition).await?.last() else {
            return Ok(None);
        };
        let m = self.load_version(log, partition, latest).await?;
        Ok(Some((m, ManifestVersion(latest))))
    }

    async fn load_version(
        &self,
        log: &LogId,
        partition: PartitionId,
        version: u64,
    ) -> Result<Manifest, ColdError> {
        let key = self.layout.manifest_key(log, partition, version);
        let bytes = self.get(&key).await?;
        let m: Manifest =
            serde_json::from_slice(&bytes).map_err(|e| ColdError::corrupt(&key, e))?;
        m.validate()
            .map_err(|reason| ColdError::corrupt(&key, reason))?;
        if m.version != version || m.log != *log || m.partition != partition {
            return Err(ColdError::corrupt(
                &key,
                "manifest names another log, partition or version",
            ));
        }
        Ok(m)
    }

    async fn get(&self, key: &Path) -> Result<bytes::Bytes, ColdError> {
        let res = self
            .store
            .get(key)
            .await
            .map_err(|e| ColdError::store("get", key, e))?;
        res.bytes()
            .await
            .map_err(|e| ColdError::store("get", key, e))
    }

    /// The stored bytes of one version (`None` if the bucket does not hold it).
    pub async fn version_bytes(
        &self,
        log: &LogId,
        partition: PartitionId,
        version: u64,
    ) -> Result<Option<bytes::Bytes>, ColdError> {
        let key = self.layout.manifest_key(log, partition, version);
        match self.store.get(&key).await {
            Ok(res) => res
                .bytes()
                .await
                .map(Some)
                .map_err(|e| ColdError::store("get", &key, e)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(ColdError::store("get", &key, e)),
        }
    }

    /// Commits `new` as the version after `expected` (`None`: the first version). Exactly one
    /// of several racing writers succeeds; the others get [`ColdError::ManifestConflict`] and
    /// should reload. Repeating a commit whose answer was lost is safe.
    pub async fn commit(
        &self,
        log: &LogId,
        partition: PartitionId,
        new: &Manifest,
        expected: Option<ManifestVersion>,
    ) -> Result<CommitOutcome, ColdError> {
        let want = expected.map_or(1, |v| v.0 + 1);
        if new.version != want {
            return Err(ColdError::InvalidInput(format!(
                "manifest version {} does not follow expected {expected:?}",
                new.version
            )));
        }
        if new.log != *log || new.partition != partition {
            return Err(ColdError::InvalidInput(
                "manifest is for another partition".into(),
            ));
        }
        new.validate().map_err(ColdError::InvalidInput)?;
        let body = new.encode();
        let key = self.layout.manifest_key(log, partition, new.version);
        let conflict = || ColdError::ManifestConflict {
            log: log.clone(),
            partition,
            attempted: new.version,
        };
        let opts = PutOptions::from(PutMode::Create);
        let mut stored_version = None;
        let outcome = match self
            .store
            .put_opts(&key, PutPayload::from(body.clone()), opts)
            .await
        {
            Ok(put) => {
                stored_version = put.version;
                CommitOutcome::Committed(ManifestVersion(new.version))
            }
            Err(
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. },
            ) => {
                let existing = self.get(&key).await?;
                if existing.as_ref() != body.as_slice() {
                    return Err(conflict());
                }
                CommitOutcome::AlreadyCommitted(ManifestVersion(new.version))
            }
            Err(e) => return Err(ColdError::store("put", &key, e)),
        };
        // Locked before the commit reports success; a failure here leaves the version
        // unlocked, and the load that adopts it locks it (see `crate::write_once`).
        if let Some(lock) = &self.write_once {
            lock.lock(&key, stored_version.as_deref()).await?;
        }
        // A version above ours means ours re-created a pruned one: it is not the latest.
        if self
            .versions(log, partition)
            .await?
            .last()
            .is_some_and(|&v| v > new.version)
        {
            return Err(conflict());
        }
        Ok(outcome)
    }

    /// Deletes all but the newest `keep` (at least 1) versions; returns how many went.
    pub async fn prune(
        &self,
        log: &LogId,
        partition: PartitionId,
        keep: usize,
    ) -> Result<usize, ColdError> {
        let versions = self.versions(log, partition).await?;
        let drop = versions.len().saturating_sub(keep.max(1));
        for &v in &versions[..drop] {
            let key = self.layout.manifest_key(log, partition, v);
            match self.store.delete(&key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(ColdError::store("delete", &key, e)),
            }
        }
        Ok(drop)
    }
}

#[cfg(test)]
pub(crate) mod tests;
