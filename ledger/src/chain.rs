//! The hash chain over a partition's records, in offset order.
//!
//! Each record is reduced to one canonical byte string ([`canonical_record`]): fixed-width
//! big-endian integers and length-prefixed byte strings, so two different records never share an
//! encoding and a verifier in any language can rebuild it from the record alone (no dependency on
//! the batch format, its compression or its checksums). Its RFC 6962 leaf hash is
//! `SHA-256(0x00 ‖ canonical)`, the input of the per-object Merkle tree ([`crate::merkle`]) that
//! makes single-record proofs short, and the chain head after the record is
//! `SHA-256(0x02 ‖ previous head ‖ canonical)`, starting from a genesis hash that names the log
//! and partition: changing, reordering, inserting or deleting any record changes every later
//! head, so one trusted head vouches for the whole history before it. The chain hashes the
//! canonical bytes, not the leaf hash, because every replica chains every record as it writes it
//! (the produce path) while only the archiver needs the leaves: a 100-byte record then costs
//! three SHA-256 blocks on the produce path instead of five (a leaf of three and a 65-byte step
//! of two); the archiver hashes the canonical bytes twice. The domain bytes 0x00 (leaf), 0x01
//! (Merkle node) and 0x02 (chain step) keep the three kinds of hash apart, so no value of one
//! kind can be passed off as another.

use std::fmt;

use pyralog_types::batch::RecordView;
use pyralog_types::Record;
use sha2::{Digest, Sha256};

use crate::hash::{to_hex, Hash};

/// The prefix of the genesis hash (shared by every [`ChainVersion`]: the genesis only names
/// the partition).
pub const GENESIS_DOMAIN: &[u8] = b"pyralog-ledger-genesis-v2";

/// Domain byte of a chain step (0x00 and 0x01 are RFC 6962's leaf and node).
const CHAIN_STEP: u8 = 0x02;
/// Domain byte of an RFC 6962 leaf.
pub(crate) const LEAF: u8 = 0x00;

// Every length in the canonical form is a u32. Record fields are bounded by the batch format
// (a batch decompresses to at most `MAX_UNCOMPRESSED_BYTES`), so the prefixes never truncate.
const _: () = assert!(pyralog_types::batch::MAX_UNCOMPRESSED_BYTES <= u32::MAX as usize);

/// A length as the u32 of the canonical encodings.
///
/// # Panics
///
/// If `len` does not fit in a u32: no record, log name or decoded document can be that long
/// (records are bounded by the batch format, log names by `MAX_LOG_ID_LEN`, documents by the
/// size limits of `from_json`), and truncating would let two inputs share one encoding.
pub(crate) fn put_len(out: &mut Vec<u8>, len: usize) {
    let len = u32::try_from(len).expect("lengths in ledger encodings fit in a u32");
    out.extend_from_slice(&len.to_be_bytes());
}

fn put_optional(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => out.push(0),
        Some(b) => {
            out.push(1);
            put_len(out, b.len());
            out.extend_from_slice(b);
        }
    }
}

/// Appends the canonical bytes of `record` to `out`:
///
/// ```text
/// offset u64 BE ‖ epoch u64 BE ‖ timestamp i64 BE
/// ‖ key   (0x00 if absent, or 0x01 ‖ u32 BE length ‖ bytes)
/// ‖ value (same)
/// ‖ u32 BE header count ‖ per header: u32 BE key length ‖ key (UTF-8) ‖ u32 BE value length ‖ value
/// ```
pub fn canonical_record(record: &Record, out: &mut Vec<u8>) {
    out.extend_from_slice(&record.offset.0.to_be_bytes());
    out.extend_from_slice(&record.epoch.0.to_be_bytes());
    out.extend_from_slice(&record.timestamp.to_be_bytes());
    put_optional(out, record.key.as_deref());
    put_optional(out, record.value.as_deref());
    put_len(out, record.headers.len());
    for h in &record.headers {
        put_len(out, h.key.len());
        out.extend_from_slice(h.key.as_bytes());
        put_len(out, h.value.len());
        out.extend_from_slice(&h.value);
    }
}

/// [`canonical_record`] of a record borrowed from its batch (the same bytes, without building
/// a [`Record`]): what replicas hash as they append.
pub fn canonical_view(
    record: &RecordView<'_>,
    out: &mut Vec<u8>,
) -> Result<(), pyralog_types::batch::BatchError> {
    out.extend_from_slice(&record.offset.0.to_be_bytes());
    out.extend_from_slice(&record.epoch.0.to_be_bytes());
    out.extend_from_slice(&record.timestamp.to_be_bytes());
    put_optional(out, record.key);
    put_optional(out, record.value);
    put_len(
        out,
        usize::try_from(record.header_count).unwrap_or(usize::MAX),
    );
    for h in record.headers() {
        let (key, value) = h?;
        put_len(out, key.len());
        out.extend_from_slice(key.as_bytes());
        put_len(out, value.len());
        out.extend_from_slice(value);
    }
    Ok(())
}

/// The chain head before a partition's first record:
/// `SHA-256("pyralog-ledger-genesis-v2" ‖ u32 BE len(log) ‖ log ‖ u32 BE partition)`.
/// Naming the partition keeps one partition's chain from being replayed as another's.
pub fn genesis(log: &str, partition: u32) -> Hash {
    let mut h = Sha256::new();
    h.update(GENESIS_DOMAIN);
    let mut len = Vec::with_capacity(4);
    put_len(&mut len, log.len());
    h.update(&len);
    h.update(log.as_bytes());
    h.update(partition.to_be_bytes());
    h.finalize().into()
}

/// Which definition of the chain step a log uses. Fixed per log at creation (its config) and
/// named by every archived object's seal, so an archive written under an older definition
/// still verifies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChainVersion {
    /// `SHA-256(0x02 ‖ prev ‖ leaf hash)`: ledgers created before version 3.
    V2,
    /// `SHA-256(0x02 ‖ prev ‖ canonical)`: a record costs its canonical bytes once on the
    /// produce path, no leaf (see the module docs).
    #[default]
    V3,
}

impl ChainVersion {
    /// The version new ledgers get.
    pub const CURRENT: ChainVersion = ChainVersion::V3;

    /// The number stored in configs and seals.
    pub fn number(self) -> u8 {
        match self {
            ChainVersion::V2 => 2,
            ChainVersion::V3 => 3,
        }
    }

    /// The version a stored number names.
    pub fn from_number(n: u8) -> Result<ChainVersion, crate::LedgerError> {
        match n {
            2 => Ok(ChainVersion::V2),
            3 => Ok(ChainVersion::V3),
            other => Err(crate::LedgerError::UnknownChainVersion(other)),
        }
    }
}

/// The chain head after a record whose canonical bytes are `canonical`
/// ([`ChainVersion::V3`]): `SHA-256(0x02 ‖ prev ‖ canonical)`.
pub fn chain_step(prev: &Hash, canonical: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([CHAIN_STEP])
        .chain_update(prev)
        .chain_update(canonical)
        .finalize()
        .into()
}

/// The chain head after a record whose leaf hash is `leaf` ([`ChainVersion::V2`]):
/// `SHA-256(0x02 ‖ prev ‖ leaf)`.
pub fn chain_step_v2(prev: &Hash, leaf: &Hash) -> Hash {
    let mut input = [0u8; 65];
    input[0] = CHAIN_STEP;
    input[1..33].copy_from_slice(prev);
    input[33..].copy_from_slice(leaf);
    Sha256::digest(input).into()
}

/// The RFC 6962 leaf hash of a record's canonical bytes: `SHA-256(0x00 ‖ canonical)`.
pub fn leaf_hash(canonical: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([LEAF])
        .chain_update(canonical)
        .finalize()
        .into()
}

/// Hashes records one after another, in offset order: the chain head and, for the archiver,
/// each record's leaf hash. One buffer is reused for the canonical bytes, so hashing allocates only when a record
/// is larger than every one before it.
pub struct RecordHasher {
    chain: Hash,
    version: ChainVersion,
    buf: Vec<u8>,
}

impl RecordHasher {
    /// Continues the chain from `prev_chain` (the [`genesis`] hash for a new partition) with
    /// the current definition.
    pub fn new(prev_chain: Hash) -> Self {
        Self::with_version(prev_chain, ChainVersion::CURRENT)
    }

    /// Continues the chain from `prev_chain` with the step of `version`.
    pub fn with_version(prev_chain: Hash, version: ChainVersion) -> Self {
        RecordHasher {
            chain: prev_chain,
            version,
            buf: Vec::with_capacity(256),
        }
    }

    /// Adds `record` to the chain; returns the chain head after it and its leaf hash.
    pub fn push(&mut self, record: &Record) -> (Hash, Hash) {
        self.buf.clear();
        canonical_record(record, &mut self.buf);
        let leaf = leaf_hash(&self.buf);
        self.chain = match self.version {
            ChainVersion::V2 => chain_step_v2(&self.chain, &leaf),
            ChainVersion::V3 => chain_step(&self.chain, &self.buf),
        };
        (self.chain, leaf)
    }

    /// [`RecordHasher::push`] for a record borrowed from its batch, chain only (what replicas
    /// compute as they append; under [`ChainVersion::V3`] no leaf); returns the chain head.
    pub fn push_view(
        &mut self,
        record: &RecordView<'_>,
    ) -> Result<Hash, pyralog_types::batch::BatchError> {
        self.buf.clear();
        canonical_view(record, &mut self.buf)?;
        self.chain = match self.version {
            ChainVersion::V2 => chain_step_v2(&self.chain, &leaf_hash(&self.buf)),
            ChainVersion::V3 => chain_step(&self.chain, &self.buf),
        };
        Ok(self.chain)
    }

    /// The current chain head (after the last record pushed).
    pub fn chain(&self) -> Hash {
        self.chain
    }
}

impl fmt::Debug for RecordHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordHasher")
            .field("chain", &to_hex(&self.chain))
            .field("version", &self.version)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use pyralog_types::{Epoch, Header, LogOffset};

    use super::*;

    fn record(offset: u64) -> Record {
        Record {
            offset: LogOffset(offset),
            epoch: Epoch(3),
            timestamp: -2,
            key: Some(Bytes::from_static(b"k")),
            value: None,
            headers: vec![Header {
                key: "h".into(),
                value: Bytes::from_static(b"vv"),
            }],
        }
    }

    fn canonical(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        canonical_record(r, &mut out);
        out
    }

    #[test]
    fn the_canonical_form_is_the_documented_byte_layout() {
        let mut expected = Vec::new();
        expected.extend(7u64.to_be_bytes());
        expected.extend(3u64.to_be_bytes());
        expected.extend((-2i64).to_be_bytes());
        expected.extend([1, 0, 0, 0, 1, b'k']); // key present, length 1
        expected.push(0); // value absent (tombstone)
        expected.extend([0, 0, 0, 1]); // one header
        expected.extend([0, 0, 0, 1, b'h', 0, 0, 0, 2, b'v', b'v']);
        assert_eq!(canonical(&record(7)), expected);
    }

    #[test]
    fn absent_and_empty_fields_encode_differently() {
        let mut absent = record(0);
        absent.key = None;
        let mut empty = record(0);
        empty.key = Some(Bytes::new());
        assert_ne!(canonical(&absent), canonical(&empty));
    }

    #[test]
    fn genesis_names_the_log_and_partition() {
        let mut input = b"pyralog-ledger-genesis-v2".to_vec();
        input.extend([0, 0, 0, 6]);
        input.extend(b"orders");
        input.extend([0, 0, 0, 2]);
        let expected: Hash = Sha256::digest(&input).into();
        assert_eq!(genesis("orders", 2), expected);
        assert_ne!(genesis("orders", 2), genesis("orders", 3));
        assert_ne!(genesis("orders", 2), genesis("orders2", 2));
    }

    #[test]
    fn a_record_borrowed_from_its_batch_encodes_like_the_decoded_record() {
        use pyralog_types::batch::{Batch, BatchBuilder, Compression, NewRecord};
        for compression in [Compression::None, Compression::Zstd(3)] {
            let mut b = BatchBuilder::new(compression);
            for i in 0..20u8 {
                b.push(&NewRecord {
                    timestamp: 1_000 + i64::from(i),
                    key: (i % 3 != 0).then(|| Bytes::from(vec![i; usize::from(i)])),
                    value: (i % 4 != 1).then(|| Bytes::from(vec![b'v'; usize::from(i) * 7])),
                    headers: (0..i % 3)
                        .map(|h| Header {
                            key: format!("h{h}-é"),
                            value: Bytes::from(vec![h; usize::from(i)]),
                        })
                        .collect(),
                });
            }
            let batch = Batch::parse(b.build().expect("batch")).expect("parse");
            let records = batch.records().expect("records");
            let mut i = 0;
            batch
                .for_each_view(|view| {
                    let mut from_view = Vec::new();
                    canonical_view(&view, &mut from_view)?;
                    assert_eq!(from_view, canonical(&records[i]), "record {i}");
                    i += 1;
                    Ok(())
                })
                .expect("views");
            assert_eq!(i, records.len());
        }
    }

    #[test]
    fn chain_step_and_leaf_hash_use_their_domain_bytes() {
        let prev = [9u8; 32];
        let mut step = vec![0x02];
        step.extend(prev);
        step.extend(b"abc");
        assert_eq!(
            chain_step(&prev, b"abc"),
            <Hash>::from(Sha256::digest(&step))
        );
        assert_eq!(leaf_hash(b"abc"), <Hash>::from(Sha256::digest(b"\x00abc")));
    }

    #[test]
    fn the_hasher_chains_records_and_returns_their_leaves() {
        let g = genesis("orders", 0);
        let mut hasher = RecordHasher::new(g);
        assert_eq!(hasher.chain(), g);
        let (head0, leaf0) = hasher.push(&record(0));
        let (head1, leaf1) = hasher.push(&record(1));
        assert_eq!(leaf0, leaf_hash(&canonical(&record(0))));
        assert_eq!(head0, chain_step(&g, &canonical(&record(0))));
        assert_eq!(head1, chain_step(&head0, &canonical(&record(1))));
        assert_eq!(leaf1, leaf_hash(&canonical(&record(1))));
        assert_eq!(hasher.chain(), head1);
    }

    #[test]
    fn a_version_2_hasher_chains_leaf_hashes_as_ledgers_before_version_3_did() {
        let g = genesis("orders", 0);
        let mut v2 = RecordHasher::with_version(g, ChainVersion::V2);
        let (head0, leaf0) = v2.push(&record(0));
        assert_eq!(head0, chain_step_v2(&g, &leaf0));
        let mut v3 = RecordHasher::new(g);
        let (head0_v3, leaf0_v3) = v3.push(&record(0));
        assert_eq!(leaf0, leaf0_v3, "the leaf does not depend on the version");
        assert_ne!(head0, head0_v3);
        // The borrowed form follows the version too.
        use pyralog_types::batch::{Batch, BatchBuilder, Compression, NewRecord};
        let mut b = BatchBuilder::new(Compression::None);
        b.push(&NewRecord {
            timestamp: 5,
            key: None,
            value: Some(Bytes::from_static(b"v")),
            headers: Vec::new(),
        });
        let batch = Batch::parse(b.build().expect("batch")).expect("parse");
        let decoded = batch.records().expect("records").remove(0);
        for version in [ChainVersion::V2, ChainVersion::V3] {
            let mut owned = RecordHasher::with_version(g, version);
            let mut borrowed = RecordHasher::with_version(g, version);
            owned.push(&decoded);
            batch
                .for_each_view(|view| borrowed.push_view(&view).map(|_| ()))
                .expect("view");
            assert_eq!(owned.chain(), borrowed.chain(), "{version:?}");
        }
        assert_eq!(ChainVersion::from_number(2).expect("v2"), ChainVersion::V2);
        assert_eq!(ChainVersion::from_number(3).expect("v3"), ChainVersion::V3);
        assert!(ChainVersion::from_number(9).is_err());
    }

    #[test]
    fn reordering_or_dropping_a_record_changes_the_head() {
        let head = |offsets: &[u64]| {
            let mut h = RecordHasher::new(genesis("l", 0));
            for &o in offsets {
                h.push(&record(o));
            }
            h.chain()
        };
        let original = head(&[0, 1, 2]);
        assert_ne!(original, head(&[0, 2, 1]));
        assert_ne!(original, head(&[0, 2]));
        assert_ne!(original, head(&[0, 1, 2, 3]));
    }
}
