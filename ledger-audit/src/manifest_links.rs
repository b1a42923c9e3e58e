//! The hash chain of a partition's manifest versions.
//!
//! Each committed version names the SHA-256 of the stored bytes of the version before it
//! (`Manifest::prev_hash`), so the versions a bucket keeps form a chain: an older version
//! edited in place after its successor was committed no longer matches its successor's link.
//! The newest version is vouched for by the signed checkpoints instead (they cover its
//! objects), and versions pruned by the node are simply absent: only consecutive kept
//! versions are compared. Once a version carries a link, every later one must (a link that
//! disappears is a finding too); versions written before links existed carry none.

use pyralog_cold_tier::{Manifest, ManifestStore};
use pyralog_types::{LogId, PartitionId};

use crate::error::AuditError;
use crate::findings::Finding;

/// Largest manifest version read for its link (a manifest lists objects, not records).
const MAX_MANIFEST_BYTES: usize = 64 << 20;

/// Checks the links between the kept versions of `log`/`partition`.
pub(crate) async fn check(
    manifests: &ManifestStore,
    log: &LogId,
    partition: PartitionId,
) -> Result<Vec<Finding>, AuditError> {
    let mut findings = Vec::new();
    let versions = manifests.versions(log, partition).await?;
    let mut prev: Option<(u64, String)> = None;
    let mut linked = false;
    for v in versions {
        let Some(bytes) = manifests.version_bytes(log, partition, v).await? else {
            prev = None;
            continue;
        };
        let broken = |detail: String| Finding::ManifestLinkBroken {
            partition,
            version: v,
            detail,
        };
        if bytes.len() > MAX_MANIFEST_BYTES {
            findings.push(broken(format!(
                "{} bytes, more than a manifest holds",
                bytes.len()
            )));
            prev = None;
            continue;
        }
        let link = match serde_json::from_slice::<Manifest>(&bytes) {
            Ok(m) => m.prev_hash,
            Err(e) => {
                findings.push(broken(format!("unreadable: {e}")));
                prev = None;
                continue;
            }
        };
        match (&prev, &link) {
            (Some((pv, hash)), Some(l)) if *pv + 1 == v && l != hash => findings.push(broken(
                format!("it names {l}, version {pv} as stored hashes to {hash}"),
            )),
            (_, None) if linked => findings.push(broken(
                "its link to the version before is missing, though earlier versions have one"
                    .into(),
            )),
            _ => {}
        }
        linked |= link.is_some();
        prev = Some((v, Manifest::link_of(&bytes)));
    }
    Ok(findings)
}
