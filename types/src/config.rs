//! Per-log configuration and per-request policies.
//!
//! [`LogConfig`] is plain data: it is stored with the log's metadata, sent over the wire by
//! the admin API and read from TOML. [`LogConfig::validate`] is the one place that decides
//! whether a configuration is acceptable.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How long data is kept, applied in whole segments, oldest first, never the active one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "RetentionSpec", into = "RetentionSpec")]
pub enum Retention {
    /// Keep segments whose newest record is younger than the duration.
    Time(Duration),
    /// Keep the newest segments that together fit in the byte budget.
    Size(u64),
    /// Delete a segment as soon as either limit says so.
    TimeAndSize(Duration, u64),
    /// Never delete.
    Infinite,
}

/// The TOML/JSON spelling of [`Retention`]: `{ max_age = "7d", max_bytes = 1073741824 }`;
/// an empty table means infinite.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionSpec {
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    max_age: Option<Duration>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    max_bytes: Option<u64>,
}

impl From<RetentionSpec> for Retention {
    fn from(s: RetentionSpec) -> Self {
        Retention::from_limits(s.max_age, s.max_bytes)
    }
}

impl From<Retention> for RetentionSpec {
    fn from(r: Retention) -> Self {
        RetentionSpec {
            max_age: r.max_age(),
            max_bytes: r.max_bytes(),
        }
    }
}

impl Retention {
    pub fn from_limits(max_age: Option<Duration>, max_bytes: Option<u64>) -> Self {
        match (max_age, max_bytes) {
            (Some(t), Some(b)) => Retention::TimeAndSize(t, b),
            (Some(t), None) => Retention::Time(t),
            (None, Some(b)) => Retention::Size(b),
            (None, None) => Retention::Infinite,
        }
    }

    pub fn max_age(&self) -> Option<Duration> {
        match *self {
            Retention::Time(t) | Retention::TimeAndSize(t, _) => Some(t),
            _ => None,
        }
    }

    pub fn max_bytes(&self) -> Option<u64> {
        match *self {
            Retention::Size(b) | Retention::TimeAndSize(_, b) => Some(b),
            _ => None,
        }
    }
}

/// What the compactor does with a log's closed segments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompactionMode {
    #[default]
    None,
    DeleteMarkers,
    KeyBased,
    TimeSeries,
}

/// Whether a log's history is tamper-evident. Fixed at creation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Integrity {
    /// An ordinary log: compaction and retention may remove records.
    #[default]
    None,
    /// A ledger: every archived record is hash-chained and Merkle-rooted, checkpoints are
    /// signed, and nothing archived is ever removed (compaction must be `none`, retention
    /// infinite; deleting the log needs a superuser and an explicit break-glass flag).
    Ledger,
}

/// How a time-series log reads a metric from its records and downsamples old data.
///
/// ```toml
/// [time_series]
/// value_field = "value"          # JSON number in the record value
/// tags = ["host", "region"]      # series identity; empty = the record key
/// tiers = [ { after = "1d", bucket = "10m" }, { after = "7d", bucket = "1h" } ]
/// ```
/// reads: raw for 1 day, 10-minute buckets until 7 days, 1-hour buckets after.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeSeriesSpec {
    /// Top-level field of the JSON record value holding the sample (a number).
    pub value_field: String,
    /// Top-level JSON fields whose values name the series; empty means the record key.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Downsampling tiers, youngest first.
    pub tiers: Vec<DownsampleTier>,
}

/// Data whose bucket ended more than `after` ago is kept as one row per `bucket` and series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownsampleTier {
    #[serde(with = "humantime_serde")]
    pub after: Duration,
    #[serde(with = "humantime_serde")]
    pub bucket: Duration,
}

impl TimeSeriesSpec {
    /// Checks the tiers: ages and bucket widths strictly increase, every width is a whole
    /// number of seconds and a multiple of the previous one (so buckets nest and a coarser
    /// pass can merge finer rows).
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.value_field.is_empty() {
            return bad("time_series.value_field", "must name a JSON field");
        }
        if self.tiers.is_empty() {
            return bad("time_series.tiers", "declare at least one tier");
        }
        let mut prev: Option<DownsampleTier> = None;
        for t in &self.tiers {
            let secs = t.bucket.as_secs();
            if secs == 0 || t.bucket.subsec_nanos() != 0 {
                return bad(
                    "time_series.tiers",
                    "bucket widths must be whole seconds, at least 1s",
                );
            }
            if let Some(p) = prev {
                if t.after <= p.after || t.bucket <= p.bucket {
                    return bad(
                        "time_series.tiers",
                        "tiers must be ordered by increasing `after` and `bucket`",
                    );
                }
                if secs % p.bucket.as_secs() != 0 {
                    return bad(
                        "time_series.tiers",
                        format!(
                            "bucket {} is not a multiple of the previous bucket {}",
                            humantime::format_duration(t.bucket),
                            humantime::format_duration(p.bucket)
                        ),
                    );
                }
            }
            prev = Some(*t);
        }
        Ok(())
    }
}

/// When the leader fsyncs appended batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum FsyncPolicy {
    /// fsync before acknowledging each produce request (group commit shares one fsync between
    /// concurrent producers). Spelled `"every_batch"`.
    EveryBatch,
    /// fsync at most this often in the background. Spelled as a duration, e.g. `"100ms"`.
    Interval(Duration),
    /// Leave it to the OS (and to replication). Spelled `"never"`.
    Never,
}

impl TryFrom<String> for FsyncPolicy {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        match s.as_str() {
            "every_batch" => Ok(FsyncPolicy::EveryBatch),
            "never" => Ok(FsyncPolicy::Never),
            other => humantime::parse_duration(other)
                .map(FsyncPolicy::Interval)
                .map_err(|e| {
                    format!("fsync must be \"every_batch\", \"never\" or a duration like \"100ms\": {e}")
                }),
        }
    }
}

impl From<FsyncPolicy> for String {
    fn from(p: FsyncPolicy) -> String {
        match p {
            FsyncPolicy::EveryBatch => "every_batch".into(),
            FsyncPolicy::Never => "never".into(),
            FsyncPolicy::Interval(d) => humantime::format_duration(d).to_string(),
        }
    }
}

/// When a produce request is acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckPolicy {
    /// Answer at once; the write may still fail.
    None,
    /// After the leader's local append (and fsync if the log's policy asks for it).
    #[default]
    Leader,
    /// When the high watermark covers the batch (a write quorum of the ISR has it).
    Quorum,
    /// When every ISR member has it.
    All,
}

/// Configuration of one log, fixed at creation except where noted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    pub partition_count: u32,
    pub replication_factor: u16,
    /// Write quorum: acks=quorum needs this many ISR members to hold a batch.
    pub min_in_sync_replicas: u16,
    pub read_quorum: u16,
    /// Total retention, across both tiers.
    pub retention: Retention,
    /// Retention of the hot tier; applies only to segments already safe in the cold tier.
    pub local_retention: Retention,
    pub compaction: CompactionMode,
    #[serde(with = "humantime_serde")]
    pub min_compaction_lag: Duration,
    #[serde(with = "humantime_serde")]
    pub compaction_interval: Duration,
    #[serde(with = "humantime_serde")]
    pub delete_retention: Duration,
    /// Roll the active segment when it reaches this size.
    pub segment_bytes: u64,
    /// Roll the active segment when its first batch is this old.
    #[serde(with = "humantime_serde")]
    pub segment_ms: Duration,
    /// Add a sparse index entry every this many bytes of log.
    pub index_interval_bytes: u32,
    pub fsync: FsyncPolicy,
    /// Largest single record payload (key + value + headers).
    pub max_record_bytes: u32,
    /// Largest encoded batch accepted by produce.
    pub max_batch_bytes: u32,
    /// Allow electing a leader outside the ISR (may lose data).
    pub unclean_leader_election: bool,
    /// How to read and downsample a metric (required by `compaction = "time_series"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_series: Option<TimeSeriesSpec>,
    /// `ledger` makes the log tamper-evident (see [`Integrity`]).
    #[serde(skip_serializing_if = "is_default_integrity")]
    pub integrity: Integrity,
    /// A ledger's hash-chain definition (`pyralog_ledger::ChainVersion`), stamped when the log
    /// is created and never changed: `None` is a ledger created before version 3 existed, so
    /// it keeps the version-2 chain its archive and journals hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_chain: Option<u8>,
}

/// The ledger chain version new ledgers are created with.
pub const LEDGER_CHAIN_CURRENT: u8 = 3;
/// The ledger chain version of ledgers whose config names none.
pub const LEDGER_CHAIN_LEGACY: u8 = 2;

impl LogConfig {
    /// The number of the hash-chain definition this log uses (meaningful for ledgers).
    pub fn ledger_chain_version(&self) -> u8 {
        self.ledger_chain.unwrap_or(LEDGER_CHAIN_LEGACY)
    }
}

fn is_default_integrity(i: &Integrity) -> bool {
    *i == Integrity::None
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            partition_count: 1,
            replication_factor: 1,
            min_in_sync_replicas: 1,
            read_quorum: 1,
            retention: Retention::Time(Duration::from_secs(7 * 24 * 3600)),
            local_retention: Retention::Time(Duration::from_secs(24 * 3600)),
            compaction: CompactionMode::None,
            min_compaction_lag: Duration::ZERO,
            compaction_interval: Duration::from_secs(5 * 60),
            delete_retention: Duration::from_secs(24 * 3600),
            segment_bytes: 256 * 1024 * 1024,
            segment_ms: Duration::from_secs(3600),
            index_interval_bytes: 4096,
            fsync: FsyncPolicy::EveryBatch,
            max_record_bytes: 1024 * 1024,
            max_batch_bytes: 8 * 1024 * 1024,
            unclean_leader_election: false,
            time_series: None,
            integrity: Integrity::None,
            ledger_chain: None,
        }
    }
}

/// Hard limits, so a typo cannot ask for something absurd.
pub mod limits {
    pub const MAX_PARTITIONS: u32 = 10_000;
    pub const MIN_SEGMENT_BYTES: u64 = 4096;
    /// Index entries store 32-bit file positions.
    pub const MAX_SEGMENT_BYTES: u64 = 2 * 1024 * 1024 * 1024 - 1;
    /// Largest batch any log may accept (gRPC message size is set above this).
    pub const MAX_BATCH_BYTES: u32 = 64 * 1024 * 1024;
    pub const MAX_REPLICATION_FACTOR: u16 = 7;
    /// Shortest `fsync` interval: below it the flush ticker would keep a core busy.
    pub const MIN_FSYNC_INTERVAL: std::time::Duration = std::time::Duration::from_millis(1);
}

/// Why a [`LogConfig`] is rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid log config: {field}: {problem}")]
pub struct ConfigError {
    pub field: &'static str,
    pub problem: String,
}

fn bad(field: &'static str, problem: impl Into<String>) -> Result<(), ConfigError> {
    Err(ConfigError {
        field,
        problem: problem.into(),
    })
}

impl LogConfig {
    pub fn validate(&self) -> Result<(), ConfigError> {
        use limits::*;
        if self.partition_count == 0 || self.partition_count > MAX_PARTITIONS {
            return bad(
                "partition_count",
                format!("must be 1..={MAX_PARTITIONS}, got {}", self.partition_count),
            );
        }
        if self.replication_factor == 0 || self.replication_factor > MAX_REPLICATION_FACTOR {
            return bad(
                "replication_factor",
                format!(
                    "must be 1..={MAX_REPLICATION_FACTOR}, got {}",
                    self.replication_factor
                ),
            );
        }
        if self.min_in_sync_replicas == 0 || self.min_in_sync_replicas > self.replication_factor {
            return bad(
                "min_in_sync_replicas",
                format!(
                    "must be 1..=replication_factor ({}), got {}",
                    self.replication_factor, self.min_in_sync_replicas
                ),
            );
        }
        if self.read_quorum == 0 || self.read_quorum > self.replication_factor {
            return bad("read_quorum", "must be 1..=replication_factor");
        }
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad(
                "segment_bytes",
                format!(
                    "must be {MIN_SEGMENT_BYTES}..={MAX_SEGMENT_BYTES}, got {}",
                    self.segment_bytes
                ),
            );
        }
        if self.segment_ms.is_zero() {
            return bad("segment_ms", "must be positive");
        }
        if self.index_interval_bytes == 0 {
            return bad("index_interval_bytes", "must be positive");
        }
        if let FsyncPolicy::Interval(d) = self.fsync {
            if d < MIN_FSYNC_INTERVAL {
                return bad(
                    "fsync",
                    format!(
                        "interval must be at least {} (or use \"every_batch\"), got {}",
                        humantime::format_duration(MIN_FSYNC_INTERVAL),
                        humantime::format_duration(d)
                    ),
                );
            }
        }
        if self.max_batch_bytes == 0 || self.max_batch_bytes > MAX_BATCH_BYTES {
            return bad(
                "max_batch_bytes",
                format!(
                    "must be 1..={MAX_BATCH_BYTES}, got {}",
                    self.max_batch_bytes
                ),
            );
        }
        if self.max_record_bytes == 0 || self.max_record_bytes > self.max_batch_bytes {
            return bad("max_record_bytes", "must be 1..=max_batch_bytes");
        }
        if u64::from(self.max_batch_bytes) > self.segment_bytes {
            // A batch never spans segments, so one must fit.
            return bad("segment_bytes", "must be at least max_batch_bytes");
        }
        for (field, r) in [
            ("retention", self.retention),
            ("local_retention", self.local_retention),
        ] {
            if r.max_age().is_some_and(|d| d.is_zero()) || r.max_bytes() == Some(0) {
                return bad(field, "limits must be positive (omit them for infinite)");
            }
        }
        if self.compaction_interval.is_zero() {
            return bad("compaction_interval", "must be positive");
        }
        match (&self.compaction, &self.time_series) {
            (CompactionMode::TimeSeries, None) => {
                return bad(
                    "time_series",
                    "compaction = \"time_series\" needs a [time_series] section",
                )
            }
            (_, Some(ts)) => ts.validate()?,
            _ => {}
        }
        if self.integrity == Integrity::Ledger {
            if self.compaction != CompactionMode::None {
                return bad(
                    "compaction",
                    "a ledger log never removes records: compaction must be \"none\"",
                );
            }
            if self.retention.max_age().is_some() || self.retention.max_bytes().is_some() {
                return bad(
                    "retention",
                    "a ledger log never removes records: retention must be infinite",
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_valid() {
        LogConfig::default()
            .validate()
            .expect("default config valid");
    }

    #[test]
    fn a_ledger_refuses_compaction_and_finite_retention() {
        let ledger = LogConfig {
            integrity: Integrity::Ledger,
            retention: Retention::Infinite,
            ..LogConfig::default()
        };
        ledger
            .validate()
            .expect("an infinite, uncompacted ledger is valid");
        let finite = LogConfig {
            retention: Retention::Time(Duration::from_secs(3600)),
            ..ledger.clone()
        };
        assert_eq!(finite.validate().map_err(|e| e.field), Err("retention"));
        let compacted = LogConfig {
            compaction: CompactionMode::KeyBased,
            ..ledger
        };
        assert_eq!(compacted.validate().map_err(|e| e.field), Err("compaction"));
    }

    #[test]
    fn zero_partitions_rejected() {
        let c = LogConfig {
            partition_count: 0,
            ..Default::default()
        };
        let e = c.validate().expect_err("zero partitions");
        assert_eq!(e.field, "partition_count");
    }

    #[test]
    fn toml_round_trip() {
        let text = r#"
            partition_count = 4
            retention = { max_age = "2days", max_bytes = 1000000 }
            local_retention = {}
            fsync = "100ms"
            compaction = "key_based"
        "#;
        let c: LogConfig = toml::from_str(text).expect("parse");
        assert_eq!(c.partition_count, 4);
        assert_eq!(
            c.retention,
            Retention::TimeAndSize(Duration::from_secs(2 * 86400), 1_000_000)
        );
        assert_eq!(c.local_retention, Retention::Infinite);
        assert_eq!(c.fsync, FsyncPolicy::Interval(Duration::from_millis(100)));
        assert_eq!(c.compaction, CompactionMode::KeyBased);
        let back: LogConfig = toml::from_str(&toml::to_string(&c).expect("ser")).expect("de");
        assert_eq!(back, c);
    }

    #[test]
    fn time_series_spec_parses_and_validates() {
        let text = r#"
            compaction = "time_series"
            [time_series]
            value_field = "v"
            tags = ["host"]
            tiers = [ { after = "1d", bucket = "10m" }, { after = "7d", bucket = "1h" } ]
        "#;
        let c: LogConfig = toml::from_str(text).expect("parse");
        c.validate().expect("valid");
        let ts = c.time_series.as_ref().expect("spec");
        assert_eq!(ts.tiers[1].bucket, Duration::from_secs(3600));

        let mut bad_nesting = c.clone();
        if let Some(ts) = bad_nesting.time_series.as_mut() {
            ts.tiers[1].bucket = Duration::from_secs(25 * 60);
        }
        let e = bad_nesting
            .validate()
            .expect_err("25m is not a multiple of 10m");
        assert!(e.problem.contains("multiple"), "{e}");

        let missing = LogConfig {
            compaction: CompactionMode::TimeSeries,
            ..LogConfig::default()
        };
        assert_eq!(
            missing.validate().expect_err("no spec").field,
            "time_series"
        );
    }

    #[test]
    fn fsync_interval_below_the_floor_is_refused() {
        for spelled in ["1ns", "999us"] {
            let c: LogConfig =
                toml::from_str(&format!("fsync = \"{spelled}\"")).expect("parses as a duration");
            let e = c.validate().expect_err("below the floor");
            assert_eq!(e.field, "fsync");
            assert!(e.problem.contains("at least 1ms"), "{e}");
        }
        let c: LogConfig = toml::from_str("fsync = \"1ms\"").expect("parses");
        c.validate().expect("the floor itself is allowed");
    }

    #[test]
    fn bad_fsync_is_a_clear_error() {
        let e = toml::from_str::<LogConfig>("fsync = \"sometimes\"").expect_err("bad");
        assert!(e.to_string().contains("every_batch"), "{e}");
    }
}
