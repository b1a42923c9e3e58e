//! A damaged local segment stops the archiver at it, not before it: the segments before are
//! archived, local retention frees them, and the report names the damaged segment and the
//! first offset that cannot be read (nothing at or after it is archived).

mod common;

use pyralog_compactor::{archive_partition, ArchiveOptions};
use pyralog_types::{LogOffset, Retention};

const NOW: i64 = 10_000_000_000;

#[tokio::test]
async fn a_damaged_segment_is_reported_and_the_segments_before_it_are_archived_and_freed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hot = common::hot_log(dir.path(), NOW);
    // Four closed segments [0,10) .. [30,40) of one batch each; damage the third's records.
    common::closed_segments(&hot, 4, 1_000);
    let victim = dir.path().join("00000000000000000020.log");
    let mut bytes = std::fs::read(&victim).expect("read");
    let at = bytes.len() - 2;
    bytes[at] ^= 0x5a;
    std::fs::write(&victim, &bytes).expect("write");

    let c = common::Cold::new("ledger");
    let cold = c.partition().await;
    let opts = ArchiveOptions {
        local_retention: Some(Retention::Size(1)),
        ..ArchiveOptions::default()
    };
    for run in 0..2 {
        let r = archive_partition(c.tiers(&hot, &cold), LogOffset(40), &opts)
            .await
            .expect("a damaged segment is reported, not a failed run");
        let corrupt = r.corrupt.expect("the damaged segment is named");
        assert_eq!(corrupt.base_offset, LogOffset(20));
        assert_eq!(corrupt.offset, LogOffset(20));
        assert!(corrupt.detail.contains("corrupt"), "{}", corrupt.detail);
        if run == 0 {
            assert_eq!(r.uploaded.len(), 2, "the segments before the damage");
            assert_eq!(r.deleted_local.len(), 2, "and local retention frees them");
        } else {
            assert!(r.uploaded.is_empty() && r.deleted_local.is_empty());
        }
        assert_eq!(
            cold.end_offset(),
            Some(LogOffset(20)),
            "nothing past the damage"
        );
        assert_eq!(hot.start_offset(), LogOffset(20));
    }
}
