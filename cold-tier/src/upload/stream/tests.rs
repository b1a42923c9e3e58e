use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pyralog_types::{LogId, LogOffset, Record};

use super::*;
use crate::codec::tests::{incompressible, record};
use crate::codec::{encode_records, EncodeOptions, SegmentWriter};
use crate::fault::{Fault, FaultyStore, OpKind};
use crate::layout::Layout;
use crate::upload::RetryPolicy;

const PART: usize = 64 * 1024;

fn opts() -> UploadOptions {
    UploadOptions {
        part_bytes: PART,
        retry: RetryPolicy {
            attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        },
        ..UploadOptions::default()
    }
}

fn small_row_groups() -> EncodeOptions {
    EncodeOptions {
        row_group_bytes: 16 * 1024,
        ..EncodeOptions::default()
    }
}

/// Records whose values do not compress, so the file is about their size.
fn records(n: u64) -> Vec<Record> {
    (0..n)
        .map(|o| {
            let mut x = o.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let value = incompressible(&mut x, 200);
            record(o, 1, o as i64, &value)
        })
        .collect()
}

fn key() -> Path {
    let log = LogId::new("events").expect("log");
    Layout::new("cold")
        .expect("layout")
        .segment_key(&log, 0, LogOffset(0), LogOffset(99), 0)
}

/// Encodes `records` through a [`SegmentWriter`] into a part sink on a blocking thread while
/// [`upload_streamed`] uploads it; returns both sides' results.
async fn stream(
    store: &dyn ObjectStore,
    records: Vec<Record>,
    opts: &UploadOptions,
) -> (Result<(), ColdError>, Result<u64, ColdError>) {
    let (sink, parts) = part_channel(opts);
    let encoder = tokio::task::spawn_blocking(move || {
        let mut w = SegmentWriter::new(sink, &small_row_groups())?;
        for r in records {
            w.push(r)?;
        }
        let (sink, _meta) = w.finish()?;
        sink.finish()
            .map_err(|e| ColdError::InvalidInput(e.to_string()))
    });
    let uploaded = upload_streamed(store, &key(), parts, opts).await;
    (encoder.await.expect("join"), uploaded)
}

async fn stored(store: &dyn ObjectStore) -> Bytes {
    store
        .get(&key())
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes")
}

#[tokio::test]
async fn a_file_larger_than_a_part_arrives_byte_for_byte_as_the_in_memory_encoding() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let recs = records(2_000);
    let whole = encode_records(&recs, &small_row_groups()).expect("encode");
    assert!(whole.bytes.len() > 4 * PART, "{} bytes", whole.bytes.len());

    let (encoded, uploaded) = stream(&store, recs, &opts()).await;
    encoded.expect("encoder");
    assert_eq!(uploaded.expect("upload"), whole.bytes.len() as u64);
    assert_eq!(stored(&store).await, whole.bytes);
}

#[tokio::test]
async fn a_file_within_one_part_is_a_single_create_if_absent_put() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let recs = records(20);
    let whole = encode_records(&recs, &small_row_groups()).expect("encode");
    assert!(whole.bytes.len() < PART);

    let (encoded, uploaded) = stream(&store, recs.clone(), &opts()).await;
    encoded.expect("encoder");
    assert_eq!(uploaded.expect("upload"), whole.bytes.len() as u64);
    assert_eq!(store.plan().stats().puts, 1);
    assert_eq!(stored(&store).await, whole.bytes);

    // The same file again (a retry after a lost success) is success without a write.
    let (_, again) = stream(&store, recs, &opts()).await;
    assert_eq!(again.expect("again"), whole.bytes.len() as u64);

    // Another file at the key is refused, never overwritten.
    let (_, other) = stream(&store, records(21), &opts()).await;
    assert!(
        matches!(other, Err(ColdError::ObjectMismatch { .. })),
        "{other:?}"
    );
    assert_eq!(stored(&store).await, whole.bytes);
}

#[tokio::test]
async fn a_multipart_retry_compares_with_the_object_instead_of_writing_it_again() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let recs = records(2_000);
    let (_, first) = stream(&store, recs.clone(), &opts()).await;
    let len = first.expect("first");
    let etag = store.head(&key()).await.expect("head").e_tag;
    store.plan().reset_stats();

    let (encoded, again) = stream(&store, recs.clone(), &opts()).await;
    encoded.expect("encoder");
    assert_eq!(again.expect("again"), len);
    assert_eq!(store.plan().stats().puts, 0, "nothing written");
    assert_eq!(store.head(&key()).await.expect("head").e_tag, etag);

    // Same size, one byte different in the footer: a mismatch, and the object stays.
    let mut forged = stored(&store).await.to_vec();
    let n = forged.len();
    forged[n - 30] ^= 0xff;
    let forged = Bytes::from(forged);
    store
        .put(&key(), PutPayload::from(forged.clone()))
        .await
        .expect("put");
    let (_, mismatch) = stream(&store, recs, &opts()).await;
    assert!(
        matches!(mismatch, Err(ColdError::ObjectMismatch { .. })),
        "{mismatch:?}"
    );
    assert_eq!(stored(&store).await, forged);
}

#[tokio::test]
async fn an_encoder_that_stops_midway_leaves_no_object() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let (sink, parts) = part_channel(&opts());
    let writer = tokio::task::spawn_blocking(move || {
        let mut sink = sink;
        sink.write_all(&vec![7u8; 3 * PART + 10]).expect("write");
        // Dropped without `finish`: the file never reaches its end.
    });
    let res = upload_streamed(&store, &key(), parts, &opts()).await;
    writer.await.expect("join");
    assert!(matches!(res, Err(ColdError::Incomplete { .. })), "{res:?}");
    assert!(!res.as_ref().is_err_and(ColdError::is_retriable));
    let listed: Vec<_> = futures::TryStreamExt::try_collect(store.list(None))
        .await
        .expect("list");
    assert!(listed.is_empty(), "{listed:?}");
}

#[tokio::test]
async fn a_failing_upload_stops_the_encoder_instead_of_blocking_it() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    store.plan().inject(OpKind::Put, Fault::Error, 1);
    let (encoded, uploaded) = stream(&store, records(2_000), &opts()).await;
    let err = uploaded.expect_err("upload fails");
    assert!(err.is_retriable(), "{err}");
    let enc = encoded.expect_err("the encoder sees the closed pipe");
    assert!(enc.to_string().contains("stopped"), "{enc}");
}
