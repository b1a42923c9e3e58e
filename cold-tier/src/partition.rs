//! One partition's cold tier as a node holds it: the committed manifest plus reads through it.
//!
//! [`ColdPartition`] keeps the latest committed manifest in memory, so a fetch finds its
//! segment with a binary search and no bucket round trip; every change goes through
//! [`ManifestStore::commit`] first and is adopted only once committed (readers never see an
//! object that a crash could leave unreferenced). The node leading a partition is its only
//! writer; a commit conflict (another writer, or a commit whose answer was lost) reloads the
//! manifest and re-applies the change when it still makes sense.
//!
//! With write-once storage (the [`ManifestStore`]'s [`crate::WriteOnce`]), every object a change
//! adds is locked before the change commits, and the manifest version a partition adopts by
//! opening or by reloading after a conflict is locked too (the order is in
//! [`crate::write_once`]).

use std::sync::Arc;

use arrow_array::RecordBatch;
use parking_lot::RwLock;
use pyralog_types::clock::Clock;
use pyralog_types::{LogId, LogOffset, PartitionId, TimestampMicros};
use tracing::info;

use crate::error::ColdError;
use crate::manifest::{ColdSegment, Manifest, ManifestStore, ManifestVersion};
use crate::reader::{ColdRead, ColdReader};

/// Commit attempts of one change before giving up (each conflict reloads first).
const COMMIT_ATTEMPTS: u32 = 5;

/// Told of every manifest a [`ColdPartition`] commits, right after the commit (the
/// lakehouse publisher derives the log's Iceberg table from them). Must not block.
pub trait ManifestObserver: Send + Sync + std::fmt::Debug {
    fn committed(&self, manifest: &Manifest);
}

/// The committed cold state of one partition.
#[derive(Debug)]
pub struct ColdPartition {
    log: LogId,
    partition: PartitionId,
    manifests: ManifestStore,
    reader: Arc<ColdReader>,
    current: RwLock<(Manifest, Option<ManifestVersion>)>,
    observer: Option<Arc<dyn ManifestObserver>>,
    /// Stamps each committed version (`Manifest::committed_at`).
    clock: Arc<dyn Clock>,
}

impl ColdPartition {
    /// Loads the latest committed manifest (an empty one if the partition was never archived).
    pub async fn open(
        log: LogId,
        partition: PartitionId,
        manifests: ManifestStore,
        reader: Arc<ColdReader>,
    ) -> Result<ColdPartition, ColdError> {
        let current = load(&manifests, &log, partition, None).await?;
        Ok(ColdPartition {
            log,
            partition,
            manifests,
            reader,
            current: RwLock::new(current),
            observer: None,
            clock: pyralog_types::clock::system(),
        })
    }

    /// Stamps commits with `clock` instead of the system clock.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Tells `observer` of every manifest this partition commits from now on.
    pub fn with_observer(mut self, observer: Arc<dyn ManifestObserver>) -> Self {
        self.observer = Some(observer);
        self
    }

    /// A copy of the committed manifest.
    pub fn manifest(&self) -> Manifest {
        self.current.read().0.clone()
    }

    /// First archived offset (`None`: nothing archived).
    pub fn start_offset(&self) -> Option<LogOffset> {
        self.current.read().0.start_offset()
    }

    /// One past the last archived offset (`None`: nothing archived).
    pub fn end_offset(&self) -> Option<LogOffset> {
        self.current.read().0.end_offset()
    }

    /// The write-once lock of the archive, when its objects are locked (S3 Object Lock):
    /// retention and compaction must then leave archived objects alone.
    pub fn write_once(&self) -> Option<&Arc<dyn crate::WriteOnce>> {
        self.manifests.write_once()
    }

    /// Epoch of the newest archived record (0 when unknown or nothing is archived).
    pub fn last_epoch(&self) -> u64 {
        self.current
            .read()
            .0
            .segments
            .iter()
            .map(|s| s.last_epoch)
            .max()
            .unwrap_or(0)
    }

    /// Commits `segment` after the archived ones. Idempotent: a segment already covered by
    /// the manifest (a retry after a lost answer) is accepted without a new version.
    pub async fn append_segment(&self, segment: ColdSegment) -> Result<(), ColdError> {
        self.change(|m| {
            if m.end_offset().is_some_and(|end| end > segment.last_offset) {
                return Ok(None);
            }
            m.with_segment(segment.clone()).map(Some)
        })
        .await
        .map(|_| ())
    }

    /// Records that everything below `end` is archived without adding a segment (a range
    /// compaction left empty). Idempotent; never moves the end back.
    pub async fn advance_archived_end(&self, end: LogOffset) -> Result<(), ColdError> {
        self.change(|m| {
            if m.end_offset().is_some_and(|e| e >= end) {
                return Ok(None);
            }
            let mut next = m.next_version();
            next.archived_end = Some(end);
            Ok(Some(next))
        })
        .await
        .map(|_| ())
    }

    /// Replaces the run of committed segments `old` (consecutive in the manifest, compared by
    /// object key) with `new` (sorted, inside the run's offset range, possibly fewer or none)
    /// in one commit: the swap of a compaction rewrite. A reader sees either every old segment
    /// or every new one. If the manifest no longer holds the run exactly (retention removed a
    /// part, another compactor swapped it), nothing is committed and `Ok(false)` says so; the
    /// new objects are then orphans for GC.
    pub async fn replace_run(
        &self,
        old: &[ColdSegment],
        new: &[ColdSegment],
    ) -> Result<bool, ColdError> {
        let (Some(first), Some(last)) = (old.first(), old.last()) else {
            return Ok(false);
        };
        if new
            .iter()
            .any(|s| s.base_offset < first.base_offset || s.last_offset > last.last_offset)
        {
            return Err(ColdError::InvalidInput(
                "a compacted segment lies outside the range it replaces".into(),
            ));
        }
        let mut stale = false;
        let changed = self
            .change(|m| {
                let at = m.segments.iter().position(|s| s.key == first.key);
                let holds_run = at.is_some_and(|i| {
                    m.segments.len() >= i + old.len()
                        && m.segments[i..i + old.len()]
                            .iter()
                            .zip(old)
                            .all(|(a, b)| a.key == b.key)
                });
                let Some(i) = at.filter(|_| holds_run) else {
                    stale = true;
                    return Ok(None);
                };
                let mut next = m.next_version();
                next.archived_end = m.end_offset();
                next.segments.splice(i..i + old.len(), new.iter().cloned());
                next.validate().map_err(ColdError::InvalidInput)?;
                Ok(Some(next))
            })
            .await?;
        Ok(changed && !stale)
    }

    /// Removes the `count(manifest)` oldest segments (re-evaluated on the manifest a conflict
    /// reloads). Returns the removed segments; their objects become orphans for GC.
    pub async fn remove_oldest(
        &self,
        count: impl Fn(&Manifest) -> usize,
    ) -> Result<Vec<ColdSegment>, ColdError> {
        let mut removed = Vec::new();
        self.change(|m| {
            let n = count(m).min(m.segments.len());
            if n == 0 {
                return Ok(None);
            }
            let mut next = m.next_version();
            next.archived_end = m.end_offset();
            removed = next.segments.drain(..n).collect();
            Ok(Some(next))
        })
        .await?;
        Ok(removed)
    }

    /// Applies `edit` to the committed manifest and commits the result; `Ok(None)` from
    /// `edit` means nothing to do. On a conflict the manifest is reloaded and `edit` re-run.
    async fn change(
        &self,
        mut edit: impl FnMut(&Manifest) -> Result<Option<Manifest>, ColdError>,
    ) -> Result<bool, ColdError> {
        let mut attempt = 0;
        loop {
            let (base, version) = self.current.read().clone();
            let Some(mut next) = edit(&base)? else {
                return Ok(false);
            };
            next.committed_at = Some(self.clock.now_micros());
            if let Some(lock) = self.manifests.write_once() {
                // Every object the new version names that the base did not: locked before
                // any committed manifest names it.
                for seg in &next.segments {
                    if !base.segments.iter().any(|s| s.key == seg.key) {
                        lock.lock(&seg.path(), None).await?;
                    }
                }
            }
            match self
                .manifests
                .commit(&self.log, self.partition, &next, version)
                .await
            {
                Ok(outcome) => {
                    if let Some(o) = &self.observer {
                        o.committed(&next);
                    }
                    *self.current.write() = (next, Some(outcome.version()));
                    return Ok(true);
                }
                Err(e @ ColdError::ManifestConflict { .. }) if attempt + 1 < COMMIT_ATTEMPTS => {
                    attempt += 1;
                    info!(log = %self.log, partition = self.partition, error = %e,
                        "manifest changed under us; reloading");
                    let reloaded =
                        load(&self.manifests, &self.log, self.partition, version).await?;
                    *self.current.write() = reloaded;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reloads the committed manifest from the bucket.
    pub async fn refresh(&self) -> Result<(), ColdError> {
        let known = self.current.read().1;
        let loaded = load(&self.manifests, &self.log, self.partition, known).await?;
        *self.current.write() = loaded;
        Ok(())
    }

    /// Reads from `from` on (or from the next archived offset after it, when `from` falls in
    /// a gap). `None` when nothing at or after `from` is archived. An offset below the first
    /// archived one (retention removed it) is [`ColdError::BelowStart`], never a silent skip.
    ///
    /// A segment object that is gone (another process compacted the range and collected the
    /// old object) makes the partition reload its manifest and read once more.
    pub async fn read(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<Option<ColdRead>, ColdError> {
        self.read_as(from, |reader, seg, start| async move {
            reader.read(&seg, start, max_bytes).await
        })
        .await
    }

    /// [`ColdPartition::read`] as Arrow record batches ([`ColdReader::read_columns`]).
    pub async fn read_columns(
        &self,
        from: LogOffset,
        max_bytes: usize,
    ) -> Result<Option<ColdRead<Vec<RecordBatch>>>, ColdError> {
        self.read_as(from, |reader, seg, start| async move {
            reader.read_columns(&seg, start, max_bytes).await
        })
        .await
    }

    async fn read_as<'a, B, F, Fut>(
        &'a self,
        from: LogOffset,
        read: F,
    ) -> Result<Option<B>, ColdError>
    where
        F: Fn(&'a ColdReader, ColdSegment, LogOffset) -> Fut,
        Fut: std::future::Future<Output = Result<B, ColdError>> + 'a,
    {
        match self.read_once(from, &read).await {
            Err(ColdError::Store {
                source: object_store::Error::NotFound { .. },
                ..
            }) => {
                self.refresh().await?;
                self.read_once(from, &read).await
            }
            other => other,
        }
    }

    async fn read_once<'a, B, F, Fut>(
        &'a self,
        from: LogOffset,
        read: &F,
    ) -> Result<Option<B>, ColdError>
    where
        F: Fn(&'a ColdReader, ColdSegment, LogOffset) -> Fut,
        Fut: std::future::Future<Output = Result<B, ColdError>> + 'a,
    {
        let seg = {
            let m = &self.current.read().0;
            if let Some(start) = m.start_offset().filter(|s| from < *s) {
                return Err(ColdError::BelowStart {
                    requested: from,
                    start,
                });
            }
            m.segment_for_offset(from).cloned()
        };
        let Some(seg) = seg else {
            return Ok(None);
        };
        let start = from.max(seg.base_offset);
        read(&self.reader, seg, start).await.map(Some)
    }

    /// The first archived offset with a record timestamp `>= ts`.
    pub async fn offset_for_timestamp(
        &self,
        ts: TimestampMicros,
    ) -> Result<Option<LogOffset>, ColdError> {
        let candidates: Vec<ColdSegment> = {
            let m = &self.current.read().0;
            let Some(first) = m.segment_for_timestamp(ts) else {
                return Ok(None);
            };
            m.segments
                .iter()
                .skip_while(|s| s.base_offset < first.base_offset)
                .filter(|s| s.max_timestamp >= ts)
                .cloned()
                .collect()
        };
        for seg in candidates {
            if let Some(o) = self.reader.offset_for_timestamp(&seg, ts).await? {
                return Ok(Some(o));
            }
        }
        Ok(None)
    }
}

/// The latest committed manifest. With write-once storage, a version other than `known` (the
/// one the caller holds) is locked before the caller adopts it: a version whose commit could
/// not lock it (see [`crate::write_once`]) is locked before anything builds on it.
async fn load(
    manifests: &ManifestStore,
    log: &LogId,
    partition: PartitionId,
    known: Option<ManifestVersion>,
) -> Result<(Manifest, Option<ManifestVersion>), ColdError> {
    Ok(match manifests.load(log, partition).await? {
        Some((m, v)) => {
            if known != Some(v) {
                manifests.lock_version(log, partition, v.0).await?;
            }
            (m, Some(v))
        }
        None => (Manifest::new(log.clone(), partition), None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{encode_records, EncodeOptions};
    use crate::layout::Layout;
    use crate::upload::{upload_segment, UploadOptions};
    use bytes::Bytes;
    use object_store::memory::InMemory;
    use object_store::ObjectStore;
    use pyralog_types::batch::split_batches;
    use pyralog_types::{Epoch, Record};

    fn rec(o: u64) -> Record {
        Record {
            offset: LogOffset(o),
            epoch: Epoch(2),
            timestamp: 1_000 + o as i64 * 10,
            key: Some(Bytes::from(format!("k{o}"))),
            value: Some(Bytes::from(vec![7u8; 100])),
            headers: Vec::new(),
        }
    }

    async fn archive(
        store: &Arc<dyn ObjectStore>,
        layout: &Layout,
        cold: &ColdPartition,
        range: std::ops::Range<u64>,
    ) -> ColdSegment {
        let recs: Vec<Record> = range.map(rec).collect();
        let enc = encode_records(&recs, &EncodeOptions::default()).expect("encode");
        let log = LogId::new("l").expect("id");
        let seg = upload_segment(
            store.as_ref(),
            layout,
            &log,
            0,
            &enc,
            &UploadOptions::default(),
        )
        .await
        .expect("upload");
        cold.append_segment(seg.clone()).await.expect("commit");
        seg
    }

    #[tokio::test]
    async fn commits_are_adopted_reads_follow_them_and_retries_are_idempotent() {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = Layout::new("t").expect("layout");
        let manifests = ManifestStore::new(store.clone(), layout.clone());
        let reader = Arc::new(ColdReader::new(store.clone()));
        let log = LogId::new("l").expect("id");
        let cold = ColdPartition::open(log.clone(), 0, manifests.clone(), reader.clone())
            .await
            .expect("open");
        assert_eq!(cold.end_offset(), None);
        let first = archive(&store, &layout, &cold, 0..50).await;
        archive(&store, &layout, &cold, 50..80).await;
        cold.append_segment(first)
            .await
            .expect("a retried commit is a no-op");
        assert_eq!(cold.end_offset(), Some(LogOffset(80)));
        assert_eq!(cold.last_epoch(), 2);

        // A second holder of the same partition sees the commits after loading.
        let other = ColdPartition::open(log, 0, manifests, reader)
            .await
            .expect("open");
        assert_eq!(other.manifest(), cold.manifest());

        let read = cold
            .read(LogOffset(60), 1 << 20)
            .await
            .expect("read")
            .expect("some");
        let got: Vec<u64> = split_batches(read.batches)
            .flat_map(|b| b.expect("batch").records().expect("records"))
            .map(|r| r.offset.0)
            .collect();
        assert_eq!(got, (60..80).collect::<Vec<_>>());
        assert_eq!(cold.read(LogOffset(80), 100).await.expect("read"), None);
        assert_eq!(
            cold.offset_for_timestamp(1_000 + 555)
                .await
                .expect("lookup"),
            Some(LogOffset(56))
        );

        let removed = cold
            .remove_oldest(|m| {
                m.segments
                    .iter()
                    .take_while(|s| s.last_offset < LogOffset(60))
                    .count()
            })
            .await
            .expect("retention");
        assert_eq!(removed.len(), 1);
        assert_eq!(cold.start_offset(), Some(LogOffset(50)));
        // The stale holder conflicts, reloads, and its change still applies on the new base.
        other.refresh().await.expect("refresh");
        assert_eq!(other.start_offset(), Some(LogOffset(50)));
    }
}

#[cfg(test)]
mod swap_tests {
    use object_store::memory::InMemory;
    use object_store::ObjectStore;

    use super::*;
    use crate::layout::Layout;
    use crate::manifest::tests::seg;

    async fn partition() -> ColdPartition {
        let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let layout = Layout::new("cold").expect("layout");
        let log = LogId::new("orders").expect("log");
        ColdPartition::open(
            log,
            0,
            ManifestStore::new(store.clone(), layout),
            Arc::new(ColdReader::new(store)),
        )
        .await
        .expect("open")
    }

    fn compacted(base: u64, last: u64, count: u64) -> ColdSegment {
        ColdSegment {
            record_count: count,
            generation: 1,
            key: format!("log=orders/partition=0/{base:020}-{last:020}-g1.parquet"),
            ..seg(base, last)
        }
    }

    #[tokio::test]
    async fn a_run_is_swapped_in_one_commit_and_the_archived_end_stays() {
        let p = partition().await;
        for (b, l) in [(0, 9), (10, 19), (20, 29)] {
            p.append_segment(seg(b, l)).await.expect("append");
        }
        let m = p.manifest();
        // [10,19] and [20,29] become one compacted segment; then the newest one is emptied.
        let merged = compacted(12, 27, 3);
        assert!(p
            .replace_run(&m.segments[1..3], std::slice::from_ref(&merged))
            .await
            .expect("swap"));
        let after = p.manifest();
        assert_eq!(after.segments, vec![seg(0, 9), merged.clone()]);
        assert_eq!(after.version, m.version + 1);
        assert!(p
            .replace_run(std::slice::from_ref(&merged), &[])
            .await
            .expect("empty"));
        assert_eq!(
            p.end_offset(),
            Some(LogOffset(30)),
            "archiving continues at 30"
        );
        // Appending past the kept end still works; a stale run commits nothing.
        p.append_segment(seg(30, 39)).await.expect("append");
        assert!(!p.replace_run(&m.segments[1..2], &[]).await.expect("stale"));
        // Outside the replaced range is a caller bug, refused before any commit.
        let v = p.manifest().version;
        let err = p
            .replace_run(&[seg(30, 39)], &[compacted(25, 39, 1)])
            .await
            .expect_err("outside");
        assert!(matches!(err, ColdError::InvalidInput(_)), "{err}");
        assert_eq!(p.manifest().version, v);
    }

    #[tokio::test]
    async fn reading_below_the_archive_start_is_an_error_not_a_skip() {
        let p = partition().await;
        for (b, l) in [(0, 9), (10, 19)] {
            p.append_segment(seg(b, l)).await.expect("append");
        }
        p.remove_oldest(|_| 1).await.expect("retention");
        match p.read(LogOffset(3), 1024).await {
            Err(ColdError::BelowStart { requested, start }) => {
                assert_eq!((requested, start), (LogOffset(3), LogOffset(10)));
            }
            other => panic!("expected BelowStart, got {other:?}"),
        }
    }
}
