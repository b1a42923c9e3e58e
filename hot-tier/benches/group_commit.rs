//! Group commit: what an fsync-per-batch log costs with one writer at a time versus writers
//! whose appends overlap (a pipelined producer, or several producers of one partition). Each
//! writer appends a 64 KiB batch and waits for `flush_to` its end; one fsync at a time runs and
//! covers every batch written before it started, so overlapping writers share fsyncs. The
//! files live in a temporary directory (the disk under the system temp dir).

mod common;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use pyralog_hot_tier::PartitionLog;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, ManualClock};

const T0: i64 = 1_700_000_000_000_000;
const BATCH_RECORDS: usize = 64;
const RECORD_BYTES: usize = 1024;
/// Batches per measured iteration (split among the writers).
const BATCHES: usize = 32;

fn batch() -> Bytes {
    let value = Bytes::from(vec![7u8; RECORD_BYTES]);
    let mut builder = BatchBuilder::new(Compression::None);
    for i in 0..BATCH_RECORDS {
        builder.push(&NewRecord {
            timestamp: T0 + i as i64,
            key: None,
            value: Some(value.clone()),
            headers: Vec::new(),
        });
    }
    builder.build().expect("batch")
}

fn open() -> (tempfile::TempDir, Arc<PartitionLog>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = common::options(1 << 30, FsyncPolicy::EveryBatch);
    let log = PartitionLog::open(dir.path(), opts, ManualClock::new(T0)).expect("open");
    (dir, Arc::new(log))
}

/// `writers` threads each append and flush `BATCHES / writers` batches.
fn run(log: &Arc<PartitionLog>, batch: &Bytes, writers: usize) {
    std::thread::scope(|s| {
        for _ in 0..writers {
            s.spawn(|| {
                for _ in 0..BATCHES / writers {
                    let info = log.append(batch.clone(), Epoch(1)).expect("append");
                    log.flush_to(info.end_offset).expect("flush");
                }
            });
        }
    });
}

fn group_commit(c: &mut Criterion) {
    let batch = batch();
    let mut group = c.benchmark_group("group_commit");
    group.throughput(Throughput::Bytes((batch.len() * BATCHES) as u64));
    group.sample_size(10);
    for writers in [1usize, 4, 8] {
        let (_dir, log) = open();
        group.bench_function(format!("{writers}_writers_fsync_every_batch"), |b| {
            b.iter(|| run(&log, &batch, writers))
        });
    }
    group.finish();
}

criterion_group!(benches, group_commit);
criterion_main!(benches);
