//! Conversions between wire messages and domain types: one `From`/`TryFrom` pair per type.

use std::time::Duration;

use pyralog_types::batch::NewRecord;
use pyralog_types::config::ConfigError;
use pyralog_types::{
    AckPolicy, CompactionMode, DownsampleTier, Epoch, FsyncPolicy, Header, Integrity, LogConfig,
    LogOffset, Record, Retention, TimeSeriesSpec,
};

use crate::v1;

impl From<Header> for v1::Header {
    fn from(h: Header) -> Self {
        v1::Header {
            key: h.key,
            value: h.value,
        }
    }
}

impl From<v1::Header> for Header {
    fn from(h: v1::Header) -> Self {
        Header {
            key: h.key,
            value: h.value,
        }
    }
}

impl From<Record> for v1::Record {
    fn from(r: Record) -> Self {
        v1::Record {
            offset: r.offset.0,
            epoch: r.epoch.0,
            timestamp_us: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<v1::Record> for Record {
    fn from(r: v1::Record) -> Self {
        Record {
            offset: LogOffset(r.offset),
            epoch: Epoch(r.epoch),
            timestamp: r.timestamp_us,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<v1::NewRecord> for NewRecord {
    fn from(r: v1::NewRecord) -> Self {
        NewRecord {
            timestamp: r.timestamp_us,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<NewRecord> for v1::NewRecord {
    fn from(r: NewRecord) -> Self {
        v1::NewRecord {
            timestamp_us: r.timestamp,
            key: r.key,
            value: r.value,
            headers: r.headers.into_iter().map(Into::into).collect(),
        }
    }
}

impl From<v1::AckPolicy> for AckPolicy {
    fn from(a: v1::AckPolicy) -> Self {
        match a {
            v1::AckPolicy::Unspecified | v1::AckPolicy::Leader => AckPolicy::Leader,
            v1::AckPolicy::None => AckPolicy::None,
            v1::AckPolicy::Quorum => AckPolicy::Quorum,
            v1::AckPolicy::All => AckPolicy::All,
        }
    }
}

impl From<AckPolicy> for v1::AckPolicy {
    fn from(a: AckPolicy) -> Self {
        match a {
            AckPolicy::None => v1::AckPolicy::None,
            AckPolicy::Leader => v1::AckPolicy::Leader,
            AckPolicy::Quorum => v1::AckPolicy::Quorum,
            AckPolicy::All => v1::AckPolicy::All,
        }
    }
}

impl From<CompactionMode> for v1::CompactionMode {
    fn from(c: CompactionMode) -> Self {
        match c {
            CompactionMode::None => v1::CompactionMode::None,
            CompactionMode::DeleteMarkers => v1::CompactionMode::DeleteMarkers,
            CompactionMode::KeyBased => v1::CompactionMode::KeyBased,
            CompactionMode::TimeSeries => v1::CompactionMode::TimeSeries,
        }
    }
}

impl From<Integrity> for v1::Integrity {
    fn from(i: Integrity) -> Self {
        match i {
            Integrity::None => v1::Integrity::None,
            Integrity::Ledger => v1::Integrity::Ledger,
        }
    }
}

impl From<Retention> for v1::Retention {
    fn from(r: Retention) -> Self {
        v1::Retention {
            max_age_ms: r.max_age().map(|d| d.as_millis() as u64),
            max_bytes: r.max_bytes(),
        }
    }
}

impl From<v1::Retention> for Retention {
    fn from(r: v1::Retention) -> Self {
        Retention::from_limits(r.max_age_ms.map(Duration::from_millis), r.max_bytes)
    }
}

fn ms(d: Duration) -> Option<u64> {
    Some(d.as_millis() as u64)
}

impl From<&LogConfig> for v1::LogConfig {
    fn from(c: &LogConfig) -> Self {
        v1::LogConfig {
            partition_count: Some(c.partition_count),
            replication_factor: Some(u32::from(c.replication_factor)),
            min_in_sync_replicas: Some(u32::from(c.min_in_sync_replicas)),
            read_quorum: Some(u32::from(c.read_quorum)),
            retention: Some(c.retention.into()),
            local_retention: Some(c.local_retention.into()),
            compaction: v1::CompactionMode::from(c.compaction) as i32,
            min_compaction_lag_ms: ms(c.min_compaction_lag),
            compaction_interval_ms: ms(c.compaction_interval),
            delete_retention_ms: ms(c.delete_retention),
            segment_bytes: Some(c.segment_bytes),
            segment_ms: ms(c.segment_ms),
            index_interval_bytes: Some(c.index_interval_bytes),
            fsync: Some(String::from(c.fsync)),
            max_record_bytes: Some(c.max_record_bytes),
            max_batch_bytes: Some(c.max_batch_bytes),
            unclean_leader_election: Some(c.unclean_leader_election),
            time_series: c.time_series.as_ref().map(|ts| v1::TimeSeriesSpec {
                value_field: ts.value_field.clone(),
                tags: ts.tags.clone(),
                tiers: ts
                    .tiers
                    .iter()
                    .map(|t| v1::DownsampleTier {
                        after_ms: t.after.as_millis().try_into().unwrap_or(u64::MAX),
                        bucket_ms: t.bucket.as_millis().try_into().unwrap_or(u64::MAX),
                    })
                    .collect(),
            }),
            integrity: v1::Integrity::from(c.integrity) as i32,
        }
    }
}

fn narrow(field: &'static str, v: u32) -> Result<u16, ConfigError> {
    u16::try_from(v).map_err(|_| ConfigError {
        field,
        problem: format!("{v} is too large"),
    })
}

impl v1::LogConfig {
    /// Applies the set fields over `defaults` and validates the result.
    pub fn into_domain(self, defaults: &LogConfig) -> Result<LogConfig, ConfigError> {
        let d = defaults;
        let segment = self.segment_bytes.unwrap_or(d.segment_bytes);
        let batch_default = self.max_batch_bytes.unwrap_or(
            d.max_batch_bytes
                .min(u32::try_from(segment).unwrap_or(u32::MAX)),
        );
        let compaction = match v1::CompactionMode::try_from(self.compaction) {
            Ok(v1::CompactionMode::Unspecified) => d.compaction,
            Ok(v1::CompactionMode::None) => CompactionMode::None,
            Ok(v1::CompactionMode::DeleteMarkers) => CompactionMode::DeleteMarkers,
            Ok(v1::CompactionMode::KeyBased) => CompactionMode::KeyBased,
            Ok(v1::CompactionMode::TimeSeries) => CompactionMode::TimeSeries,
            Err(_) => {
                return Err(ConfigError {
                    field: "compaction",
                    problem: format!("unknown mode {}", self.compaction),
                })
            }
        };
        let integrity = match v1::Integrity::try_from(self.integrity) {
            Ok(v1::Integrity::Unspecified) => d.integrity,
            Ok(v1::Integrity::None) => Integrity::None,
            Ok(v1::Integrity::Ledger) => Integrity::Ledger,
            Err(_) => {
                return Err(ConfigError {
                    field: "integrity",
                    problem: format!("unknown mode {}", self.integrity),
                })
            }
        };
        let fsync = match self.fsync {
            None => d.fsync,
            Some(s) => FsyncPolicy::try_from(s).map_err(|problem| ConfigError {
                field: "fsync",
                problem,
            })?,
        };
        let dur = |v: Option<u64>, dflt: Duration| v.map(Duration::from_millis).unwrap_or(dflt);
        let c = LogConfig {
            partition_count: self.partition_count.unwrap_or(d.partition_count),
            replication_factor: match self.replication_factor {
                Some(v) => narrow("replication_factor", v)?,
                None => d.replication_factor,
            },
            min_in_sync_replicas: match self.min_in_sync_replicas {
                Some(v) => narrow("min_in_sync_replicas", v)?,
                None => d.min_in_sync_replicas,
            },
            read_quorum: match self.read_quorum {
                Some(v) => narrow("read_quorum", v)?,
                None => d.read_quorum,
            },
            // A ledger never removes records: unless told otherwise, it keeps them forever.
            retention: match self.retention {
                Some(r) => r.into(),
                None if integrity == Integrity::Ledger => Retention::Infinite,
                None => d.retention,
            },
            local_retention: self
                .local_retention
                .map(Into::into)
                .unwrap_or(d.local_retention),
            compaction,
            min_compaction_lag: dur(self.min_compaction_lag_ms, d.min_compaction_lag),
            compaction_interval: dur(self.compaction_interval_ms, d.compaction_interval),
            delete_retention: dur(self.delete_retention_ms, d.delete_retention),
            segment_bytes: self.segment_bytes.unwrap_or(d.segment_bytes),
            segment_ms: dur(self.segment_ms, d.segment_ms),
            index_interval_bytes: self.index_interval_bytes.unwrap_or(d.index_interval_bytes),
            fsync,
            // A smaller batch limit or segment size alone lowers the default limits with it.
            max_record_bytes: self
                .max_record_bytes
                .unwrap_or_else(|| d.max_record_bytes.min(batch_default)),
            max_batch_bytes: self.max_batch_bytes.unwrap_or(batch_default),
            unclean_leader_election: self
                .unclean_leader_election
                .unwrap_or(d.unclean_leader_election),
            time_series: match self.time_series {
                None => d.time_series.clone(),
                Some(ts) => Some(TimeSeriesSpec {
                    value_field: ts.value_field,
                    tags: ts.tags,
                    tiers: ts
                        .tiers
                        .iter()
                        .map(|t| DownsampleTier {
                            after: Duration::from_millis(t.after_ms),
                            bucket: Duration::from_millis(t.bucket_ms),
                        })
                        .collect(),
                }),
            },
            integrity,
            ledger_chain: d.ledger_chain,
        };
        c.validate()?;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_round_trips_and_unset_means_default() {
        let c = LogConfig {
            partition_count: 4,
            retention: Retention::Size(1 << 30),
            fsync: FsyncPolicy::Interval(Duration::from_millis(250)),
            compaction: CompactionMode::KeyBased,
            ..Default::default()
        };
        let wire = v1::LogConfig::from(&c);
        assert_eq!(wire.clone().into_domain(&LogConfig::default()), Ok(c));
        let empty = v1::LogConfig::default();
        assert_eq!(
            empty.into_domain(&LogConfig::default()),
            Ok(LogConfig::default())
        );
    }

    #[test]
    fn a_ledger_log_round_trips() {
        let c = LogConfig {
            integrity: Integrity::Ledger,
            retention: Retention::Infinite,
            ..Default::default()
        };
        let wire = v1::LogConfig::from(&c);
        assert_eq!(wire.integrity, v1::Integrity::Ledger as i32);
        assert_eq!(wire.into_domain(&LogConfig::default()), Ok(c));
    }

    #[test]
    fn zero_partitions_is_rejected() {
        let wire = v1::LogConfig {
            partition_count: Some(0),
            ..Default::default()
        };
        let e = wire
            .into_domain(&LogConfig::default())
            .expect_err("invalid");
        assert_eq!(e.field, "partition_count");
    }
}
