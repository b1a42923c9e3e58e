//! RFC 6962 (Certificate Transparency) Merkle trees: roots, audit paths and consistency
//! proofs, with the verification algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2.
//!
//! Why this exact construction: it is the one every transparency log and its client libraries
//! implement, so a user can check a Pyralog proof with off-the-shelf code. Leaves are hashes
//! the caller made with a 0x00 domain byte ([`crate::leaf_hash`]); inner nodes are
//! `SHA-256(0x01 ‖ left ‖ right)`; a tree of `n > 1` leaves splits at the largest power of two
//! smaller than `n`; the empty tree's root is `SHA-256("")`. A tree of one leaf has that leaf
//! as its root.
//!
//! Two kinds of tree use it: one per archived object over its records' leaf hashes, and one
//! per partition over the objects' summaries (the "archive tree" that checkpoints sign).
//! The builder keeps only the roots of the complete subtrees on the tree's right edge, so
//! hashing an object of millions of records takes `O(log n)` memory.
//!
//! An inclusion proof does not bind the tree size: the same path verifies for every size
//! whose tree has the same shape along that leaf's path. The size that counts is the one in
//! the signed checkpoint next to the root.

use sha2::{Digest, Sha256};

use crate::error::LedgerError;
use crate::hash::Hash;

/// Domain byte of an inner node.
const NODE: u8 = 0x01;

/// The root of the empty tree: `SHA-256("")`.
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// An inner node: `SHA-256(0x01 ‖ left ‖ right)`.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([NODE])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// The largest power of two smaller than `n` (for `n >= 2`): where a tree of `n` leaves
/// splits.
fn split(n: u64) -> u64 {
    debug_assert!(n >= 2);
    1 << (63 - (n - 1).leading_zeros())
}

/// Builds a Merkle root one leaf at a time in `O(log n)` memory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MerkleBuilder {
    /// Roots of complete subtrees, largest (leftmost) first: one per set bit of `len`.
    frontier: Vec<Hash>,
    len: u64,
}

impl MerkleBuilder {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a leaf hash.
    pub fn push(&mut self, leaf: Hash) {
        let mut hash = leaf;
        let mut n = self.len;
        // Each trailing one bit of the old length is a complete subtree of the same size as
        // the one being carried: merge them, like a binary increment.
        while n & 1 == 1 {
            if let Some(left) = self.frontier.pop() {
                hash = node_hash(&left, &hash);
            }
            n >>= 1;
        }
        self.frontier.push(hash);
        self.len += 1;
    }

    /// How many leaves were pushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether no leaf was pushed.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root of the leaves pushed so far (equal to [`root`] over them).
    pub fn root(&self) -> Hash {
        // The leftmost complete subtree is the largest power of two below the size, so the
        // split rule folds the frontier from the right.
        let mut subtrees = self.frontier.iter().rev();
        let Some(last) = subtrees.next() else {
            return empty_root();
        };
        subtrees.fold(*last, |right, left| node_hash(left, &right))
    }
}

/// The RFC 6962 root `MTH(D[n])` of `leaves`.
pub fn root(leaves: &[Hash]) -> Hash {
    match leaves {
        [] => empty_root(),
        [one] => *one,
        _ => {
            let k = split(leaves.len() as u64) as usize;
            node_hash(&root(&leaves[..k]), &root(&leaves[k..]))
        }
    }
}

/// The audit path `PATH(index, D[n])` of RFC 6962 §2.1.1: the sibling hashes from the leaf up
/// to the root.
pub fn inclusion_proof(leaves: &[Hash], index: u64) -> Result<Vec<Hash>, LedgerError> {
    let size = leaves.len() as u64;
    if index >= size {
        return Err(LedgerError::IndexOutOfRange { index, size });
    }
    let mut path = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), index as usize);
    // Walk down from the root; the siblings are found top-down and the path lists them
    // bottom-up.
    while hi - lo > 1 {
        let k = split((hi - lo) as u64) as usize;
        if m < k {
            path.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            path.push(root(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
        }
    }
    path.reverse();
    Ok(path)
}

/// The number of hashes in the audit path of `index` in a tree of `size` leaves.
fn inclusion_path_len(mut index: u64, mut size: u64) -> usize {
    let mut len = 0;
    while size > 1 {
        let k = split(size);
        if index < k {
            size = k;
        } else {
            index -= k;
            size -= k;
        }
        len += 1;
    }
    len
}

/// Checks that `leaf` is leaf `index` of a tree of `tree_size` leaves with root `root`,
/// following RFC 9162 §2.1.3.2.
pub fn verify_inclusion(
    leaf: &Hash,
    index: u64,
    tree_size: u64,
    path: &[Hash],
    root: &Hash,
) -> Result<(), LedgerError> {
    if index >= tree_size {
        return Err(LedgerError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let expected = inclusion_path_len(index, tree_size);
    if path.len() != expected {
        return Err(LedgerError::WrongPathLength {
            what: "the inclusion path",
            expected,
            found: path.len(),
        });
    }
    let (mut f, mut s) = (index, tree_size - 1);
    let mut r = *leaf;
    for p in path {
        if s == 0 {
            // Unreachable after the length check; kept from the RFC so the loop stands alone.
            return Err(mismatch(
                "the inclusion path is longer than the tree is deep",
            ));
        }
        if f & 1 == 1 || f == s {
            r = node_hash(p, &r);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            r = node_hash(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(mismatch(
            "the inclusion path is shorter than the tree is deep",
        ));
    }
    if r != *root {
        return Err(mismatch(
            "the leaf and its inclusion path do not lead to the root",
        ));
    }
    Ok(())
}

fn check_sizes(old_size: u64, new_size: u64) -> Result<(), LedgerError> {
    if old_size == 0 || old_size > new_size {
        return Err(LedgerError::BadTreeSizes { old_size, new_size });
    }
    Ok(())
}

/// The consistency proof `PROOF(old_size, D[n])` of RFC 6962 §2.1.2: the hashes that show the
/// tree of the first `old_size` leaves is a prefix of the tree of all of them
/// (`0 < old_size <= n`; empty when the sizes are equal).
pub fn consistency_proof(leaves: &[Hash], old_size: u64) -> Result<Vec<Hash>, LedgerError> {
    check_sizes(old_size, leaves.len() as u64)?;
    let mut proof = Vec::new();
    let (mut lo, mut hi, mut m) = (0usize, leaves.len(), old_size as usize);
    // SUBPROOF(m, D[lo..hi], b), unrolled: `complete` is b, "the old tree is a complete
    // subtree the verifier already knows the root of".
    let mut complete = true;
    while m != hi - lo {
        let k = split((hi - lo) as u64) as usize;
        if m <= k {
            proof.push(root(&leaves[lo + k..hi]));
            hi = lo + k;
        } else {
            proof.push(root(&leaves[lo..lo + k]));
            lo += k;
            m -= k;
            complete = false;
        }
    }
    if !complete {
        proof.push(root(&leaves[lo..hi]));
    }
    proof.reverse();
    Ok(proof)
}

/// The number of hashes in the consistency proof between the two sizes.
fn consistency_path_len(mut m: u64, mut n: u64) -> usize {
    let (mut len, mut complete) = (0, true);
    while m != n {
        let k = split(n);
        if m <= k {
            n = k;
        } else {
            m -= k;
            n -= k;
            complete = false;
        }
        len += 1;
    }
    len + usize::from(!complete)
}

/// Checks that the tree of `old_size` leaves with root `old_root` is a prefix of the tree of
/// `new_size` leaves with root `new_root`, following RFC 9162 §2.1.4.2. Equal sizes need an
/// empty proof and equal roots.
pub fn verify_consistency(
    old_size: u64,
    new_size: u64,
    old_root: &Hash,
    new_root: &Hash,
    proof: &[Hash],
) -> Result<(), LedgerError> {
    check_sizes(old_size, new_size)?;
    let expected = consistency_path_len(old_size, new_size);
    if proof.len() != expected {
        return Err(LedgerError::WrongPathLength {
            what: "the consistency proof",
            expected,
            found: proof.len(),
        });
    }
    if old_size == new_size {
        if old_root != new_root {
            return Err(mismatch("two trees of the same size have different roots"));
        }
        return Ok(());
    }
    // An old tree of a power-of-two size is a complete subtree: its root is the proof's start.
    let mut path = proof.iter();
    let first = if old_size.is_power_of_two() {
        old_root
    } else {
        match path.next() {
            Some(h) => h,
            None => return Err(mismatch("the consistency proof is empty")),
        }
    };
    let (mut f, mut s) = (old_size - 1, new_size - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (*first, *first);
    for c in path {
        if s == 0 {
            return Err(mismatch(
                "the consistency proof is longer than the tree is deep",
            ));
        }
        if f & 1 == 1 || f == s {
            fr = node_hash(c, &fr);
            sr = node_hash(c, &sr);
            while f & 1 == 0 && f != 0 {
                f >>= 1;
                s >>= 1;
            }
        } else {
            sr = node_hash(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    if s != 0 {
        return Err(mismatch(
            "the consistency proof is shorter than the tree is deep",
        ));
    }
    if fr != *old_root {
        return Err(mismatch(
            "the consistency proof does not lead to the old root",
        ));
    }
    if sr != *new_root {
        return Err(mismatch(
            "the consistency proof does not lead to the new root",
        ));
    }
    Ok(())
}

fn mismatch(what: &str) -> LedgerError {
    LedgerError::ProofMismatch { what: what.into() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chain::leaf_hash;

    fn leaves(n: u8) -> Vec<Hash> {
        (0..n).map(|i| leaf_hash(&[i])).collect()
    }

    fn h(parts: &[&[u8]]) -> Hash {
        let mut d = Sha256::new();
        for p in parts {
            d.update(p);
        }
        d.finalize().into()
    }

    #[test]
    fn roots_of_small_trees_follow_the_definition() {
        let l = leaves(3);
        assert_eq!(root(&[]), h(&[b""]));
        assert_eq!(root(&l[..1]), l[0]);
        let two = h(&[&[1], &l[0], &l[1]]);
        assert_eq!(root(&l[..2]), two);
        // Three leaves split at two: (l0, l1) on the left, l2 alone on the right.
        assert_eq!(root(&l), h(&[&[1], &two, &l[2]]));
    }

    #[test]
    fn the_rfc_6962_empty_root_is_the_sha256_of_nothing() {
        assert_eq!(
            crate::hash::to_hex(&empty_root()),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(MerkleBuilder::new().root(), empty_root());
    }

    #[test]
    fn the_audit_path_of_a_three_leaf_tree_lists_siblings_bottom_up() {
        let l = leaves(3);
        let left = root(&l[..2]);
        assert_eq!(inclusion_proof(&l, 0).expect("in range"), vec![l[1], l[2]]);
        assert_eq!(inclusion_proof(&l, 1).expect("in range"), vec![l[0], l[2]]);
        assert_eq!(inclusion_proof(&l, 2).expect("in range"), vec![left]);
        assert!(matches!(
            inclusion_proof(&l, 3),
            Err(LedgerError::IndexOutOfRange { index: 3, size: 3 })
        ));
    }

    #[test]
    fn the_consistency_proof_from_three_to_four_leaves_is_the_rfc_example_shape() {
        // RFC 6962 §2.1.3: PROOF(3, D[4]) = [l2, l3, MTH(l0, l1)].
        let l = leaves(4);
        assert_eq!(
            consistency_proof(&l, 3).expect("valid sizes"),
            vec![l[2], l[3], root(&l[..2])]
        );
        assert_eq!(
            consistency_proof(&l, 2).expect("valid sizes"),
            vec![root(&l[2..])]
        );
        assert!(consistency_proof(&l, 4).expect("equal sizes").is_empty());
        assert!(consistency_proof(&l, 0).is_err());
        assert!(consistency_proof(&l, 5).is_err());
    }

    #[test]
    fn wrong_path_lengths_and_sizes_are_named_in_the_error() {
        let l = leaves(4);
        let r = root(&l);
        let err = verify_inclusion(&l[0], 0, 4, &[l[1]], &r).expect_err("short path");
        assert!(matches!(
            err,
            LedgerError::WrongPathLength {
                expected: 2,
                found: 1,
                ..
            }
        ));
        let err = verify_consistency(3, 2, &r, &r, &[]).expect_err("shrunk");
        assert!(err.to_string().contains("rolled back"), "{err}");
        let err = verify_consistency(4, 4, &r, &l[0], &[]).expect_err("forked");
        assert!(matches!(err, LedgerError::ProofMismatch { .. }));
    }
}
