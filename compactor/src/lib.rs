//! The compactor: moves closed segments from the hot tier to the cold tier, compacts them and
//! keeps both tiers within their retention.
//!
//! This crate holds the steps; the node decides when to run them (tickers, for the partitions
//! it holds) and [`standalone`] runs the cold-tier ones without a node. Each step is safe to
//! interrupt at any point and to repeat:
//!
//! 1. [`archive::archive_partition`]: every closed local segment past the manifest's end is
//!    read (CRC-checked), encoded as Parquet, uploaded under a key derived from its offsets
//!    (a retry lands on the same key), then committed to the manifest. Only then may
//!    local retention delete it: the hot tier's `deletable_below` is the manifest's end.
//! 2. [`compact::compact_partition`]: key-based or delete-marker compaction of both tiers
//!    ([`keys`] decides), or time-series downsampling of the archive ([`timeseries`] decides);
//!    the archive changes in one manifest commit, local segments by atomic rename.
//! 3. [`retention::apply_retention`]: the log's total retention cuts the oldest segments of
//!    both tiers; objects no manifest names are deleted by
//!    [`pyralog_cold_tier::gc_orphans`] after a grace period.
//!
//! A crash between any two steps leaves either an uncommitted object (invisible, collected
//! later), a committed segment whose local copy still exists (deleted on the next run), or
//! records that a finished pass would have dropped (dropped by the next one).

pub mod archive;
pub mod compact;
pub mod error;
pub mod keys;
pub mod retention;
pub mod standalone;
pub mod timeseries;

pub use archive::{
    archive_partition, ArchiveOptions, ArchiveReport, CorruptSegment, PartitionTiers,
};
pub use compact::{compact_partition, ColdTarget, CompactOptions, CompactTarget, CompactionReport};
pub use error::CompactorError;
pub use keys::KeyMap;
pub use retention::{apply_retention, Archive, RetentionReport};
pub use standalone::{PartitionPass, StandaloneCompactor, StandaloneConfig};
pub use timeseries::{downsample, BucketValue, BUCKET_HEADER};
