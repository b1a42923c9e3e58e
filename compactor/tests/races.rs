//! Two compactors on one partition at once (two processes, or a node and a standalone
//! compactor): the manifest's conditional commit lets exactly one swap in its rewrite; the
//! other commits nothing, and the archive reads as the model afterwards. Run against
//! `object_store`'s InMemory store, whose conditional puts are exact.

use std::collections::BTreeMap;
use std::sync::Arc;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use pyralog_cold_tier::{
    encode_records, upload_segment, ColdPartition, ColdReader, EncodeOptions, Layout,
    ManifestStore, UploadOptions,
};
use pyralog_compactor::{compact_partition, ColdTarget, CompactOptions, CompactTarget};
use pyralog_types::batch::split_batches;
use pyralog_types::{CompactionMode, Epoch, LogConfig, LogId, LogOffset, Record};

fn update(i: u64) -> Record {
    Record {
        offset: LogOffset(i),
        epoch: Epoch(1),
        timestamp: 1_000 + i as i64,
        key: Some(Bytes::from(format!("k{}", i % 13))),
        value: Some(Bytes::from(format!("v{i}"))),
        headers: Vec::new(),
    }
}

async fn open(store: &Arc<dyn ObjectStore>, layout: &Layout, log: &LogId) -> ColdPartition {
    ColdPartition::open(
        log.clone(),
        0,
        ManifestStore::new(store.clone(), layout.clone()),
        Arc::new(ColdReader::new(store.clone())),
    )
    .await
    .expect("open partition")
}

#[tokio::test]
async fn two_compactors_racing_commit_exactly_one_rewrite() {
    let store: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
    let layout = Layout::new("race").expect("layout");
    let log = LogId::new("profiles").expect("log");
    let writer = open(&store, &layout, &log).await;
    for seg in 0..4u64 {
        let records: Vec<Record> = (seg * 100..seg * 100 + 100).map(update).collect();
        let encoded = encode_records(&records, &EncodeOptions::default()).expect("encode");
        let uploaded = upload_segment(
            store.as_ref(),
            &layout,
            &log,
            0,
            &encoded,
            &UploadOptions::default(),
        )
        .await
        .expect("upload");
        writer.append_segment(uploaded).await.expect("commit");
    }

    let config = LogConfig {
        compaction: CompactionMode::KeyBased,
        ..LogConfig::default()
    };
    let (a, b) = (
        open(&store, &layout, &log).await,
        open(&store, &layout, &log).await,
    );
    let opts = CompactOptions::default();
    let target = |cold| CompactTarget {
        log: &log,
        partition: 0,
        config: &config,
        hot: None,
        cold: Some(cold),
    };
    let cold_a = ColdTarget {
        partition: &a,
        store: store.as_ref(),
        layout: &layout,
    };
    let cold_b = ColdTarget {
        partition: &b,
        ..cold_a
    };
    // Different encodings, so the two rewrites differ byte for byte (two builds of Pyralog, or
    // two settings). Identical rewrites would both "win": the second commit finds the same
    // manifest bytes already there, which is the idempotent-retry path, and just as correct.
    let opts_b = CompactOptions {
        encode: EncodeOptions {
            row_group_bytes: 64,
            ..EncodeOptions::default()
        },
        ..CompactOptions::default()
    };
    let pass_a = compact_partition(target(cold_a), 10_000, &opts);
    let pass_b = compact_partition(target(cold_b), 10_000, &opts_b);
    let (ra, rb) = tokio::join!(pass_a, pass_b);
    let (ra, rb) = (ra.expect("pass a"), rb.expect("pass b"));
    assert!(
        ra.segments_rewritten() > 0 && rb.segments_rewritten() > 0,
        "both did the work"
    );
    assert_eq!(
        [ra.stale, rb.stale].iter().filter(|s| !**s).count(),
        1,
        "exactly one commit wins: {ra:?} {rb:?}"
    );
    let reader = open(&store, &layout, &log).await;
    assert_eq!(reader.manifest().version, 5, "four appends and one swap");

    // The archive now holds exactly the latest record per key.
    let mut model = BTreeMap::new();
    for i in 0..400 {
        let r = update(i);
        model.insert(r.key.clone(), r);
    }
    let mut got = Vec::new();
    let mut at = LogOffset(0);
    while let Some(read) = reader.read(at, 1 << 20).await.expect("read") {
        for b in split_batches(read.batches) {
            got.extend(b.expect("batch").records().expect("records"));
        }
        at = read.next_offset;
    }
    let want: Vec<Record> = {
        let mut v: Vec<Record> = model.into_values().collect();
        v.sort_by_key(|r| r.offset);
        v
    };
    assert_eq!(got, want);
    assert_eq!(
        reader.start_offset(),
        Some(LogOffset(0)),
        "compaction never moves the start"
    );
}
