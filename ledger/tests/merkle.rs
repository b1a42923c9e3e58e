//! RFC 6962 Merkle trees, as properties: every proof the crate makes verifies, and any change
//! to a proof, leaf, root, index or size makes verification fail, except the one change the
//! RFC allows (an inclusion or consistency proof fits every tree size of the same shape
//! along its path; the size that counts is the signed one).

use proptest::prelude::*;
use pyralog_ledger::{
    consistency_proof, inclusion_proof, root, verify_consistency, verify_inclusion, Hash,
    LedgerError, MerkleBuilder,
};

fn leaves(max: usize) -> impl Strategy<Value = Vec<Hash>> {
    prop::collection::vec(any::<[u8; 32]>(), 1..max)
}

fn split(n: u64) -> u64 {
    let mut k = 1;
    while k * 2 < n {
        k *= 2;
    }
    k
}

/// The turns of `PATH(m, D[n])`'s recursion, root first: `true` where the leaf is in the
/// right subtree. Two sizes whose audit paths take the same turns are indistinguishable to
/// the verifier.
fn inclusion_shape(mut m: u64, mut n: u64) -> Vec<bool> {
    let mut turns = Vec::new();
    while n > 1 {
        let k = split(n);
        turns.push(m >= k);
        if m >= k {
            m -= k;
            n -= k;
        } else {
            n = k;
        }
    }
    turns
}

/// The turns of `SUBPROOF(m, D[n], true)`'s recursion, root first.
fn consistency_shape(mut m: u64, mut n: u64) -> Vec<bool> {
    let mut turns = Vec::new();
    while m != n {
        let k = split(n);
        turns.push(m > k);
        if m > k {
            m -= k;
            n -= k;
        } else {
            n = k;
        }
    }
    turns
}

fn flip(h: &Hash, byte: usize, bit: u8) -> Hash {
    let mut out = *h;
    out[byte % 32] ^= 1 << (bit % 8);
    out
}

proptest! {
    #[test]
    fn the_builder_computes_the_same_root_as_the_definition(l in leaves(300)) {
        let mut b = MerkleBuilder::new();
        prop_assert_eq!(b.root(), root(&[]));
        for (i, leaf) in l.iter().enumerate() {
            b.push(*leaf);
            prop_assert_eq!(b.len(), i as u64 + 1);
            prop_assert_eq!(b.root(), root(&l[..=i]));
        }
    }

    #[test]
    fn every_leaf_has_an_inclusion_proof_that_verifies(l in leaves(200)) {
        let (n, r) = (l.len() as u64, root(&l));
        for i in 0..n {
            let path = inclusion_proof(&l, i).expect("index in range");
            prop_assert!(verify_inclusion(&l[i as usize], i, n, &path, &r).is_ok());
        }
        let out_of_range = inclusion_proof(&l, n);
        let is_out_of_range = matches!(out_of_range, Err(LedgerError::IndexOutOfRange { .. }));
        prop_assert!(is_out_of_range);
        prop_assert!(verify_inclusion(&l[0], n, n, &[], &r).is_err());
    }

    #[test]
    fn a_tampered_inclusion_proof_fails(
        l in leaves(200),
        pick in any::<prop::sample::Index>(),
        elem in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let (n, r) = (l.len() as u64, root(&l));
        let i = pick.index(l.len()) as u64;
        let leaf = l[i as usize];
        let path = inclusion_proof(&l, i).expect("index in range");

        prop_assert!(verify_inclusion(&flip(&leaf, byte, bit), i, n, &path, &r).is_err());
        prop_assert!(verify_inclusion(&leaf, i, n, &path, &flip(&r, byte, bit)).is_err());
        if !path.is_empty() {
            let mut bad = path.clone();
            let e = elem.index(bad.len());
            bad[e] = flip(&bad[e], byte, bit);
            prop_assert!(verify_inclusion(&leaf, i, n, &bad, &r).is_err());
            prop_assert!(verify_inclusion(&leaf, i, n, &path[1..], &r).is_err());
        }
        let mut longer = path.clone();
        longer.push(r);
        prop_assert!(verify_inclusion(&leaf, i, n, &longer, &r).is_err());
        for other in (0..n).filter(|&o| o != i) {
            prop_assert!(verify_inclusion(&leaf, other, n, &path, &r).is_err(), "index {}", other);
        }
        for size in (1..=2 * n + 1).filter(|&s| s != n) {
            let accepted = verify_inclusion(&leaf, i, size, &path, &r).is_ok();
            let same_shape = i < size && inclusion_shape(i, size) == inclusion_shape(i, n);
            prop_assert_eq!(accepted, same_shape, "size {} instead of {}", size, n);
        }
    }

    #[test]
    fn every_prefix_has_a_consistency_proof_that_verifies(l in leaves(200)) {
        let (n, r) = (l.len() as u64, root(&l));
        for m in 1..=n {
            let proof = consistency_proof(&l, m).expect("0 < m <= n");
            let old = root(&l[..m as usize]);
            prop_assert!(verify_consistency(m, n, &old, &r, &proof).is_ok(), "m {}", m);
        }
        prop_assert!(consistency_proof(&l, 0).is_err());
        prop_assert!(consistency_proof(&l, n + 1).is_err());
    }

    #[test]
    fn a_tampered_consistency_proof_fails(
        l in leaves(120),
        pick in any::<prop::sample::Index>(),
        elem in any::<prop::sample::Index>(),
        byte in 0usize..32,
        bit in 0u8..8,
    ) {
        let (n, r) = (l.len() as u64, root(&l));
        let m = pick.index(l.len()) as u64 + 1;
        let old = root(&l[..m as usize]);
        let proof = consistency_proof(&l, m).expect("0 < m <= n");

        prop_assert!(verify_consistency(m, n, &flip(&old, byte, bit), &r, &proof).is_err());
        prop_assert!(verify_consistency(m, n, &old, &flip(&r, byte, bit), &proof).is_err());
        if !proof.is_empty() {
            let mut bad = proof.clone();
            let e = elem.index(bad.len());
            bad[e] = flip(&bad[e], byte, bit);
            prop_assert!(verify_consistency(m, n, &old, &r, &bad).is_err());
            prop_assert!(verify_consistency(m, n, &old, &r, &proof[1..]).is_err());
        }
        let mut longer = proof.clone();
        longer.push(r);
        prop_assert!(verify_consistency(m, n, &old, &r, &longer).is_err());
        for other in (1..=n).filter(|&o| o != m) {
            prop_assert!(verify_consistency(other, n, &old, &r, &proof).is_err(), "old size {}", other);
        }
        for size in (m..=2 * n + 1).filter(|&s| s != n) {
            let accepted = verify_consistency(m, size, &old, &r, &proof).is_ok();
            let same_shape = consistency_shape(m, size) == consistency_shape(m, n);
            prop_assert_eq!(accepted, same_shape, "new size {} instead of {}", size, n);
        }
        // A newer tree that is smaller than the old one is a rollback, whatever the proof.
        prop_assert!(verify_consistency(n + 1, n, &old, &r, &proof).is_err());
    }
}

#[test]
fn a_proof_against_a_different_history_of_the_same_size_fails() {
    let a: Vec<Hash> = (0..10u8).map(|i| [i; 32]).collect();
    let mut b = a.clone();
    b[3] = [0xff; 32]; // the fourth object was rewritten
    for m in 4..=10 {
        let proof = consistency_proof(&b, m).expect("valid sizes");
        let old = root(&a[..m as usize]);
        assert!(
            verify_consistency(m, 10, &old, &root(&b), &proof).is_err(),
            "m {m}"
        );
    }
}
