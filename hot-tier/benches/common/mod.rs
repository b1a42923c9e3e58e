//! What the hot-tier benches share: a partition's options with only what a bench varies.

use pyralog_hot_tier::PartitionOptions;
use pyralog_types::FsyncPolicy;

/// A plain (not ledger) partition with `segment_bytes` segments, an index entry every 4 KiB
/// and segments that never roll by age during a bench.
pub(crate) fn options(segment_bytes: u64, fsync: FsyncPolicy) -> PartitionOptions {
    PartitionOptions {
        segment_bytes,
        segment_ms: std::time::Duration::from_secs(3600),
        index_interval_bytes: 4096,
        max_index_bytes: 1 << 20,
        fsync,
        producer_expiration: pyralog_hot_tier::DEFAULT_PRODUCER_EXPIRATION,
        ledger_genesis: None,
        ledger_chain: pyralog_ledger::ChainVersion::CURRENT,
    }
}
