//! The summary of one archived object: the leaf of a partition's archive tree.
//!
//! An object (a Parquet segment in the bucket) holds a run of consecutive records. Its
//! summary ties three things together: the offsets it covers, the hash chain across it (the
//! head before its first record and after its last, so consecutive summaries must link up)
//! and the Merkle root over its records' leaf hashes (so one record can be proven with a
//! short path instead of the whole object). The archive tree over the summaries, in object
//! order, is what a checkpoint signs.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::LEAF;
use crate::hash::{hex_hash, Hash};

/// The prefix of an object summary's leaf; the version changes if its encoding does.
pub const OBJECT_DOMAIN: &[u8] = b"pyralog-ledger-object-v1";

/// What the archive tree commits to about one archived object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectSummary {
    /// Offset of the object's first record.
    pub base_offset: u64,
    /// Offset of the object's last record.
    pub last_offset: u64,
    /// Records in the object (offsets may have gaps after compaction).
    pub record_count: u64,
    /// The chain head before the object's first record.
    #[serde(with = "hex_hash")]
    pub chain_start: Hash,
    /// The chain head after the object's last record.
    #[serde(with = "hex_hash")]
    pub chain_end: Hash,
    /// RFC 6962 root over the object's record leaf hashes, in offset order.
    #[serde(with = "hex_hash")]
    pub merkle_root: Hash,
}

impl ObjectSummary {
    /// The summary's leaf in the archive tree: the RFC 6962 leaf hash of
    /// `"pyralog-ledger-object-v1" ‖ base u64 BE ‖ last u64 BE ‖ count u64 BE ‖ chain_start ‖
    /// chain_end ‖ merkle_root`.
    pub fn leaf(&self) -> Hash {
        Sha256::new()
            .chain_update([LEAF])
            .chain_update(OBJECT_DOMAIN)
            .chain_update(self.base_offset.to_be_bytes())
            .chain_update(self.last_offset.to_be_bytes())
            .chain_update(self.record_count.to_be_bytes())
            .chain_update(self.chain_start)
            .chain_update(self.chain_end)
            .chain_update(self.merkle_root)
            .finalize()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::leaf_hash;

    fn summary() -> ObjectSummary {
        ObjectSummary {
            base_offset: 100,
            last_offset: 199,
            record_count: 100,
            chain_start: [1; 32],
            chain_end: [2; 32],
            merkle_root: [3; 32],
        }
    }

    #[test]
    fn the_leaf_is_the_leaf_hash_of_the_documented_encoding() {
        let mut bytes = b"pyralog-ledger-object-v1".to_vec();
        bytes.extend(100u64.to_be_bytes());
        bytes.extend(199u64.to_be_bytes());
        bytes.extend(100u64.to_be_bytes());
        bytes.extend([1; 32]);
        bytes.extend([2; 32]);
        bytes.extend([3; 32]);
        assert_eq!(summary().leaf(), leaf_hash(&bytes));
    }

    #[test]
    fn every_field_changes_the_leaf() {
        let base = summary().leaf();
        let edits: [fn(&mut ObjectSummary); 6] = [
            |s| s.base_offset += 1,
            |s| s.last_offset += 1,
            |s| s.record_count += 1,
            |s| s.chain_start[0] ^= 1,
            |s| s.chain_end[31] ^= 1,
            |s| s.merkle_root[5] ^= 1,
        ];
        for edit in edits {
            let mut s = summary();
            edit(&mut s);
            assert_ne!(s.leaf(), base, "{s:?}");
        }
    }

    #[test]
    fn the_json_form_has_hex_hashes_and_refuses_unknown_fields() {
        let json = serde_json::to_value(summary()).expect("serializes");
        assert_eq!(json["chain_start"], "01".repeat(32));
        assert_eq!(json["base_offset"], 100);
        let back: ObjectSummary = serde_json::from_value(json.clone()).expect("parses");
        assert_eq!(back, summary());
        let mut extra = json;
        extra["unsigned"] = serde_json::json!(1);
        assert!(serde_json::from_value::<ObjectSummary>(extra).is_err());
    }
}
