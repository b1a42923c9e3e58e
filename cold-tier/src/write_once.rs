//! Write-once storage: archived objects and manifests put under retention as they are stored.
//!
//! `object_store` cannot set S3 Object Lock, so the cold tier only names the step: a
//! [`WriteOnce`] is given each object's key right after the object is stored, and puts it
//! under retention (the implementation on S3 is the `pyralog-object-lock` crate, through
//! `aws-sdk-s3`). The order, which the node relies on:
//!
//! 1. a segment object is uploaded (create-only PUT);
//! 2. it is locked ([`WriteOnce::lock`]): `crate::ColdPartition` locks every object a new
//!    manifest adds *before* committing that manifest, so no committed manifest ever names an
//!    object that is not locked;
//! 3. the manifest version is committed (create-only PUT);
//! 4. the manifest version is locked ([`crate::ManifestStore::commit`]), the very version the
//!    PUT created (by its version id). A crash or failure between 3 and 4 is healed by the
//!    next load that adopts that version (partition open on any node, or the reload after a
//!    commit conflict), which locks it.
//!
//! Locking is idempotent: a version already retained into the future is left alone, so a
//! reload never asks the store to shorten a retention (S3 refuses that in compliance mode,
//! which would stop the node from opening its own partitions).
//!
//! What this does not close: between a segment object's upload and its lock (step 1 to 2) a
//! principal allowed to write the bucket could put a new version over it, and step 2 locks
//! the current version. A bucket *default retention* (`PutObjectLockConfiguration` with a
//! default rule) has S3 lock every version at its PUT and closes that window; the node's own
//! lock then finds the version retained and leaves it.
//!
//! [`ObjectLockSettings`] is the plain configuration (`[cold_tier] object_lock = { mode =
//! "compliance", retain = "7years" }`); it only makes sense on an `s3://` store.

use std::time::Duration;

use async_trait::async_trait;
use object_store::path::Path;
use serde::{Deserialize, Serialize};

use crate::error::ColdError;
use crate::store::ObjectStoreConfig;

/// Puts stored objects under write-once retention.
#[async_trait]
pub trait WriteOnce: Send + Sync + std::fmt::Debug {
    /// Puts the object at `key` under retention until now plus the configured period:
    /// `version` (the id the store answered the PUT with, on a versioned bucket) or, without
    /// one, the current version. A version already retained into the future is left as it is:
    /// locking is idempotent and never shortens, nor extends, a retention (a `retain` lowered
    /// in the configuration since does not make the store refuse the node's own objects).
    async fn lock(&self, key: &Path, version: Option<&str>) -> Result<(), ColdError>;

    /// What the lock is, for messages: `S3 Object Lock (compliance, retain 7years)`.
    fn describe(&self) -> String;
}

/// S3 Object Lock retention modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LockMode {
    /// No one, the bucket's root account included, can delete a locked version or shorten
    /// its retention before the retain-until date.
    Compliance,
    /// Users with `s3:BypassGovernanceRetention` can delete or shorten; others cannot.
    Governance,
}

impl std::fmt::Display for LockMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LockMode::Compliance => "compliance",
            LockMode::Governance => "governance",
        })
    }
}

/// Longest `retain` accepted: a typo (`7000years`) is refused rather than locking objects for
/// millennia.
pub const MAX_RETAIN: Duration = Duration::from_secs(100 * 31_557_600);

/// `[cold_tier] object_lock`: how archived objects and manifests are locked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectLockSettings {
    pub mode: LockMode,
    /// How long each object stays locked after it is stored (`"7years"`, `"90days"`).
    #[serde(with = "humantime_serde")]
    pub retain: Duration,
}

impl ObjectLockSettings {
    /// Checks the settings against the store they lock: only S3 has Object Lock, and the
    /// period must be positive and at most [`MAX_RETAIN`].
    pub fn validate(&self, store: &ObjectStoreConfig) -> Result<(), String> {
        if self.retain.is_zero() || self.retain > MAX_RETAIN {
            return Err(format!(
                "object_lock.retain must be positive and at most 100years (got {})",
                humantime_serde::re::humantime::format_duration(self.retain)
            ));
        }
        let scheme = store.url.split_once("://").map(|(s, _)| s);
        if !matches!(scheme, Some("s3" | "s3a")) {
            return Err(format!(
                "object_lock is S3 Object Lock: it needs an s3:// object store, not {:?}",
                store.url
            ));
        }
        Ok(())
    }

    /// `compliance, retain 7years`.
    pub fn describe(&self) -> String {
        format!(
            "{}, retain {}",
            self.mode,
            humantime_serde::re::humantime::format_duration(self.retain)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Section {
        object_lock: Option<ObjectLockSettings>,
    }

    /// The node reads these from TOML; the same derive through JSON checks the same rules.
    fn parse(json: &str) -> Result<Option<ObjectLockSettings>, String> {
        serde_json::from_str::<Section>(json)
            .map(|s| s.object_lock)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn modes_and_durations_parse() {
        let s = parse(r#"{"object_lock":{"mode":"compliance","retain":"7years"}}"#)
            .expect("parses")
            .expect("set");
        assert_eq!(s.mode, LockMode::Compliance);
        assert_eq!(s.retain, Duration::from_secs(7 * 31_557_600));
        assert_eq!(s.describe(), "compliance, retain 7years");
        let g = parse(r#"{"object_lock":{"mode":"governance","retain":"90days"}}"#)
            .expect("parses")
            .expect("set");
        assert_eq!(g.mode, LockMode::Governance);
        assert_eq!(g.retain, Duration::from_secs(90 * 86_400));
        assert_eq!(parse("{}").expect("absent"), None, "off by default");
    }

    #[test]
    fn bad_input_is_refused() {
        for bad in [
            r#"{"object_lock":{"mode":"Compliance","retain":"1day"}}"#,
            r#"{"object_lock":{"mode":"legal-hold","retain":"1day"}}"#,
            r#"{"object_lock":{"mode":"compliance","retain":"seven years"}}"#,
            r#"{"object_lock":{"mode":"compliance","retain":"-1day"}}"#,
            r#"{"object_lock":{"mode":"compliance"}}"#,
            r#"{"object_lock":{"retain":"1day"}}"#,
            r#"{"object_lock":{"mode":"compliance","retain":"1day","until":"2030"}}"#,
            r#"{"object_lock":{"mode":"compliance","retain":7}}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn validation_needs_s3_and_a_sane_period() {
        let s3 = ObjectStoreConfig::for_url("s3://bucket/prefix");
        let ok = ObjectLockSettings {
            mode: LockMode::Compliance,
            retain: Duration::from_secs(86_400),
        };
        ok.validate(&s3).expect("s3 is fine");
        ok.validate(&ObjectStoreConfig::for_url("s3a://b"))
            .expect("s3a");
        for url in [
            "file:///tmp/x",
            "memory://",
            "gs://b/p",
            "az://c/p",
            "not a url",
        ] {
            let err = ok
                .validate(&ObjectStoreConfig::for_url(url))
                .expect_err(url);
            assert!(err.contains("S3 Object Lock"), "{url}: {err}");
        }
        for retain in [Duration::ZERO, MAX_RETAIN + Duration::from_secs(1)] {
            let err = ObjectLockSettings { retain, ..ok }
                .validate(&s3)
                .expect_err("bad period");
            assert!(err.contains("object_lock.retain"), "{err}");
        }
    }
}

/// The order of locks and commits, over an in-memory store (the S3 side is tested against a
/// real server in `pyralog-object-lock` and end to end).
#[cfg(test)]
mod order_tests;
