//! The archiver's memory does not grow with the segment: a 96 MiB segment of incompressible
//! records is tiered (to a local-folder store, so the uploaded object is not itself held in
//! memory) while a counting allocator records the process's peak heap. The bound is a few
//! row groups and upload parts; the archiver that encoded whole segments in memory needed
//! about three times the segment.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocLayout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::ObjectStore;
use pyralog_cold_tier::{ColdPartition, ColdReader, Layout, ManifestStore};
use pyralog_compactor::{archive_partition, ArchiveOptions, PartitionTiers};
use pyralog_hot_tier::{PartitionLog, PartitionOptions};
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogId, LogOffset, ManualClock};

/// Counts live heap bytes and their peak, for this test binary only.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: a `GlobalAlloc` can only be written with `unsafe`; every call forwards to `System`
// with the caller's layout and pointer unchanged (`realloc` and `alloc_zeroed` use the
// trait's defaults, which go through these two), and only counts.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocLayout) -> *mut u8 {
        // SAFETY: forwarded unchanged to the system allocator.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: AllocLayout) {
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) };
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

const SEGMENT_BYTES: u64 = 96 << 20;
const VALUE_BYTES: usize = 1024;
const RECORDS_PER_BATCH: usize = 64;
/// What the archiver may add to the heap while tiering the segment.
const HEAP_BOUND_BYTES: usize = 48 << 20;

fn incompressible(seed: u64) -> Bytes {
    let mut x = seed.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let v: Vec<u8> = (0..VALUE_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    Bytes::from(v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiering_a_large_segment_holds_a_few_row_groups_not_the_segment() {
    let dir = tempfile::tempdir().expect("tempdir");
    let opts = PartitionOptions {
        segment_bytes: SEGMENT_BYTES,
        segment_ms: Duration::from_secs(3600),
        index_interval_bytes: 4096,
        max_index_bytes: 1 << 20,
        fsync: FsyncPolicy::Never,
        producer_expiration: Duration::from_secs(3600),
        ledger_genesis: None,
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
    };
    let hot = Arc::new(
        PartitionLog::open(dir.path().join("hot"), opts, ManualClock::new(1_000)).expect("open"),
    );
    let mut written = 0u64;
    let mut seq = 0u64;
    while written < SEGMENT_BYTES - (RECORDS_PER_BATCH * VALUE_BYTES) as u64 * 2 {
        let mut b = BatchBuilder::new(Compression::None);
        for _ in 0..RECORDS_PER_BATCH {
            b.push(&NewRecord {
                timestamp: 1_000 + seq as i64,
                key: None,
                value: Some(incompressible(seq)),
                headers: Vec::new(),
            });
            seq += 1;
        }
        let batch = b.build().expect("batch");
        written += batch.len() as u64;
        hot.append(batch, Epoch(1)).expect("append");
    }
    hot.roll().expect("roll");

    let bucket = dir.path().join("bucket");
    std::fs::create_dir_all(&bucket).expect("bucket dir");
    let store: Arc<dyn ObjectStore> =
        Arc::new(LocalFileSystem::new_with_prefix(&bucket).expect("local store"));
    let layout = Layout::new("a").expect("layout");
    let log = LogId::new("big").expect("log");
    let cold = ColdPartition::open(
        log.clone(),
        0,
        ManifestStore::new(store.clone(), layout.clone()),
        Arc::new(ColdReader::new(store.clone())),
    )
    .await
    .expect("cold");
    let tiers = PartitionTiers {
        log: &log,
        partition: 0,
        hot: &hot,
        cold: &cold,
        store: store.as_ref(),
        layout: &layout,
    };

    let before = LIVE.load(Ordering::Relaxed);
    PEAK.store(before, Ordering::Relaxed);
    let report = archive_partition(tiers, LogOffset(seq), &ArchiveOptions::default())
        .await
        .expect("archive");
    let grew = PEAK.load(Ordering::Relaxed).saturating_sub(before);

    assert_eq!(report.uploaded.len(), 1);
    let seg = &report.uploaded[0];
    assert_eq!(seg.record_count, seq);
    assert!(
        seg.size_bytes > SEGMENT_BYTES * 9 / 10,
        "incompressible: {} bytes",
        seg.size_bytes
    );
    println!(
        "FIGURES archiver memory: {} MiB segment, {} MiB object, heap peak +{} MiB",
        written >> 20,
        seg.size_bytes >> 20,
        grew >> 20
    );
    assert!(
        grew < HEAP_BOUND_BYTES,
        "tiering a {} MiB segment grew the heap by {} MiB (bound {} MiB)",
        written >> 20,
        grew >> 20,
        HEAP_BOUND_BYTES >> 20
    );

    // What was archived reads back: the last record, from the cold tier.
    let last = cold
        .read(LogOffset(seq - 1), 1 << 20)
        .await
        .expect("cold read")
        .expect("archived");
    assert_eq!((last.record_count, last.next_offset), (1, LogOffset(seq)));
}
