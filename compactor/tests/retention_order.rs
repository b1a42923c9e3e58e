//! Total retention with an archive deletes oldest first across both tiers: an expired local
//! segment the archiver has not reached yet stays until it is archived, so the archive and
//! the local log always join without a hole. (CI caught a reader jumping over such a hole
//! when retention ran between an upload and its commit.)

mod common;

use std::time::Duration;

use pyralog_compactor::{apply_retention, archive_partition, Archive, ArchiveOptions};
use pyralog_types::{LogOffset, Retention};

const NOW: i64 = 10_000_000_000;

#[tokio::test]
async fn expired_local_segments_wait_for_the_archive_and_the_tiers_stay_contiguous() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hot = common::hot_log(dir.path(), NOW);
    // Four closed segments [0,10) .. [30,40), all long expired, and the empty active one.
    common::closed_segments(&hot, 4, 1_000);
    let c = common::Cold::new("ledger");
    let cold = c.partition().await;
    let tiers = c.tiers(&hot, &cold);
    let opts = ArchiveOptions::default();
    archive_partition(tiers, LogOffset(20), &opts)
        .await
        .expect("archive the first two");
    assert_eq!(cold.end_offset(), Some(LogOffset(20)));
    let expire = Retention::Time(Duration::from_secs(1));

    // A follower's pass: the archive gates its local deletions but is not cut.
    let follower = apply_retention(Some(&hot), Archive::ReadOnly(&cold), expire, NOW)
        .await
        .expect("follower retention");
    assert_eq!(follower.cut, Some(LogOffset(20)));
    assert!(
        follower.removed.is_empty(),
        "a follower leaves the archive alone"
    );
    assert_eq!(cold.start_offset(), Some(LogOffset(0)));

    // The owner's pass: only the archived prefix goes, from both tiers.
    let r = apply_retention(Some(&hot), Archive::Owned(&cold), expire, NOW)
        .await
        .expect("retention");
    assert_eq!(r.cut, Some(LogOffset(20)), "unarchived segments wait");
    assert_eq!(r.removed.len(), 2);
    assert_eq!(hot.start_offset(), LogOffset(20));
    assert_eq!(cold.start_offset(), None);

    // The archiver then goes on exactly where the local log starts.
    archive_partition(tiers, LogOffset(40), &opts)
        .await
        .expect("archive the rest");
    let m = cold.manifest();
    assert_eq!(
        m.start_offset(),
        Some(LogOffset(20)),
        "no hole below the archive"
    );
    assert_eq!(m.end_offset(), Some(LogOffset(40)));

    let r = apply_retention(Some(&hot), Archive::Owned(&cold), expire, NOW)
        .await
        .expect("retention");
    assert_eq!(r.cut, Some(LogOffset(40)));
    assert_eq!(
        hot.start_offset(),
        LogOffset(40),
        "all but the active segment"
    );

    // Without an archive the local segments are the whole log and go at once.
    let plain_dir = tempfile::tempdir().expect("tempdir");
    let plain = common::hot_log(plain_dir.path(), NOW);
    common::closed_segments(&plain, 4, 1_000);
    let r = apply_retention(Some(&plain), Archive::Absent, expire, NOW)
        .await
        .expect("retention");
    assert_eq!(r.cut, Some(LogOffset(40)));
}
