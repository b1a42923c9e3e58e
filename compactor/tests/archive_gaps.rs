//! Archiving after compaction: a local segment whose tail (or whole content) compaction
//! removed is archived over its full range, so archiving moves on to the next segment.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use pyralog_cold_tier::{ColdPartition, ColdReader, Layout, ManifestStore};
use pyralog_compactor::{archive_partition, ArchiveOptions, PartitionTiers};
use pyralog_hot_tier::{PartitionLog, PartitionOptions};
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogId, LogOffset, ManualClock};

#[tokio::test]
async fn segments_emptied_or_cut_short_by_compaction_are_archived_over_their_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = PartitionOptions {
        segment_bytes: 1 << 20,
        segment_ms: Duration::from_secs(3600),
        index_interval_bytes: 256,
        max_index_bytes: 1 << 16,
        fsync: FsyncPolicy::Never,
    };
    let hot =
        Arc::new(PartitionLog::open(dir.path(), opts, ManualClock::new(1_000)).expect("open"));
    for _ in 0..3 {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..10 {
            b.push(&NewRecord {
                timestamp: 1_000 + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
            });
        }
        hot.append(b.build().expect("batch"), Epoch(1))
            .expect("append");
        hot.roll().expect("roll");
    }
    // [0,10) keeps 0..=4; [10,20) keeps nothing; [20,30) is untouched.
    hot.rewrite_segment(LogOffset(0), |r| {
        Some(r.into_iter().filter(|r| r.offset.0 < 5).collect())
    })
    .expect("rewrite")
    .expect("changed");
    hot.rewrite_segment(LogOffset(10), |_| Some(Vec::new()))
        .expect("rewrite")
        .expect("changed");

    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("a").expect("layout");
    let log = LogId::new("state").expect("log");
    let cold = ColdPartition::open(
        log.clone(),
        0,
        ManifestStore::new(store.clone(), layout.clone()),
        Arc::new(ColdReader::new(store.clone())),
    )
    .await
    .expect("cold");
    let tiers = PartitionTiers {
        log: &log,
        partition: 0,
        hot: &hot,
        cold: &cold,
        store: store.as_ref(),
        layout: &layout,
    };
    let report = archive_partition(tiers, LogOffset(30), &ArchiveOptions::default())
        .await
        .expect("archive");
    assert_eq!(
        report.uploaded.len(),
        2,
        "[0,10) and [20,30); [10,20) had nothing"
    );
    assert_eq!(cold.end_offset(), Some(LogOffset(30)));
    let m = cold.manifest();
    assert_eq!(
        (m.segments[0].base_offset, m.segments[0].last_offset),
        (LogOffset(0), LogOffset(9)),
        "the entry covers the segment's whole range"
    );
    // A second run has nothing left to do (it used to retry the cut-short range forever).
    let again = archive_partition(tiers, LogOffset(30), &ArchiveOptions::default())
        .await
        .expect("archive again");
    assert!(again.uploaded.is_empty());
}
