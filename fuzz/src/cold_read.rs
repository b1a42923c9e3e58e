//! The node's cold read path: [`ColdReader`] over a segment object in a bucket (an in-memory
//! object store) holding the Parquet seed after the input's damage, or the input itself.
//!
//! What runs is what a fetch below the hot tier runs: the footer read from the object's tail
//! (the reader's first guess, the exact size the manifest records, or a size too small so it
//! must ask again), the row groups chosen by their offset statistics and fetched by ranged
//! GETs, then decoded into hot-format batches ([`ColdReader::read`], the `decode_row_groups`
//! path) or into Arrow slices ([`ColdReader::read_columns`], `decode_groups_arrow` and the
//! column slicer), without and with the decoded-row-group cache, and the timestamp lookup.
//! The chunk cache and read-ahead are left out: they only move the same bytes.
//!
//! Contract: no panic, also none inside a decode task (tokio would turn it into an error; the
//! parquet crate's own panics on malformed pages are caught where it is called and answered
//! as corrupt data, by design); every answer is well formed: whole batches with valid CRCs (or Arrow rows) whose offsets
//! lie in the segment, at or after the start and increasing, as many as `record_count` says,
//! and a `next_offset` past the last of them (past the start when there are none) and never
//! past the segment's end, so a consumer neither loops nor skips the next segment; a reader
//! whose decoded cache already holds the row groups answers as a fresh one did; a timestamp
//! lookup names an offset of the segment; and an undamaged object reads back exactly the
//! records that were encoded, from every start.

use std::sync::Arc;

use arrow_array::{Array, Int64Array, RecordBatch};
use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use pyralog_cold_tier::{ColdError, ColdRead, ColdReader, ColdSegment};
use pyralog_types::batch::split_batches;
use pyralog_types::{LogOffset, Record};

use crate::cold::{parquet_seed, parquet_seed_segment, seed_records};
use crate::damage::{apply, plan};

thread_local! {
    /// One runtime per fuzzing thread (decodes run on its blocking pool).
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
}

/// Where the reader starts: every offset of the seed segment and one past it.
fn starts(seg: &ColdSegment) -> impl Iterator<Item = LogOffset> {
    (seg.base_offset.0..=seg.last_offset.0 + 1).map(LogOffset)
}

/// `max_bytes` of the read starting at `start`: one byte (one batch), a little, a lot.
fn max_bytes(start: LogOffset) -> usize {
    [1, 300, 1 << 20][(start.0 % 3) as usize]
}

pub fn target(input: &[u8]) {
    let (plan, program) = plan(input);
    let (file, intact) = if plan.replace {
        (program.to_vec(), false)
    } else {
        let mut file = parquet_seed().to_vec();
        apply(&mut file, program);
        let intact = file == parquet_seed();
        (file, intact)
    };
    // The manifest entry of the seed, for whatever object the bucket now holds: the footer
    // size it records is the writer's (0: unknown, the reader guesses), or a few bytes (the
    // reader must fetch more), or the seed's.
    let mut seg = parquet_seed_segment().clone();
    seg.size_bytes = file.len() as u64;
    seg.footer_bytes = match plan.selector % 3 {
        0 => 0,
        1 => 8.min(seg.size_bytes),
        _ => seg.footer_bytes.min(seg.size_bytes),
    };
    if seg.size_bytes == 0 {
        return;
    }
    RUNTIME.with(|rt| rt.block_on(check(file, seg, intact)));
}

async fn check(file: Vec<u8>, seg: ColdSegment, intact: bool) {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    store
        .put(&seg.path(), PutPayload::from(Bytes::from(file)))
        .await
        .expect("in-memory put");
    let fresh = ColdReader::new(store.clone());
    let cached = ColdReader::new(store).with_decoded_cache(1 << 20);
    for start in starts(&seg) {
        let max = max_bytes(start);
        let read = fresh.read(&seg, start, max).await;
        let records = check_read(&seg, start, &read);
        if intact {
            let got = records.expect("an undamaged segment reads");
            expect_seed(start, &got, read.as_ref().map(|r| r.next_offset).ok());
        }
        // Twice through the decoded cache: decoding, then the decoded groups.
        for _ in 0..2 {
            let again = cached.read(&seg, start, max).await;
            check_read(&seg, start, &again);
            if let (Ok(a), Ok(b)) = (&read, &again) {
                assert_eq!(
                    a, b,
                    "a read through the decoded cache differs from a fresh one"
                );
            }
        }
        let columns = cached.read_columns(&seg, start, max).await;
        check_columns(&seg, start, &columns);
        if intact {
            let columns = columns.expect("an undamaged segment reads as columns");
            assert!(
                columns.record_count > 0 || start > seg.last_offset,
                "no rows from {start} of an undamaged segment"
            );
        }
    }
    let mut stamps = vec![i64::MIN, i64::MAX, seg.min_timestamp, seg.max_timestamp];
    stamps.push(seg.min_timestamp.saturating_add(3));
    for ts in stamps {
        match fresh.offset_for_timestamp(&seg, ts).await {
            Ok(Some(o)) => assert!(seg.contains(o), "timestamp {ts} found at {o}, outside"),
            Ok(None) => {}
            Err(e) => no_panic(&e),
        }
    }
}

/// A decode task that panicked shows up as an error (tokio's `JoinError`); that is a finding
/// like any panic. (Panics of the parquet crate on malformed pages are caught where it is
/// called and answered as corrupt data, by design: those are not findings.)
fn no_panic(e: &ColdError) {
    if let ColdError::Corrupt { what, reason } = e {
        assert!(
            !(what == "decode task" && reason.contains("panicked")),
            "a decode task panicked: {reason}"
        );
    }
}

/// The end of what a read from `start` may claim to have covered: the segment's end, or
/// `start` itself when it is past that.
fn limit(seg: &ColdSegment, start: LogOffset) -> u64 {
    (seg.last_offset.0 + 1).max(start.0)
}

/// Checks the offsets of an answer (in order) and its `next_offset`.
fn check_offsets(seg: &ColdSegment, start: LogOffset, offsets: &[u64], next: LogOffset) {
    let mut prev: Option<u64> = None;
    for &o in offsets {
        assert!(
            seg.contains(LogOffset(o)),
            "offset {o} is outside the segment"
        );
        assert!(o >= start.0, "offset {o} is before the start {start}");
        assert!(prev.is_none_or(|p| p < o), "offset {o} after {prev:?}");
        prev = Some(o);
    }
    let floor = prev.map_or(start.0, |p| p + 1);
    assert!(
        next.0 >= floor && (next.0 > start.0 || start.0 > seg.last_offset.0 || !offsets.is_empty()),
        "next_offset {next} from {start} after {offsets:?} makes no progress"
    );
    assert!(
        next.0 <= limit(seg, start),
        "next_offset {next} is past the segment's end {}",
        seg.last_offset
    );
}

/// The records of a hot-format answer, checked; `None` for an error.
fn check_read(
    seg: &ColdSegment,
    start: LogOffset,
    read: &Result<ColdRead, ColdError>,
) -> Option<Vec<Record>> {
    let r = match read {
        Ok(r) => r,
        Err(e) => {
            no_panic(e);
            return None;
        }
    };
    let mut records = Vec::new();
    for batch in split_batches(r.batches.clone()) {
        let batch = batch.expect("a cold read answers whole batches");
        batch
            .verify_crc()
            .expect("a cold read's batches have valid CRCs");
        records.extend(batch.records().expect("a cold read's batches decode"));
    }
    assert_eq!(records.len(), r.record_count, "record_count");
    let offsets: Vec<u64> = records.iter().map(|r| r.offset.0).collect();
    check_offsets(seg, start, &offsets, r.next_offset);
    Some(records)
}

/// Checks an Arrow answer's row count and offsets.
fn check_columns(
    seg: &ColdSegment,
    start: LogOffset,
    read: &Result<ColdRead<Vec<RecordBatch>>, ColdError>,
) {
    let r = match read {
        Ok(r) => r,
        Err(e) => return no_panic(e),
    };
    let mut offsets = Vec::new();
    for rb in &r.batches {
        let column = rb
            .column_by_name("offset")
            .and_then(|c| c.as_any().downcast_ref::<Int64Array>())
            .expect("an Int64 offset column");
        assert_eq!(column.null_count(), 0, "offsets are never null");
        offsets.extend(column.values().iter().map(|&o| o as u64));
    }
    assert_eq!(
        offsets.len(),
        r.record_count,
        "record_count of an Arrow read"
    );
    check_offsets(seg, start, &offsets, r.next_offset);
}

/// An undamaged segment's answer from `start` is the encoded records from there on, and its
/// `next_offset` skips none of those it did not return.
fn expect_seed(start: LogOffset, got: &[Record], next: Option<LogOffset>) {
    let want: Vec<&Record> = seed_records()
        .iter()
        .filter(|r| r.offset >= start)
        .collect();
    assert!(
        !got.is_empty() || want.is_empty(),
        "no records from {start} of an undamaged segment"
    );
    assert!(got.len() <= want.len(), "more records than were encoded");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, *w, "record read back differs from the encoded one");
    }
    if let (Some(next), Some(first_left)) = (next, want.get(got.len())) {
        assert!(
            next <= first_left.offset,
            "next_offset {next} skips record {}",
            first_left.offset
        );
    }
}
