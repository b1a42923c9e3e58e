//! Identifiers: log names, partitions, offsets, epochs, timestamps.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Maximum length of a log name (the pattern is `[a-z0-9][a-z0-9._-]{0,248}`).
pub const MAX_LOG_ID_LEN: usize = 249;

/// The user-facing name of a stream.
///
/// Valid names match `[a-z0-9][a-z0-9._-]{0,248}`: they are safe as a directory name, an
/// object-store path segment and a hive partition value, so no escaping is ever needed.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LogId(String);

/// Why a string is not a valid [`LogId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LogIdError {
    #[error("log name is empty")]
    Empty,
    #[error("log name is {len} characters long; the maximum is {MAX_LOG_ID_LEN}")]
    TooLong { len: usize },
    #[error("log name must start with a lowercase letter or digit, not {found:?}")]
    BadStart { found: char },
    #[error(
        "log name contains {found:?} at position {position}; allowed are a-z, 0-9, '.', '_' and '-'"
    )]
    BadChar { found: char, position: usize },
}

impl LogId {
    /// Validates and wraps a log name.
    pub fn new(name: impl Into<String>) -> Result<Self, LogIdError> {
        let name = name.into();
        Self::validate(&name)?;
        Ok(Self(name))
    }

    fn validate(name: &str) -> Result<(), LogIdError> {
        let mut chars = name.chars();
        let first = chars.next().ok_or(LogIdError::Empty)?;
        let len = name.chars().count();
        if len > MAX_LOG_ID_LEN {
            return Err(LogIdError::TooLong { len });
        }
        if !(first.is_ascii_lowercase() || first.is_ascii_digit()) {
            return Err(LogIdError::BadStart { found: first });
        }
        for (i, c) in name.chars().enumerate().skip(1) {
            if !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
                return Err(LogIdError::BadChar {
                    found: c,
                    position: i,
                });
            }
        }
        Ok(())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for LogId {
    type Error = LogIdError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::new(value)
    }
}

impl From<LogId> for String {
    fn from(value: LogId) -> Self {
        value.0
    }
}

impl FromStr for LogId {
    type Err = LogIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LogId({})", self.0)
    }
}

/// A shard of a log.
pub type PartitionId = u32;

/// A node of the cluster, as named in its config (`node_id`); unique and stable across
/// restarts, because replica placement and ISRs refer to it.
pub type NodeId = u64;

/// Microseconds since the Unix epoch, UTC. Record timestamps use this unit end to end (batch
/// header, time index, Parquet `TIMESTAMP(us, UTC)`), so no precision is lost between tiers.
pub type TimestampMicros = i64;

/// A dense, gap-free position inside a partition, assigned by the leader.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogOffset(pub u64);

impl LogOffset {
    /// The first offset of every partition.
    pub const ZERO: LogOffset = LogOffset(0);
    /// "The end": used in requests to mean the latest offset.
    pub const MAX: LogOffset = LogOffset(u64::MAX);

    pub fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for LogOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl fmt::Debug for LogOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "@{}", self.0)
    }
}

/// Leader generation of a partition. Bumped by the controller at every leader change; every
/// batch carries the epoch that wrote it.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Debug, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Epoch(pub u64);

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "e{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_pattern() {
        for ok in ["a", "0", "orders", "orders.v2", "a_b-c.d", &"x".repeat(249)] {
            assert!(LogId::new(ok).is_ok(), "{ok} should be valid");
        }
    }

    #[test]
    fn rejects_bad_names_with_a_reason() {
        assert_eq!(LogId::new(""), Err(LogIdError::Empty));
        assert_eq!(
            LogId::new("a/b"),
            Err(LogIdError::BadChar {
                found: '/',
                position: 1
            })
        );
        assert_eq!(LogId::new("A"), Err(LogIdError::BadStart { found: 'A' }));
        assert!(matches!(
            LogId::new("x@y"),
            Err(LogIdError::BadChar { found: '@', .. })
        ));
        assert_eq!(LogId::new(".."), Err(LogIdError::BadStart { found: '.' }));
        assert_eq!(
            LogId::new("x".repeat(300)),
            Err(LogIdError::TooLong { len: 300 })
        );
        assert!(LogId::new("has space").is_err());
        assert!(LogId::new("-lead").is_err());
    }

    #[test]
    fn serde_validates() {
        let bad: Result<LogId, _> = serde_json::from_str("\"A/B\"");
        assert!(bad.is_err());
        let good: LogId = serde_json::from_str("\"ok\"").expect("valid");
        assert_eq!(good.as_str(), "ok");
    }
}
