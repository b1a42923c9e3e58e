//! The hash type and its text form. Every hash of ledger mode is a SHA-256 digest; in JSON
//! documents (checkpoints, proofs) hashes are lowercase hex strings, so a verifier in any
//! language reads them without a custom decoder. Parsing accepts either case and checks the
//! length before decoding, so a hostile document cannot make it allocate.

use std::fmt;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serializer};

use crate::error::LedgerError;

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The lowercase hex form of `hash` (64 characters).
pub fn to_hex(hash: &Hash) -> String {
    hex::encode(hash)
}

/// Parses the 64-hex-character form of a hash.
pub fn from_hex(s: &str) -> Result<Hash, LedgerError> {
    decode_fixed(s, "hash")
}

/// Decodes exactly `N` bytes of hex; `what` names the field in the error.
pub(crate) fn decode_fixed<const N: usize>(
    s: &str,
    what: &'static str,
) -> Result<[u8; N], LedgerError> {
    if s.len() != 2 * N {
        return Err(LedgerError::BadHex {
            what,
            reason: format!("{} characters, expected {}", s.len(), 2 * N),
        });
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|e| LedgerError::BadHex {
        what,
        reason: e.to_string(),
    })?;
    Ok(out)
}

struct HashVisitor;

impl Visitor<'_> for HashVisitor {
    type Value = Hash;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a SHA-256 hash as 64 hex characters")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Hash, E> {
        from_hex(v).map_err(E::custom)
    }
}

/// One hash in a sequence, for [`hex_hashes`].
struct HexHash(Hash);

impl<'de> Deserialize<'de> for HexHash {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_str(HashVisitor).map(HexHash)
    }
}

/// `#[serde(with = "pyralog_ledger::hex_hash")]` for a [`Hash`] field: a lowercase hex string.
pub mod hex_hash {
    use super::*;

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        d.deserialize_str(HashVisitor)
    }
}

/// `#[serde(with = "pyralog_ledger::hex_hashes")]` for a `Vec<Hash>` field: an array of
/// lowercase hex strings.
pub mod hex_hashes {
    use super::*;

    pub fn serialize<S: Serializer>(hashes: &[Hash], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(hashes.iter().map(to_hex))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Hash>, D::Error> {
        struct SeqVisitor;

        impl<'de> Visitor<'de> for SeqVisitor {
            type Value = Vec<Hash>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an array of SHA-256 hashes as hex strings")
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<Hash>, A::Error> {
                // The size hint comes from the input: trust it only up to a small bound.
                let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
                while let Some(HexHash(h)) = seq.next_element()? {
                    out.push(h);
                }
                Ok(out)
            }
        }

        d.deserialize_seq(SeqVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_round_trips_through_lowercase_hex() {
        let h: Hash = std::array::from_fn(|i| (i * 7 + 0xa0) as u8);
        let s = to_hex(&h);
        assert_eq!(s.len(), 64);
        assert_eq!(s, s.to_lowercase());
        assert_eq!(from_hex(&s).expect("valid"), h);
        assert_eq!(from_hex(&s.to_uppercase()).expect("either case"), h);
    }

    #[test]
    fn wrong_length_or_non_hex_is_refused_with_the_reason() {
        let short = from_hex("abcd").expect_err("too short");
        assert!(
            short.to_string().contains("4 characters, expected 64"),
            "{short}"
        );
        assert!(from_hex(&"0".repeat(66)).is_err());
        assert!(from_hex(&"g".repeat(64)).is_err());
        assert!(from_hex("").is_err());
        // 64 bytes of multi-byte characters: the length check is on bytes, so no panic.
        assert!(from_hex(&"é".repeat(32)).is_err());
    }

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Doc {
        #[serde(with = "hex_hash")]
        one: Hash,
        #[serde(with = "hex_hashes")]
        many: Vec<Hash>,
    }

    #[test]
    fn serde_helpers_write_hex_strings_and_read_them_back() {
        let doc = Doc {
            one: [0xab; 32],
            many: vec![[1; 32], [2; 32]],
        };
        let json = serde_json::to_string(&doc).expect("serializes");
        assert_eq!(
            json,
            format!(
                r#"{{"one":"{}","many":["{}","{}"]}}"#,
                "ab".repeat(32),
                "01".repeat(32),
                "02".repeat(32)
            )
        );
        assert_eq!(serde_json::from_str::<Doc>(&json).expect("parses"), doc);
        let bad = json.replace(&"01".repeat(32), "01");
        assert!(serde_json::from_str::<Doc>(&bad).is_err());
    }
}
