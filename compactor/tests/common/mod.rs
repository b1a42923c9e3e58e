//! Shared set-up for the compactor's integration tests: a local partition log with closed
//! segments of known records, and a cold partition on `object_store`'s InMemory store.

#![allow(dead_code)] // each test binary uses a different part

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::memory::InMemory;
use object_store::ObjectStore;
use pyralog_cold_tier::{ColdPartition, ColdReader, Layout, ManifestStore};
use pyralog_compactor::PartitionTiers;
use pyralog_hot_tier::{PartitionLog, PartitionOptions};
use pyralog_types::batch::{BatchBuilder, Compression, NewRecord};
use pyralog_types::{Epoch, FsyncPolicy, LogId, ManualClock, TimestampMicros};

/// A local log under `dir` whose clock reads `now`.
pub(crate) fn hot_log(dir: &Path, now: TimestampMicros) -> Arc<PartitionLog> {
    let opts = PartitionOptions {
        segment_bytes: 1 << 20,
        segment_ms: Duration::from_secs(3600),
        index_interval_bytes: 256,
        max_index_bytes: 1 << 16,
        fsync: FsyncPolicy::Never,
        producer_expiration: Duration::from_secs(7 * 24 * 3600),
        ledger_genesis: None,
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
    };
    Arc::new(PartitionLog::open(dir, opts, ManualClock::new(now)).expect("open"))
}

/// Appends `segments` closed segments of 10 records each, timestamps from `ts` on.
pub(crate) fn closed_segments(hot: &PartitionLog, segments: usize, ts: TimestampMicros) {
    for _ in 0..segments {
        let mut b = BatchBuilder::new(Compression::None);
        for i in 0..10 {
            b.push(&NewRecord {
                timestamp: ts + i,
                key: Some(Bytes::from(format!("k{i}"))),
                value: Some(Bytes::from_static(b"v")),
                headers: Vec::new(),
            });
        }
        hot.append(b.build().expect("batch"), Epoch(1))
            .expect("append");
        hot.roll().expect("roll");
    }
}

/// A cold tier on a fresh InMemory store.
pub(crate) struct Cold {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) layout: Layout,
    pub(crate) log: LogId,
}

impl Cold {
    pub(crate) fn new(log: &str) -> Self {
        Self {
            store: Arc::new(InMemory::new()),
            layout: Layout::new("a").expect("layout"),
            log: LogId::new(log).expect("log"),
        }
    }

    /// Partition 0's local log and archive, as the archiver takes them.
    pub(crate) fn tiers<'a>(
        &'a self,
        hot: &'a Arc<PartitionLog>,
        cold: &'a ColdPartition,
    ) -> PartitionTiers<'a> {
        PartitionTiers {
            log: &self.log,
            partition: 0,
            hot,
            cold,
            store: self.store.as_ref(),
            layout: &self.layout,
        }
    }

    /// Partition 0's archive, as a process opening it now sees it.
    pub(crate) async fn partition(&self) -> ColdPartition {
        ColdPartition::open(
            self.log.clone(),
            0,
            ManifestStore::new(self.store.clone(), self.layout.clone()),
            Arc::new(ColdReader::new(self.store.clone())),
        )
        .await
        .expect("cold")
    }
}
