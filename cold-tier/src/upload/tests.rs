use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use pyralog_types::{Clock, LogOffset, SystemClock};

use super::*;
use crate::codec::tests::record;
use crate::codec::{encode_records, EncodeOptions};
use crate::fault::{Fault, FaultyStore, OpKind};

fn log() -> LogId {
    LogId::new("events").expect("log")
}

fn fast() -> UploadOptions {
    UploadOptions {
        generation: 0,
        retry: RetryPolicy {
            attempts: 4,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        ..UploadOptions::default()
    }
}

fn segment(base: u64, n: u64) -> EncodedSegment {
    let records: Vec<_> = (base..base + n)
        .map(|o| record(o, 1, o as i64, b"payload"))
        .collect();
    encode_records(&records, &EncodeOptions::default()).expect("encode")
}

async fn keys(store: &dyn ObjectStore) -> Vec<String> {
    let all: Vec<_> = store.list(None).try_collect().await.expect("list");
    all.into_iter().map(|m| m.location.to_string()).collect()
}

#[tokio::test]
async fn lost_success_then_retry_uploads_exactly_once() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let layout = Layout::new("cold").expect("layout");
    let enc = segment(100, 50);
    store.plan().inject(OpKind::Put, Fault::FailAfterPut, 1);
    let seg = upload_segment(&store, &layout, &log(), 2, &enc, &fast())
        .await
        .expect("upload");
    assert_eq!(
        seg.key,
        "cold/log=events/partition=2/00000000000000000100-00000000000000000149.parquet"
    );
    assert_eq!(
        (seg.record_count, seg.size_bytes),
        (50, enc.bytes.len() as u64)
    );
    assert_eq!(store.plan().stats().puts, 2, "one lost success, one retry");
    assert_eq!(keys(&store).await, vec![seg.key.clone()]);
    let stored = store
        .get(&seg.path())
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert_eq!(stored, enc.bytes);

    // Uploading the same segment again later is also a no-op success.
    let again = upload_segment(&store, &layout, &log(), 2, &enc, &fast())
        .await
        .expect("again");
    assert_eq!(again, seg);
}

#[tokio::test]
async fn transient_errors_are_retried_then_surface_as_retriable() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let layout = Layout::new("").expect("layout");
    store.plan().inject(OpKind::Put, Fault::Error, 2);
    store
        .plan()
        .inject(OpKind::Put, Fault::Timeout(Duration::from_millis(2)), 1);
    upload_segment(&store, &layout, &log(), 0, &segment(0, 10), &fast())
        .await
        .expect("4th attempt works");

    store.plan().inject(OpKind::Put, Fault::Error, 10);
    let err = upload_segment(&store, &layout, &log(), 0, &segment(10, 10), &fast())
        .await
        .expect_err("gives up");
    assert!(err.is_retriable(), "{err}");
    assert_eq!(keys(&store).await.len(), 1);
}

#[tokio::test]
async fn different_content_at_the_key_is_never_overwritten() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("").expect("layout");
    let enc = segment(0, 10);
    let key = layout.segment_key(&log(), 0, LogOffset(0), LogOffset(9), 0);
    store
        .put(&key, PutPayload::from_static(b"someone else's bytes"))
        .await
        .expect("put");
    let err = upload_segment(store.as_ref(), &layout, &log(), 0, &enc, &fast())
        .await
        .expect_err("mismatch");
    assert!(
        matches!(err, ColdError::ObjectMismatch { .. }) && !err.is_retriable(),
        "{err}"
    );

    // Same size, different bytes: caught by the footer comparison.
    let mut forged = enc.bytes.to_vec();
    let n = forged.len();
    forged[n - 20] ^= 0xff;
    store
        .put(&key, PutPayload::from(Bytes::from(forged)))
        .await
        .expect("put");
    let err = upload_segment(store.as_ref(), &layout, &log(), 0, &enc, &fast())
        .await
        .expect_err("mismatch");
    assert!(matches!(err, ColdError::ObjectMismatch { .. }), "{err}");

    // A compacted rewrite of the same range uses its own key.
    let g1 = UploadOptions {
        generation: 1,
        ..fast()
    };
    let seg = upload_segment(store.as_ref(), &layout, &log(), 0, &enc, &g1)
        .await
        .expect("gen 1");
    assert!(seg.key.ends_with("-g1.parquet"));
}

#[tokio::test]
async fn gc_deletes_only_old_unreferenced_segments() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("cold").expect("layout");
    let opts = fast();
    let kept = upload_segment(store.as_ref(), &layout, &log(), 0, &segment(0, 10), &opts)
        .await
        .expect("a");
    let orphan = upload_segment(store.as_ref(), &layout, &log(), 0, &segment(10, 10), &opts)
        .await
        .expect("b");
    let other_partition =
        upload_segment(store.as_ref(), &layout, &log(), 1, &segment(10, 10), &opts)
            .await
            .expect("c");
    let notes = layout.partition_dir(&log(), 0).join("README.txt");
    store
        .put(&notes, PutPayload::from_static(b"not a segment"))
        .await
        .expect("put");
    let manifest = Manifest::new(log(), 0)
        .with_segment(kept.clone())
        .expect("manifest");

    let grace = Duration::from_secs(3600);
    let now = SystemClock.now_micros();
    let nothing = std::collections::HashSet::new();
    let none = gc_orphans(store.as_ref(), &layout, &manifest, &nothing, grace, now)
        .await
        .expect("gc");
    assert!(
        none.is_empty(),
        "young orphans survive the grace period: {none:?}"
    );

    let later = now + 2 * 3600 * 1_000_000;
    // An object a kept table snapshot still lists is not an orphan yet.
    let listed = std::collections::HashSet::from([orphan.key.clone()]);
    let none = gc_orphans(store.as_ref(), &layout, &manifest, &listed, grace, later)
        .await
        .expect("gc");
    assert!(none.is_empty(), "a snapshot's object survives: {none:?}");
    let gone = gc_orphans(store.as_ref(), &layout, &manifest, &nothing, grace, later)
        .await
        .expect("gc");
    assert_eq!(gone, vec![orphan.path()]);
    let left = keys(store.as_ref()).await;
    assert!(left.contains(&kept.key) && left.contains(&other_partition.key));
    assert!(left.contains(&notes.to_string()));
    assert!(!left.contains(&orphan.key));
}
