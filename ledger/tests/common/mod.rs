//! A small archived partition built with the crate's own pieces, as the archiver would: its
//! records hashed into a chain, grouped into objects with Merkle roots, the objects'
//! summaries in an archive tree, and checkpoints signed with a fixed key.

#![allow(dead_code)] // each test binary uses a different part

use bytes::Bytes;
use pyralog_ledger::{
    genesis, inclusion_proof, merkle, ChainVersion, Checkpoint, Hash, InclusionProof,
    MerkleBuilder, ObjectSummary, RecordHasher, SignedCheckpoint, SigningKey,
};
use pyralog_types::{Epoch, Header, LogOffset, Record};

/// The secret of RFC 8032's first Ed25519 test vector.
pub(crate) const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
/// Its public key.
pub(crate) const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

pub(crate) const LOG: &str = "orders";
pub(crate) const PARTITION: u32 = 3;
/// A fixed checkpoint time (µs).
pub(crate) const T0: i64 = 1_700_000_000_000_000;

pub(crate) fn key() -> SigningKey {
    SigningKey::from_seed_hex(SEED).expect("the RFC 8032 seed")
}

pub(crate) fn record(offset: u64) -> Record {
    Record {
        offset: LogOffset(offset),
        epoch: Epoch(1 + offset / 10),
        timestamp: T0 + offset as i64,
        key: (!offset.is_multiple_of(3)).then(|| Bytes::from(format!("key-{}", offset % 4))),
        value: (offset % 7 != 6).then(|| Bytes::from(format!("value {offset}"))),
        headers: if offset.is_multiple_of(2) {
            vec![Header {
                key: "trace".into(),
                value: Bytes::from(vec![offset as u8; 3]),
            }]
        } else {
            Vec::new()
        },
    }
}

/// One archived object: its records, their leaf hashes and its summary.
pub(crate) struct Object {
    pub(crate) records: Vec<Record>,
    pub(crate) leaves: Vec<Hash>,
    pub(crate) summary: ObjectSummary,
}

/// A partition whose records are archived as objects of the given offsets.
pub(crate) struct Archive {
    pub(crate) objects: Vec<Object>,
}

impl Archive {
    /// Objects of 5 records, 1 record, and 8 records (a ledger has no gaps).
    pub(crate) fn sample() -> Archive {
        Archive::new(&[(0..5).collect(), vec![5], (6..14).collect()])
    }

    pub(crate) fn new(objects: &[Vec<u64>]) -> Archive {
        Archive::with_version(objects, ChainVersion::CURRENT)
    }

    /// [`Archive::new`] chained with the step of `version`.
    pub(crate) fn with_version(objects: &[Vec<u64>], version: ChainVersion) -> Archive {
        let mut hasher = RecordHasher::with_version(genesis(LOG, PARTITION), version);
        let objects = objects
            .iter()
            .map(|offsets| {
                let chain_start = hasher.chain();
                let mut tree = MerkleBuilder::new();
                let records: Vec<Record> = offsets.iter().map(|&o| record(o)).collect();
                let leaves: Vec<Hash> = records
                    .iter()
                    .map(|r| {
                        let (_, leaf) = hasher.push(r);
                        tree.push(leaf);
                        leaf
                    })
                    .collect();
                let summary = ObjectSummary {
                    base_offset: offsets[0],
                    last_offset: offsets[offsets.len() - 1],
                    record_count: tree.len(),
                    chain_start,
                    chain_end: hasher.chain(),
                    merkle_root: tree.root(),
                };
                Object {
                    records,
                    leaves,
                    summary,
                }
            })
            .collect();
        Archive { objects }
    }

    pub(crate) fn object_leaves(&self, objects: usize) -> Vec<Hash> {
        self.objects[..objects]
            .iter()
            .map(|o| o.summary.leaf())
            .collect()
    }

    /// The checkpoint covering the first `objects` objects.
    pub(crate) fn checkpoint(&self, objects: usize) -> Checkpoint {
        let last = objects.checked_sub(1).map(|i| &self.objects[i].summary);
        Checkpoint {
            log: LOG.into(),
            partition: PARTITION,
            tree_size: objects as u64,
            last_offset: last.map_or(0, |s| s.last_offset),
            root: merkle::root(&self.object_leaves(objects)),
            chain_head: last.map_or(genesis(LOG, PARTITION), |s| s.chain_end),
            manifest_version: 10 + objects as u64,
            time_us: T0 + objects as i64,
        }
    }

    pub(crate) fn signed(&self, objects: usize) -> SignedCheckpoint {
        key().sign(self.checkpoint(objects))
    }

    /// The proof of record `index` of object `object` against the checkpoint of all objects.
    pub(crate) fn inclusion(&self, object: usize, index: usize) -> InclusionProof {
        let o = &self.objects[object];
        let all = self.objects.len();
        InclusionProof {
            log: LOG.into(),
            partition: PARTITION,
            offset: o.records[index].offset.0,
            record_leaf: o.leaves[index],
            index_in_object: index as u64,
            object: o.summary.clone(),
            object_path: inclusion_proof(&o.leaves, index as u64).expect("in range"),
            object_index: object as u64,
            tree_path: inclusion_proof(&self.object_leaves(all), object as u64).expect("in range"),
            checkpoint: self.signed(all),
        }
    }
}
