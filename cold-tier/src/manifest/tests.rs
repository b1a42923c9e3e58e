use super::*;
use object_store::local::LocalFileSystem;
use object_store::memory::InMemory;

fn log() -> LogId {
    LogId::new("orders").expect("log")
}

pub(crate) fn seg(base: u64, last: u64) -> ColdSegment {
    ColdSegment {
        base_offset: LogOffset(base),
        last_offset: LogOffset(last),
        min_timestamp: base as i64 * 10,
        max_timestamp: last as i64 * 10,
        key: format!("log=orders/partition=0/{base:020}-{last:020}.parquet"),
        size_bytes: 100,
        record_count: last - base + 1,
        generation: 0,
        last_epoch: 0,
        bucket_seconds: 0,
        footer_bytes: 0,
        ledger: None,
    }
}

/// The same commit protocol checks against every backend.
async fn commit_race_suite(store: Arc<dyn ObjectStore>) {
    let ms = ManifestStore::new(store, Layout::new("cold").expect("layout"));
    assert!(ms.load(&log(), 0).await.expect("load").is_none());

    // First version: two writers race to create it; one wins.
    let a = Manifest::new(log(), 0).with_segment(seg(0, 9)).expect("a");
    assert_eq!(a.version, 1);
    let b = Manifest {
        segments: vec![seg(0, 19)],
        ..a.clone()
    };
    let first = ms.commit(&log(), 0, &a, None).await.expect("a wins");
    assert_eq!(first, CommitOutcome::Committed(ManifestVersion(1)));
    let lost = ms.commit(&log(), 0, &b, None).await.expect_err("b loses");
    assert!(
        matches!(lost, ColdError::ManifestConflict { attempted: 1, .. }),
        "{lost}"
    );
    assert!(lost.is_retriable());

    // Retrying the winner's own commit is recognised, not a conflict.
    let again = ms.commit(&log(), 0, &a, None).await.expect("idempotent");
    assert_eq!(again, CommitOutcome::AlreadyCommitted(ManifestVersion(1)));

    // Next versions: both writers loaded v1; the second to commit v2 loses.
    let (loaded, v1) = ms.load(&log(), 0).await.expect("load").expect("some");
    assert_eq!((loaded.clone(), v1), (a.clone(), ManifestVersion(1)));
    let w1 = loaded.with_segment(seg(10, 19)).expect("w1");
    let w2 = loaded.with_segment(seg(10, 29)).expect("w2");
    let l = log();
    let (r1, r2) = tokio::join!(
        ms.commit(&l, 0, &w1, Some(v1)),
        ms.commit(&l, 0, &w2, Some(v1))
    );
    assert!(r1.is_ok() != r2.is_ok(), "exactly one wins: {r1:?} {r2:?}");
    let (latest, v2) = ms.load(&log(), 0).await.expect("load").expect("some");
    assert_eq!(v2, ManifestVersion(2));
    assert!(latest == w1 || latest == w2);

    // A stale writer after pruning cannot resurrect an old version as the latest.
    let w3 = latest.with_segment(seg(40, 49)).expect("w3");
    ms.commit(&log(), 0, &w3, Some(v2)).await.expect("v3");
    assert_eq!(ms.prune(&log(), 0, 1).await.expect("prune"), 2);
    assert_eq!(ms.versions(&log(), 0).await.expect("versions"), vec![3]);
    let stale = a.with_segment(seg(10, 11)).expect("stale");
    let err = ms
        .commit(&log(), 0, &stale, Some(ManifestVersion(1)))
        .await
        .expect_err("stale");
    assert!(matches!(err, ColdError::ManifestConflict { .. }), "{err}");
    let (now, v) = ms.load(&log(), 0).await.expect("load").expect("some");
    assert_eq!((now, v), (w3, ManifestVersion(3)));
}

#[tokio::test]
async fn commit_races_in_memory() {
    commit_race_suite(Arc::new(InMemory::new())).await;
}

#[tokio::test]
async fn commit_races_on_local_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = LocalFileSystem::new_with_prefix(dir.path()).expect("fs");
    commit_race_suite(Arc::new(fs)).await;
}

#[tokio::test]
async fn corrupt_manifest_is_reported_not_served() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("").expect("layout");
    store
        .put(
            &layout.manifest_key(&log(), 0, 1),
            PutPayload::from_static(b"{not json"),
        )
        .await
        .expect("put");
    let err = ManifestStore::new(store, layout)
        .load(&log(), 0)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(err, ColdError::Corrupt { .. }) && !err.is_retriable(),
        "{err}"
    );
}

#[test]
fn invariants_and_lookups() {
    let mut m = Manifest::new(log(), 0);
    m.segments = vec![seg(0, 9), seg(20, 29), seg(30, 39)];
    // Timestamps out of order across segments.
    m.segments[2].min_timestamp = 100;
    m.segments[2].max_timestamp = 150;
    m.validate().expect("gaps are allowed");
    assert_eq!(
        m.segment_for_offset(LogOffset(5)).map(|s| s.base_offset.0),
        Some(0)
    );
    assert_eq!(
        m.segment_for_offset(LogOffset(12)).map(|s| s.base_offset.0),
        Some(20)
    );
    assert_eq!(
        m.segment_for_offset(LogOffset(39)).map(|s| s.base_offset.0),
        Some(30)
    );
    assert!(m.segment_for_offset(LogOffset(40)).is_none());
    assert_eq!(m.segment_for_timestamp(0).map(|s| s.base_offset.0), Some(0));
    assert_eq!(
        m.segment_for_timestamp(95).map(|s| s.base_offset.0),
        Some(20)
    );
    assert!(m.segment_for_timestamp(1000).is_none());
    assert_eq!(m.end_offset(), Some(LogOffset(40)));

    let overlap = Manifest {
        segments: vec![seg(0, 9), seg(9, 12)],
        ..m.clone()
    };
    assert!(overlap.validate().is_err());
    let unsorted = Manifest {
        segments: vec![seg(20, 29), seg(0, 9)],
        ..m.clone()
    };
    assert!(unsorted.validate().is_err());
    let mut too_many = seg(0, 9);
    too_many.record_count = 11;
    assert!(Manifest {
        segments: vec![too_many],
        ..m.clone()
    }
    .validate()
    .is_err());
    assert!(m.with_segment(seg(35, 50)).is_err());
}

/// Found by the `cold_manifest` fuzz target: a manifest (from the bucket) whose segment ends at
/// `u64::MAX` passed `validate`, and `end_offset` then overflowed (a panic in debug builds, a
/// wrapped end of 0 in release); a version of `u64::MAX` did the same in `next_version`.
#[test]
fn a_manifest_ending_at_the_largest_offset_or_version_is_invalid() {
    let mut m = Manifest::new(log(), 0).next_version();
    let mut s = seg(10, 20);
    s.last_offset = LogOffset::MAX;
    m.segments.push(s);
    assert!(m.validate().is_err());
    let mut m = Manifest::new(log(), 0);
    m.version = u64::MAX;
    assert!(m.validate().is_err());
}
