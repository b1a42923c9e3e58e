//! Archiving after compaction: a local segment whose tail (or whole content) compaction
//! removed is archived over its full range, so archiving moves on to the next segment.

mod common;

use pyralog_compactor::{archive_partition, ArchiveOptions};
use pyralog_types::LogOffset;

#[tokio::test]
async fn segments_emptied_or_cut_short_by_compaction_are_archived_over_their_range() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hot = common::hot_log(dir.path(), 1_000);
    common::closed_segments(&hot, 3, 1_000);
    // [0,10) keeps 0..=4; [10,20) keeps nothing; [20,30) is untouched.
    hot.rewrite_segment(LogOffset(0), |r| {
        Some(r.into_iter().filter(|r| r.offset.0 < 5).collect())
    })
    .expect("rewrite")
    .expect("changed");
    hot.rewrite_segment(LogOffset(10), |_| Some(Vec::new()))
        .expect("rewrite")
        .expect("changed");

    let c = common::Cold::new("state");
    let cold = c.partition().await;
    let tiers = c.tiers(&hot, &cold);
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
