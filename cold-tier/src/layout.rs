//! Where things live in the bucket.
//!
//! Segments use the hive layout `{prefix}/log={log}/partition={p}/{base:020}-{last:020}.parquet`
//! so any SQL engine can read a log as a partitioned table by globbing `*.parquet`. Manifests
//! live in a separate tree, `{prefix}/_manifests/...`, so that glob never picks them up, and
//! startup probes under `{prefix}/_pyralog/`. Keys are pure functions of (log, partition,
//! offsets, generation): an upload retried after a crash lands on the same key, which is what
//! makes uploads idempotent. [`LogId`]'s alphabet needs no escaping in any of these paths.

use object_store::path::Path;
use pyralog_types::{LogId, LogOffset, PartitionId};

use crate::error::ColdError;

/// Key schema of one cold tier (one bucket + prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    prefix: Path,
}

/// The parts of a segment key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentKey {
    pub log: LogId,
    pub partition: PartitionId,
    pub base_offset: LogOffset,
    pub last_offset: LogOffset,
    /// Compaction generation; 0 (no suffix in the key) for a segment as first uploaded.
    pub generation: u64,
}

const MANIFESTS: &str = "_manifests";
const INTERNAL: &str = "_pyralog";

impl Layout {
    /// A layout under `prefix` (`""` for the bucket root). Slashes at either end are ignored.
    pub fn new(prefix: &str) -> Result<Self, ColdError> {
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| ColdError::Config(format!("invalid object prefix {prefix:?}: {e}")))?;
        Ok(Layout { prefix })
    }

    pub fn prefix(&self) -> &Path {
        &self.prefix
    }

    /// `{prefix}/log={log}`: a log's objects, and the location of its Iceberg table (whose
    /// metadata lives in `metadata/` beside the `partition=` folders).
    pub fn log_dir(&self, log: &LogId) -> Path {
        self.prefix.clone().join(format!("log={log}").as_str())
    }

    /// `{prefix}/log={log}/partition={p}`: every segment object of one partition.
    pub fn partition_dir(&self, log: &LogId, partition: PartitionId) -> Path {
        self.log_dir(log)
            .join(format!("partition={partition}").as_str())
    }

    /// The key of a segment: `{base:020}-{last:020}.parquet` for generation 0, and
    /// `{base:020}-{last:020}-g{generation}.parquet` for a compacted rewrite of the same range
    /// (so a rewrite never collides with, or overwrites, the object it replaces).
    pub fn segment_key(
        &self,
        log: &LogId,
        partition: PartitionId,
        base: LogOffset,
        last: LogOffset,
        generation: u64,
    ) -> Path {
        let name = if generation == 0 {
            format!("{:020}-{:020}.parquet", base.0, last.0)
        } else {
            format!("{:020}-{:020}-g{generation}.parquet", base.0, last.0)
        };
        self.partition_dir(log, partition).join(name.as_str())
    }

    /// `{prefix}/_manifests/log={log}/partition={p}`: every manifest version of a partition.
    pub fn manifest_dir(&self, log: &LogId, partition: PartitionId) -> Path {
        self.prefix
            .clone()
            .join(MANIFESTS)
            .join(format!("log={log}").as_str())
            .join(format!("partition={partition}").as_str())
    }

    /// The object holding manifest `version`: `{manifest_dir}/{version:020}.json`.
    pub fn manifest_key(&self, log: &LogId, partition: PartitionId, version: u64) -> Path {
        self.manifest_dir(log, partition)
            .join(format!("{version:020}.json").as_str())
    }

    /// Reads the version back from a manifest object's key.
    pub fn parse_manifest_version(key: &Path) -> Option<u64> {
        let name = key.filename()?;
        let digits = name.strip_suffix(".json")?;
        if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    }

    /// `{prefix}/_pyralog/logs`: the bucket's copy of every archived log's configuration.
    pub fn registry_dir(&self) -> Path {
        self.prefix.clone().join(INTERNAL).join("logs")
    }

    /// `{registry_dir}/{log}.json`.
    pub fn registry_key(&self, log: &LogId) -> Path {
        self.registry_dir().join(format!("{log}.json").as_str())
    }

    /// A key for the startup probe object.
    pub fn probe_key(&self, nonce: &str) -> Path {
        self.prefix
            .clone()
            .join(INTERNAL)
            .join(format!("probe-{nonce}").as_str())
    }

    /// Parses a segment key produced by [`Layout::segment_key`] under this prefix.
    pub fn parse_segment_key(&self, key: &Path) -> Option<SegmentKey> {
        let mut parts = key.prefix_match(&self.prefix)?;
        let log = parts.next()?;
        let log = LogId::new(log.as_ref().strip_prefix("log=")?).ok()?;
        let partition = parts.next()?;
        let partition: PartitionId = partition
            .as_ref()
            .strip_prefix("partition=")?
            .parse()
            .ok()?;
        let file = parts.next()?;
        if parts.next().is_some() {
            return None;
        }
        let stem = file.as_ref().strip_suffix(".parquet")?;
        let (base, rest) = stem.split_once('-')?;
        let (last, generation) = match rest.split_once("-g") {
            Some((last, g)) => (last, parse_digits(g)?),
            None => (rest, 0),
        };
        if base.len() != 20 || last.len() != 20 {
            return None;
        }
        let (base, last) = (parse_digits(base)?, parse_digits(last)?);
        if last < base || (generation == 0 && rest.contains("-g")) {
            return None;
        }
        Some(SegmentKey {
            log,
            partition,
            base_offset: LogOffset(base),
            last_offset: LogOffset(last),
            generation,
        })
    }
}

fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn log() -> LogId {
        LogId::new("orders.v2").expect("valid log")
    }

    #[test]
    fn segment_keys_follow_the_hive_layout() {
        let l = Layout::new("/cold/").expect("layout");
        let k = l.segment_key(&log(), 3, LogOffset(1000), LogOffset(1999), 0);
        assert_eq!(
            k.as_ref(),
            "cold/log=orders.v2/partition=3/00000000000000001000-00000000000000001999.parquet"
        );
        let parsed = l.parse_segment_key(&k).expect("parses");
        assert_eq!(parsed.partition, 3);
        assert_eq!(parsed.base_offset, LogOffset(1000));
        assert_eq!(parsed.last_offset, LogOffset(1999));
        assert_eq!(parsed.generation, 0);

        let g = l.segment_key(&log(), 3, LogOffset(0), LogOffset(9), 2);
        assert!(g.as_ref().ends_with("-00000000000000000009-g2.parquet"));
        assert_eq!(l.parse_segment_key(&g).map(|s| s.generation), Some(2));
    }

    #[test]
    fn root_prefix_and_manifest_keys() {
        let l = Layout::new("").expect("layout");
        let k = l.manifest_key(&log(), 0, 7);
        assert_eq!(
            k.as_ref(),
            "_manifests/log=orders.v2/partition=0/00000000000000000007.json"
        );
        assert_eq!(Layout::parse_manifest_version(&k), Some(7));
        assert!(
            !k.as_ref().starts_with("log="),
            "manifests stay out of the hive tree"
        );
    }

    #[test]
    fn rejects_foreign_keys() {
        let l = Layout::new("p").expect("layout");
        for bad in [
            "p/log=a/partition=0/notes.txt",
            "p/log=a/partition=x/00000000000000000000-00000000000000000001.parquet",
            "p/log=A/partition=0/00000000000000000000-00000000000000000001.parquet",
            "p/log=a/partition=0/00000000000000000005-00000000000000000001.parquet",
            "q/log=a/partition=0/00000000000000000000-00000000000000000001.parquet",
            "p/log=a/partition=0/1-2.parquet",
        ] {
            assert!(l.parse_segment_key(&Path::from(bad)).is_none(), "{bad}");
        }
    }
}
