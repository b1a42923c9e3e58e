use std::time::Duration;

use object_store::memory::InMemory;
use object_store::PutPayload;
use pyralog_types::batch::split_batches;
use pyralog_types::LogId;

use super::*;
use crate::codec::tests::{incompressible, record};
use crate::codec::{encode_records, EncodeOptions};
use crate::fault::{Fault, FaultyStore, OpKind};
use crate::layout::Layout;
use crate::upload::{upload_segment, UploadOptions};

/// 3000 records at even offsets (gaps, as after compaction), ~100 row groups.
fn records() -> Vec<Record> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..3000u64)
        .map(|i| {
            // Incompressible payload, so the file is as big as the data.
            let value = incompressible(&mut x, 150);
            record(
                1000 + 2 * i,
                1 + i / 1000,
                1_000_000 + i as i64 * 10,
                &value,
            )
        })
        .collect()
}

async fn setup() -> (FaultyStore, ColdSegment, Vec<Record>) {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let recs = records();
    let opts = EncodeOptions {
        row_group_bytes: 6 * 1024,
        ..EncodeOptions::default()
    };
    let enc = encode_records(&recs, &opts).expect("encode");
    let log = LogId::new("t").expect("log");
    let seg = upload_segment(
        &store,
        &Layout::new("c").expect("layout"),
        &log,
        0,
        &enc,
        &UploadOptions::default(),
    )
    .await
    .expect("upload");
    store.plan().reset_stats();
    (store, seg, recs)
}

fn decode(read: &ColdRead) -> Vec<Record> {
    split_batches(read.batches.clone())
        .flat_map(|b| {
            let b = b.expect("batch");
            b.verify_crc().expect("crc");
            b.records().expect("records")
        })
        .collect()
}

#[tokio::test]
async fn late_offset_reads_only_a_few_ranges() {
    let (store, seg, recs) = setup().await;
    let reader = ColdReader::new(Arc::new(store.clone()));
    let start = LogOffset(1000 + 2 * 2900);
    let read = reader.read(&seg, start, 4096).await.expect("read");
    let got = decode(&read);
    assert!(!got.is_empty());
    assert_eq!(got[0].offset, start);
    assert_eq!(got[..], recs[2900..2900 + got.len()]);
    assert_eq!(read.next_offset, LogOffset(got[got.len() - 1].offset.0 + 1));
    assert_eq!(read.record_count, got.len());

    let stats = store.plan().stats();
    assert_eq!(stats.gets, 2, "footer + one ranged read");
    assert!(
        stats.get_bytes * 4 < seg.size_bytes,
        "fetched {} of {} bytes",
        stats.get_bytes,
        seg.size_bytes
    );

    // The footer is cached: the next read is a single ranged GET.
    store.plan().reset_stats();
    reader
        .read(&seg, read.next_offset, 4096)
        .await
        .expect("read");
    assert_eq!(store.plan().stats().gets, 1);
}

#[tokio::test]
async fn sequential_reads_return_every_record_once() {
    let (store, seg, recs) = setup().await;
    let reader = ColdReader::new(Arc::new(store)).with_max_batch_bytes(2000);
    let mut at = seg.base_offset;
    let mut all = Vec::new();
    let mut reads = 0;
    while at <= seg.last_offset {
        let r = reader.read(&seg, at, 20_000).await.expect("read");
        assert!(r.batches.len() <= 20_000 || r.record_count == 1);
        all.extend(decode(&r));
        assert!(r.next_offset > at, "progress");
        at = r.next_offset;
        reads += 1;
    }
    assert_eq!(all, recs);
    assert!(reads > 10);
    assert_eq!(at, LogOffset(seg.last_offset.0 + 1));

    // An offset in a gap starts at the next record; one past the end reads nothing.
    let gap = reader.read(&seg, LogOffset(1001), 100).await.expect("gap");
    assert_eq!(decode(&gap)[0].offset, LogOffset(1002));
    let past = reader
        .read(&seg, LogOffset(seg.last_offset.0 + 1), 100)
        .await
        .expect("past");
    assert!(past.batches.is_empty());
}

#[tokio::test]
async fn offset_for_timestamp_uses_statistics() {
    let (store, seg, _) = setup().await;
    let reader = ColdReader::new(Arc::new(store));
    assert_eq!(
        reader.offset_for_timestamp(&seg, 0).await.expect("ts"),
        Some(LogOffset(1000))
    );
    let ts = 1_000_000 + 1234 * 10 + 5;
    assert_eq!(
        reader.offset_for_timestamp(&seg, ts).await.expect("ts"),
        Some(LogOffset(1000 + 2 * 1235))
    );
    assert_eq!(
        reader
            .offset_for_timestamp(&seg, i64::MAX)
            .await
            .expect("ts"),
        None
    );
}

#[tokio::test]
async fn store_faults_are_retriable_and_bad_bytes_are_corrupt() {
    let (store, seg, _) = setup().await;
    let reader = ColdReader::new(Arc::new(store.clone()));
    store.plan().inject(OpKind::Get, Fault::Error, 1);
    let err = reader
        .read(&seg, seg.base_offset, 1000)
        .await
        .expect_err("fault");
    assert!(
        matches!(err, ColdError::Store { .. }) && err.is_retriable(),
        "{err}"
    );
    store.plan().inject(
        OpKind::Get,
        Fault::Timeout(std::time::Duration::from_millis(5)),
        1,
    );
    let err = reader
        .read(&seg, seg.base_offset, 1000)
        .await
        .expect_err("timeout");
    assert!(err.is_retriable(), "{err}");
    reader
        .read(&seg, seg.base_offset, 1000)
        .await
        .expect("works after the faults");

    // Same size, garbage content: corrupt, never data.
    let garbage = vec![0x5au8; seg.size_bytes as usize];
    store
        .put(&seg.path(), PutPayload::from(garbage))
        .await
        .expect("overwrite");
    let fresh = ColdReader::new(Arc::new(store.clone()));
    let err = fresh
        .read(&seg, seg.base_offset, 1000)
        .await
        .expect_err("corrupt");
    assert!(
        matches!(err, ColdError::Corrupt { .. }) && !err.is_retriable(),
        "{err}"
    );

    // A manifest entry that disagrees with the object's rows is caught too.
    let (store, seg, _) = setup().await;
    let lying = ColdSegment {
        base_offset: LogOffset(5000),
        ..seg.clone()
    };
    let err = ColdReader::new(Arc::new(store))
        .read(&lying, LogOffset(5000), 100_000)
        .await
        .expect_err("lie");
    assert!(matches!(err, ColdError::Corrupt { .. }), "{err}");
}

#[tokio::test]
async fn a_warm_reread_is_served_decoded_without_a_get_and_is_identical() {
    let (store, seg, recs) = setup().await;
    let reader = ColdReader::new(Arc::new(store.clone())).with_decoded_cache(64 << 20);
    let cold = read_whole(&reader, &seg).await;
    let gets_cold = store.plan().stats().gets;
    assert!(gets_cold > 0);
    let got: Vec<Record> = cold.iter().flat_map(decode).collect();
    assert_eq!(got, recs, "every record once, in order");

    let warm = read_whole(&reader, &seg).await;
    assert_eq!(warm, cold, "the same batches, byte for byte");
    assert_eq!(
        store.plan().stats().gets,
        gets_cold,
        "no GET on the re-read"
    );

    // A read starting in the middle of a cached row group starts at its offset.
    let mid = LogOffset(1000 + 2 * 1501);
    let r = reader.read(&seg, mid, 4096).await.expect("read");
    assert_eq!(decode(&r)[0].offset, mid);
    assert_eq!(store.plan().stats().gets, gets_cold);
}

async fn read_whole(reader: &ColdReader, seg: &ColdSegment) -> Vec<ColdRead> {
    let mut reads = Vec::new();
    let mut at = seg.base_offset;
    while at <= seg.last_offset {
        let r = reader.read(seg, at, 64 * 1024).await.expect("read");
        at = r.next_offset;
        reads.push(r);
    }
    reads
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequential_reader_costs_one_get_per_three_quarters_of_a_readahead_window() {
    let (store, seg, recs) = setup().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = crate::cache::CacheSettings {
        memory_bytes: 64 << 20,
        disk_bytes: 16 << 20,
        readahead_row_groups: 2,
        readahead_bytes: 64 * 1024,
        decoded_bytes: 0,
        dir: None,
    };
    let cache = ChunkCache::open(&settings, dir.path().to_path_buf())
        .await
        .expect("cache");
    let reader = ColdReader::new(Arc::new(store.clone())).with_cache(cache, settings.readahead());
    let groups = reader
        .footer(&seg, None)
        .await
        .expect("footer")
        .groups
        .len();
    store.plan().reset_stats();
    let mut at = seg.base_offset;
    let mut all = Vec::new();
    while at <= seg.last_offset {
        // One row group per read, at a consumer's pace.
        let r = reader.read(&seg, at, 4096).await.expect("read");
        all.extend(decode(&r));
        at = r.next_offset;
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert_eq!(all, recs);
    let gets = store.plan().stats().gets;
    assert!(
        gets * 4 <= groups as u64,
        "{gets} GETs for {groups} row groups: read-ahead should fetch several per GET"
    );
}

/// The records of Arrow batches, through the same row accessor the wire path uses.
fn rows_of(batches: &[RecordBatch]) -> Vec<Record> {
    batches
        .iter()
        .flat_map(|rb| {
            let cols = Columns::of(rb).expect("record columns");
            (0..cols.len()).map(|r| cols.record(r)).collect::<Vec<_>>()
        })
        .collect()
}

#[tokio::test]
async fn columns_hold_exactly_the_records_the_batches_hold() {
    let (store, seg, _) = setup().await;
    let reader = ColdReader::new(Arc::new(store.clone())).with_decoded_cache(16 << 20);
    // From inside a row group, across a gap (odd offsets do not exist), every size.
    for (start, max_bytes) in [
        (1000, 1),
        (1001, 4096),
        (1000 + 2 * 1500, 64 * 1024),
        (0, 1 << 30),
    ] {
        let start = LogOffset(start);
        let wire = reader.read(&seg, start, max_bytes).await.expect("read");
        let cols = reader
            .read_columns(&seg, start, max_bytes)
            .await
            .expect("read columns");
        let (from_wire, from_cols) = (decode(&wire), rows_of(&cols.batches));
        assert!(!from_cols.is_empty(), "at least one row from {start}");
        assert!(from_cols[0].offset >= start);
        assert_eq!(cols.record_count, from_cols.len());
        assert!(cols.next_offset > from_cols[from_cols.len() - 1].offset);
        // Both forms start at the same record; the shorter is a prefix of the longer.
        let n = from_wire.len().min(from_cols.len());
        assert_eq!(
            from_wire[..n],
            from_cols[..n],
            "from {start}, max_bytes {max_bytes}"
        );
        for rb in &cols.batches {
            assert_eq!(rb.schema(), crate::codec::arrow_schema());
        }
    }
}

#[tokio::test]
async fn a_whole_segment_read_as_columns_ends_past_the_segment() {
    let (store, seg, recs) = setup().await;
    let reader = ColdReader::new(Arc::new(store));
    let read = reader
        .read_columns(&seg, seg.base_offset, usize::MAX)
        .await
        .expect("read");
    assert_eq!(rows_of(&read.batches), recs);
    assert_eq!(read.next_offset, LogOffset(seg.last_offset.0 + 1));
}

async fn cached_reader(store: &FaultyStore, window: u64) -> (ColdReader, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = crate::cache::CacheSettings {
        memory_bytes: 64 << 20,
        disk_bytes: 16 << 20,
        readahead_row_groups: 2,
        readahead_bytes: window,
        decoded_bytes: 0,
        dir: None,
    };
    let cache = ChunkCache::open(&settings, dir.path().to_path_buf())
        .await
        .expect("cache");
    let reader = ColdReader::new(Arc::new(store.clone())).with_cache(cache, settings.readahead());
    (reader, dir)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_within_the_window_is_one_get() {
    let (store, seg, recs) = setup().await;
    let (reader, _dir) = cached_reader(&store, seg.size_bytes + 1).await;
    let mut all = Vec::new();
    let mut at = seg.base_offset;
    while at <= seg.last_offset {
        let r = reader.read(&seg, at, 16 * 1024).await.expect("read");
        all.extend(decode(&r));
        at = r.next_offset;
    }
    assert_eq!(all, recs);
    assert_eq!(
        store.plan().stats().gets,
        1,
        "the whole object, footer included"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entering_an_object_reads_footer_and_first_window_in_one_round_trip() {
    let (store, seg, recs) = setup().await;
    let window = 64 * 1024;
    assert!(
        seg.size_bytes > 4 * window,
        "the object is larger than the window"
    );
    let (reader, _dir) = cached_reader(&store, window).await;
    // Every GET takes 300 ms: two sent one after the other would take 600.
    store
        .plan()
        .inject(OpKind::Get, Fault::Delay(Duration::from_millis(300)), 2);
    let t = std::time::Instant::now();
    let r = reader
        .read(&seg, seg.base_offset, 4096)
        .await
        .expect("read");
    let took = t.elapsed();
    assert_eq!(decode(&r)[..], recs[..r.record_count]);
    assert_eq!(
        store.plan().stats().gets,
        2,
        "footer and first window, nothing else"
    );
    assert!(took < Duration::from_millis(550), "sent at once: {took:?}");

    // A seek into the middle of another reader's first object: footer, then the group.
    store.plan().reset_stats();
    let (seeker, _dir2) = cached_reader(&store, window).await;
    let mid = LogOffset(1000 + 2 * 1500);
    let r = seeker.read(&seg, mid, 4096).await.expect("read");
    assert_eq!(decode(&r)[0].offset, mid);
    assert!(store.plan().stats().gets >= 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_decodes_one_group_itself_and_the_next_are_decoded_ahead() {
    let (store, seg, recs) = setup().await;
    let (reader, _dir) = cached_reader(&store, 64 * 1024).await;
    let reader = reader.with_decoded_cache(64 << 20);
    let footer = reader.footer(&seg, None).await.expect("footer");
    let per_group = footer.groups[0].offsets.clone();
    let rows_in_group = recs
        .iter()
        .filter(|r| per_group.contains(&r.offset.0))
        .count();

    // Asked for far more than one group: the answer is the first group only.
    let first = reader
        .read(&seg, seg.base_offset, 1 << 20)
        .await
        .expect("read");
    assert_eq!(first.record_count, rows_in_group);
    assert_eq!(decode(&first)[..], recs[..rows_in_group]);

    // Decode-ahead takes the groups whose bytes the read-ahead has already cached when a
    // read plans it (a group still in flight is decoded by the read that needs it). On a
    // busy machine the read-ahead may land after the first read planned, so wait for the
    // bytes, then read the first group again: that read plans the decode-ahead of the next.
    let cache = reader.cache.clone().expect("chunk cache");
    let t = std::time::Instant::now();
    while !(1..4).all(|g: usize| {
        let b = &footer.groups[g].bytes;
        cache.may_contain(&ChunkCache::key(&seg.key, seg.size_bytes, b.start, b.end))
    }) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "read-ahead never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let again = reader
        .read(&seg, seg.base_offset, 1 << 20)
        .await
        .expect("read");
    assert!(again.record_count >= rows_in_group);

    // The groups after it get decoded in the background.
    let decoded = reader.decoded.clone().expect("decoded cache");
    let next: Vec<GroupKey> = (1..4)
        .map(|g| (seg.key.clone(), seg.size_bytes, g))
        .collect();
    let t = std::time::Instant::now();
    while !next.iter().all(|k| decoded.get(k).is_some()) {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "decode-ahead never ran"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let second = reader
        .read(&seg, first.next_offset, 1 << 20)
        .await
        .expect("read");
    assert!(
        second.record_count >= 3 * rows_in_group / 2,
        "several groups at once"
    );
    let got = decode(&second);
    assert_eq!(got[..], recs[rows_in_group..rows_in_group + got.len()]);
}

#[tokio::test]
async fn a_footer_larger_than_the_guess_is_one_get_when_the_manifest_knows_its_size() {
    let store = FaultyStore::new(Arc::new(InMemory::new()));
    let recs = records();
    // A row group per ~2 records: a footer far over the 64 KiB first guess.
    let opts = EncodeOptions {
        row_group_bytes: 300,
        ..EncodeOptions::default()
    };
    let enc = encode_records(&recs, &opts).expect("encode");
    assert!(
        enc.meta.footer_bytes > FOOTER_GUESS,
        "{}",
        enc.meta.footer_bytes
    );
    let log = LogId::new("t").expect("log");
    let layout = Layout::new("c").expect("layout");
    let seg = upload_segment(&store, &layout, &log, 0, &enc, &UploadOptions::default())
        .await
        .expect("upload");
    assert_eq!(
        seg.footer_bytes, enc.meta.footer_bytes,
        "the manifest entry keeps it"
    );
    let late = LogOffset(1000 + 2 * 2900);

    store.plan().reset_stats();
    let r = ColdReader::new(Arc::new(store.clone()))
        .read(&seg, late, 1024)
        .await
        .expect("read");
    assert_eq!(decode(&r)[0].offset, late);
    assert_eq!(
        store.plan().stats().gets,
        2,
        "footer in one GET, then the row group"
    );

    // An entry from before the field (or restored from the object) guesses, then refetches.
    store.plan().reset_stats();
    let unknown = ColdSegment {
        footer_bytes: 0,
        ledger: None,
        ..seg.clone()
    };
    ColdReader::new(Arc::new(store.clone()))
        .read(&unknown, late, 1024)
        .await
        .expect("read");
    assert_eq!(store.plan().stats().gets, 3);
}
