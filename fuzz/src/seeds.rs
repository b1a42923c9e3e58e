//! Valid inputs made by the real encoders: the starting points of the damage programs and the
//! seed corpus committed under `fuzz/tests/__fuzz__/<target>/corpus/`.

use std::sync::OnceLock;

use bytes::Bytes;
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::record::Header;

/// A fixed time (µs) for every seed, so seeds are the same bytes on every run.
pub const T0: i64 = 1_700_000_000_000_000;

fn record(i: usize, ts: i64) -> NewRecord {
    NewRecord {
        timestamp: ts,
        key: (i % 4 != 3).then(|| Bytes::from(format!("key-{}", i % 3))),
        value: (i % 5 != 4).then(|| Bytes::from(format!("value {i} {}", "x".repeat(i % 7)))),
        headers: if i.is_multiple_of(2) {
            vec![Header {
                key: "trace".into(),
                value: Bytes::from(vec![i as u8; i % 5]),
            }]
        } else {
            Vec::new()
        },
    }
}

/// One batch of `n` records starting at `ts` (not idempotent, base offset and epoch 0).
pub fn batch(n: usize, ts: i64, compression: Compression) -> Bytes {
    let mut b = BatchBuilder::new(compression);
    for i in 0..n {
        b.push(&record(i, ts + i as i64));
    }
    b.build().expect("seed batch encodes")
}

/// Batches covering the format's branches: plain, tombstones and headers, zstd, an
/// idempotent producer's, offset gaps (compacted data), timestamps out of order.
pub fn batches() -> &'static [Bytes] {
    static SEEDS: OnceLock<Vec<Bytes>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut out = vec![
            batch(1, T0, Compression::None),
            batch(6, T0, Compression::None),
            batch(6, T0, Compression::Zstd(1)),
        ];
        let mut idempotent = BatchBuilder::new(Compression::None).with_producer(7, 2, 40);
        for i in 0..3 {
            idempotent.push(&record(i, T0 + i as i64));
        }
        out.push(idempotent.build().expect("seed batch encodes"));
        let mut gaps = BatchBuilder::new(Compression::None);
        for (i, delta) in [0u32, 3, 4, 9].into_iter().enumerate() {
            gaps.push_at(delta, &record(i, T0 - 5 * i as i64))
                .expect("increasing deltas");
        }
        out.push(gaps.build().expect("seed batch encodes"));
        out
    })
}
