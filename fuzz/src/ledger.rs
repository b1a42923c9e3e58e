//! Ledger mode's documents (`pyralog_ledger`): inclusion proofs, signed checkpoints and
//! consistency proofs are JSON a user carries around and hands to a verifier, so whoever
//! verifies parses documents from anyone.
//!
//! The input is a document as received, and also damage to valid documents made by the real
//! code (the plan's selector picks an inclusion proof, a checkpoint or a consistency proof);
//! with the plan's "fix" bit the damaged document's checkpoints are signed again with the
//! fixed key, so the damage reaches the Merkle checks behind the signature. Last, numbers from
//! the input (edge values often) drive the Merkle verifiers directly, with paths of the length
//! they expect, so their index arithmetic meets `u64::MAX` and friends.
//!
//! Contract: no panic and no allocation beyond the limit; a document that verifies survives a
//! JSON round trip and still verifies; an inclusion proof that verifies names a record leaf
//! and an object summary that are really in the archive, at the positions it claims.

use std::sync::OnceLock;

use bytes::Bytes;
use pyralog_ledger::{
    consistency_proof, genesis, inclusion_proof, merkle, verify_consistency, verify_inclusion,
    Checkpoint, ConsistencyProof, Hash, InclusionProof, MerkleBuilder, ObjectSummary, RecordHasher,
    SignedCheckpoint, SigningKey, VerifyingKey,
};
use pyralog_types::record::Header;
use pyralog_types::{Epoch, LogOffset, Record};

use crate::damage::{apply, plan, Numbers};
use crate::seeds::T0;

/// The fixed signing key's seed (any 32 bytes; fixed so seeds are the same on every run).
const SEED: &str = "4c65646765722066757a7a206b6579206f662074686520707972616c6f672121";
const LOG: &str = "orders";
const PARTITION: u32 = 1;

struct Fixture {
    key: SigningKey,
    verifying: VerifyingKey,
    /// Per object: its records' leaf hashes.
    leaves: Vec<Vec<Hash>>,
    summaries: Vec<ObjectSummary>,
    /// The three valid documents: inclusion proof, checkpoint, consistency proof.
    documents: [Vec<u8>; 3],
}

fn record(offset: u64) -> Record {
    Record {
        offset: LogOffset(offset),
        epoch: Epoch(1),
        timestamp: T0 + offset as i64,
        key: (offset % 3 != 1).then(|| Bytes::from(format!("key-{offset}"))),
        value: Some(Bytes::from(format!("value {offset}"))),
        headers: vec![Header {
            key: "trace".into(),
            value: Bytes::from(vec![offset as u8; 2]),
        }],
    }
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let key = SigningKey::from_seed_hex(SEED).expect("a valid seed");
        let mut hasher = RecordHasher::new(genesis(LOG, PARTITION));
        let (mut leaves, mut summaries) = (Vec::new(), Vec::new());
        // Three objects: 3 records, 1 record, 5 records (a ledger has no gaps).
        for offsets in [vec![0, 1, 2], vec![3], vec![4, 5, 6, 7, 8]] {
            let chain_start = hasher.chain();
            let mut tree = MerkleBuilder::new();
            let object: Vec<Hash> = offsets
                .iter()
                .map(|&o| {
                    let (_, leaf) = hasher.push(&record(o));
                    tree.push(leaf);
                    leaf
                })
                .collect();
            summaries.push(ObjectSummary {
                base_offset: offsets[0],
                last_offset: offsets[offsets.len() - 1],
                record_count: tree.len(),
                chain_start,
                chain_end: hasher.chain(),
                merkle_root: tree.root(),
            });
            leaves.push(object);
        }
        let tree: Vec<Hash> = summaries.iter().map(ObjectSummary::leaf).collect();
        let checkpoint = |objects: usize| {
            key.sign(Checkpoint {
                log: LOG.into(),
                partition: PARTITION,
                tree_size: objects as u64,
                last_offset: summaries[objects - 1].last_offset,
                root: merkle::root(&tree[..objects]),
                chain_head: summaries[objects - 1].chain_end,
                manifest_version: 7 + objects as u64,
                time_us: T0 + objects as i64,
            })
        };
        let inclusion = InclusionProof {
            log: LOG.into(),
            partition: PARTITION,
            offset: 7,
            record_leaf: leaves[2][3],
            index_in_object: 3,
            object: summaries[2].clone(),
            object_path: inclusion_proof(&leaves[2], 3).expect("in range"),
            object_index: 2,
            tree_path: inclusion_proof(&tree, 2).expect("in range"),
            checkpoint: checkpoint(3),
        };
        let consistency = ConsistencyProof {
            old: checkpoint(1),
            new: checkpoint(3),
            path: consistency_proof(&tree, 1).expect("valid sizes"),
        };
        let documents = [
            inclusion.to_json(),
            checkpoint(2).to_json(),
            consistency.to_json(),
        ];
        Fixture {
            verifying: key.verifying_key(),
            key,
            leaves,
            summaries,
            documents,
        }
    })
}

/// The valid documents, as seeds: the inclusion proof, the checkpoint, the consistency proof.
pub fn seed_documents() -> [Vec<u8>; 3] {
    fixture().documents.clone()
}

pub fn target(input: &[u8]) {
    check(input, false);
    let (plan, program) = plan(input);
    if !plan.replace {
        let mut doc = fixture().documents[usize::from(plan.selector) % 3].clone();
        apply(&mut doc, program);
        check(&doc, plan.fix_checksums);
    }
    structured(input);
}

/// Parses `bytes` as each kind of document and verifies what parses; with `resign`, the
/// checkpoints are signed again first.
fn check(bytes: &[u8], resign: bool) {
    let f = fixture();
    let resigned = |s: &mut SignedCheckpoint| {
        if resign {
            *s = f.key.sign(s.checkpoint.clone());
        }
    };
    if let Ok(mut p) = InclusionProof::from_json(bytes) {
        resigned(&mut p.checkpoint);
        if p.verify(&f.verifying).is_ok() {
            let object = usize::try_from(p.object_index).ok();
            let index = usize::try_from(p.index_in_object).ok();
            let genuine_leaf = object
                .and_then(|o| f.leaves.get(o))
                .and_then(|l| index.and_then(|i| l.get(i)));
            assert_eq!(
                genuine_leaf,
                Some(&p.record_leaf),
                "a forged record verified"
            );
            assert_eq!(
                object.and_then(|o| f.summaries.get(o)),
                Some(&p.object),
                "a forged object verified"
            );
            assert_eq!(
                Some(p.offset),
                p.object.base_offset.checked_add(p.index_in_object),
                "a proof verified for another offset than its record's"
            );
            let back = InclusionProof::from_json(&p.to_json()).expect("own JSON parses");
            assert_eq!(back, p);
            back.verify(&f.verifying).expect("still verifies");
        }
    }
    if let Ok(mut c) = SignedCheckpoint::from_json(bytes) {
        resigned(&mut c);
        if c.verify(&f.verifying).is_ok() {
            let back = SignedCheckpoint::from_json(&c.to_json()).expect("own JSON parses");
            assert_eq!(back, c);
            back.verify(&f.verifying).expect("still verifies");
        }
    }
    if let Ok(mut c) = ConsistencyProof::from_json(bytes) {
        resigned(&mut c.old);
        resigned(&mut c.new);
        if c.verify(&f.verifying).is_ok() {
            let back = ConsistencyProof::from_json(&c.to_json()).expect("own JSON parses");
            assert_eq!(back, c);
            back.verify(&f.verifying).expect("still verifies");
        }
    }
}

fn split(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The audit path length RFC 6962 gives leaf `m` of a tree of `n` leaves.
fn inclusion_len(mut m: u64, mut n: u64) -> usize {
    let mut len = 0;
    while n > 1 && m < n {
        let k = split(n);
        (m, n) = if m < k { (m, k) } else { (m - k, n - k) };
        len += 1;
    }
    len
}

/// The consistency proof length RFC 6962 gives sizes `m <= n`.
fn consistency_len(mut m: u64, mut n: u64) -> usize {
    let (mut len, mut complete) = (0, true);
    while m != n && m > 0 && m < n {
        let k = split(n);
        if m <= k {
            n = k;
        } else {
            (m, n, complete) = (m - k, n - k, false);
        }
        len += 1;
    }
    len + usize::from(!complete)
}

/// The Merkle verifiers with sizes and indices from the input and paths of the length they
/// expect (filled with the input's bytes), so the loops run instead of the length check
/// refusing.
fn structured(input: &[u8]) {
    let mut n = Numbers(input);
    let (index, size, old) = (n.u64(), n.u64(), n.u64());
    let hash =
        |i: usize| -> Hash { std::array::from_fn(|j| input.get(i + j).copied().unwrap_or(0)) };
    let path: Vec<Hash> = (0..inclusion_len(index, size)).map(hash).collect();
    let _ = verify_inclusion(&hash(1), index, size, &path, &hash(2));
    let path: Vec<Hash> = (0..consistency_len(old, size)).map(hash).collect();
    let _ = verify_consistency(old, size, &hash(3), &hash(4), &path);
    let tree: Vec<Hash> = fixture()
        .summaries
        .iter()
        .map(ObjectSummary::leaf)
        .collect();
    let _ = inclusion_proof(&tree, index);
    let _ = consistency_proof(&tree, old);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_documents_verify_and_damage_is_caught() {
        let f = fixture();
        let [inclusion, checkpoint, consistency] = seed_documents();
        InclusionProof::from_json(&inclusion)
            .expect("parses")
            .verify_record(&f.verifying, &record(7))
            .expect("verifies");
        SignedCheckpoint::from_json(&checkpoint)
            .expect("parses")
            .verify(&f.verifying)
            .expect("verifies");
        ConsistencyProof::from_json(&consistency)
            .expect("parses")
            .verify(&f.verifying)
            .expect("verifies");
        // The lengths this module computes agree with the crate's own proofs.
        let tree: Vec<Hash> = f.summaries.iter().map(ObjectSummary::leaf).collect();
        for m in 1..=3u64 {
            assert_eq!(
                consistency_len(m, 3),
                consistency_proof(&tree, m).expect("ok").len()
            );
            assert_eq!(
                inclusion_len(m - 1, 3),
                inclusion_proof(&tree, m - 1).expect("ok").len()
            );
        }
        target(&[0b0000_0101]);
        target(&[0b0001_0101, 0x40, 0, 0, 0x08]);
    }
}
