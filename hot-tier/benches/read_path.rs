//! The catch-up read path: what a fetch of 8 MiB costs the hot tier. Stored batches go out as
//! they are: one positional read through the page cache into one buffer, a CRC check per batch
//! and no re-encode; the response is that buffer. A read that crosses a segment boundary
//! reads the second segment's part into the same buffer (the third case; it used to read
//! each part into a buffer of its own and join them, 8x the cost of the others).
//!
//! The files live in a temporary directory and are read back hot (page cache), as a consumer
//! tailing or catching up on recent data reads them.

mod common;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyralog_hot_tier::PartitionLog;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, ManualClock};

const T0: i64 = 1_700_000_000_000_000;
const RECORD_BYTES: usize = 1024;
/// Records per stored batch (~64 KiB batches, as a linger-bound producer sends them).
const BATCH_RECORDS: i64 = 64;
/// Batches per segment: 32 MiB segments.
const SEGMENT_BATCHES: i64 = 512;
const FETCH_BYTES: usize = 8 << 20;

fn fill(log: &PartitionLog, batches: i64, first: i64) {
    let value = Bytes::from(vec![7u8; RECORD_BYTES]);
    for b in first..first + batches {
        let mut builder = BatchBuilder::new(Compression::None);
        for i in 0..BATCH_RECORDS {
            builder.push(&NewRecord {
                timestamp: T0 + b * BATCH_RECORDS + i,
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
            });
        }
        log.append(builder.build().expect("batch"), Epoch(1))
            .expect("append");
    }
}

fn read_path(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = common::options(1 << 30, FsyncPolicy::Never);
    let log = PartitionLog::open(dir.path(), opts, ManualClock::new(T0)).expect("open");
    // Two closed segments, then an active one of the same size.
    fill(&log, SEGMENT_BATCHES, 0);
    log.roll().expect("roll");
    fill(&log, SEGMENT_BATCHES, SEGMENT_BATCHES);
    log.roll().expect("roll");
    fill(&log, SEGMENT_BATCHES, 2 * SEGMENT_BATCHES);
    let segment_records = SEGMENT_BATCHES * BATCH_RECORDS;
    let read = |from: i64| {
        let r = log
            .read(LogOffset(from as u64), FETCH_BYTES, LogOffset::MAX)
            .expect("read");
        assert!(r.batches.len() >= FETCH_BYTES - (BATCH_RECORDS as usize * 1100));
        r
    };

    let mut group = c.benchmark_group("fetch_8MiB");
    group.throughput(Throughput::Bytes(FETCH_BYTES as u64));
    group.bench_function("closed_segment", |b| b.iter(|| read(0)));
    group.bench_function("active_segment", |b| b.iter(|| read(2 * segment_records)));
    // Starts 4 MiB before the end of the first segment: half from each of two files.
    group.bench_function("across_a_segment_boundary", |b| {
        b.iter(|| read(segment_records - segment_records / 8))
    });
    group.finish();
}

criterion_group!(benches, read_path);
criterion_main!(benches);
