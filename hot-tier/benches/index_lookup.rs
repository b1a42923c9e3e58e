//! Finding an offset in a closed segment: the sparse offset index (binary search over the
//! mmap'd entries) plus the short scan of batch headers after the entry, as every fetch at
//! an arbitrary offset does; and the timestamp lookup through the time index.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion};
use pyralog_hot_tier::PartitionLog;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogOffset, ManualClock};

const T0: i64 = 1_700_000_000_000_000;

fn lookup(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = common::options(64 << 20, FsyncPolicy::Never);
    let log = PartitionLog::open(dir.path(), opts, ManualClock::new(T0)).expect("open");
    // 200k records of ~100 B in batches of 10: ~24 MB, one closed segment.
    let value = Bytes::from(vec![7u8; 100]);
    for b in 0..20_000i64 {
        let mut builder = BatchBuilder::new(Compression::None);
        for i in 0..10 {
            builder.push(&NewRecord {
                timestamp: T0 + b * 10 + i,
                key: None,
                value: Some(value.clone()),
                headers: Vec::new(),
            });
        }
        log.append(builder.build().expect("batch"), Epoch(1))
            .expect("append");
    }
    log.roll().expect("roll");
    let log = Arc::new(log);
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % 200_000
    };
    c.bench_function("read_one_batch_at_a_random_offset", |b| {
        b.iter(|| {
            log.read(LogOffset(next()), 1, LogOffset::MAX)
                .expect("read")
        })
    });
    c.bench_function("offset_for_a_random_timestamp", |b| {
        b.iter(|| {
            log.offset_for_timestamp(T0 + next() as i64)
                .expect("lookup")
        })
    });
}

criterion_group!(benches, lookup);
criterion_main!(benches);
