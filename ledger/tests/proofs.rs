//! Inclusion and consistency proof documents, end to end: made from an archived partition,
//! carried as JSON, checked with only the public key, and refused with a reason when
//! anything in them is changed.

mod common;

use common::{key, record, Archive, LOG, PARTITION};
use pyralog_ledger::{
    consistency_proof, ConsistencyProof, InclusionProof, LedgerError, SigningKey, MAX_PROOF_JSON,
};

/// A change made to a proof by a forger.
type Edit = fn(&mut InclusionProof);

fn what(err: LedgerError) -> String {
    match err {
        LedgerError::ProofMismatch { what } => what,
        other => panic!("expected a proof mismatch, got {other}"),
    }
}

#[test]
fn every_archived_record_has_a_proof_that_verifies_with_the_record() {
    let archive = Archive::sample();
    let vk = key().verifying_key();
    for (o, object) in archive.objects.iter().enumerate() {
        for (i, r) in object.records.iter().enumerate() {
            let proof = archive.inclusion(o, i);
            proof.verify_record(&vk, r).expect("verifies");
            let back = InclusionProof::from_json(&proof.to_json()).expect("parses");
            assert_eq!(back, proof);
            back.verify_record(&vk, r).expect("verifies after JSON");
        }
    }
}

#[test]
fn a_different_record_at_the_same_offset_is_refused() {
    let archive = Archive::sample();
    let proof = archive.inclusion(2, 3);
    let mut altered = archive.objects[2].records[3].clone();
    altered.value = Some(bytes::Bytes::from_static(b"rewritten"));
    let err = proof
        .verify_record(&key().verifying_key(), &altered)
        .expect_err("altered record");
    assert!(what(err).contains("differs from the one the proof covers"));

    let neighbour = record(proof.offset + 2);
    let err = proof
        .verify_record(&key().verifying_key(), &neighbour)
        .expect_err("other record");
    assert!(what(err).contains("the proof is for offset 9"));
}

#[test]
fn changing_any_part_of_a_proof_is_caught_by_the_check_that_covers_it() {
    let archive = Archive::sample();
    let vk = key().verifying_key();
    let proof = archive.inclusion(2, 3);
    proof.verify(&vk).expect("intact");
    let cases: [(&str, Edit); 12] = [
        ("for other/3", |p| p.log = "other".into()),
        ("for orders/4", |p| p.partition += 1),
        ("outside the object's offsets", |p| p.offset = 99),
        ("the record in its object", |p| p.record_leaf[0] ^= 1),
        ("is not leaf", |p| p.index_in_object += 1),
        ("is not leaf", |p| p.offset += 1),
        ("is not leaf", |p| p.offset -= 1),
        ("the record in its object", |p| p.object_path[0][7] ^= 1),
        ("is not leaf", |p| p.object.record_count += 1),
        ("the object in the checkpoint's archive tree", |p| {
            p.object.chain_end[0] ^= 1
        }),
        ("the object in the checkpoint's archive tree", |p| {
            p.object_index = 0
        }),
        ("the object in the checkpoint's archive tree", |p| {
            p.tree_path.pop();
        }),
    ];
    for (expected, edit) in cases {
        let mut forged = proof.clone();
        edit(&mut forged);
        let got = what(forged.verify(&vk).expect_err(expected));
        assert!(got.contains(expected), "expected {expected:?}, got {got:?}");
    }
}

#[test]
fn a_proof_carries_its_checkpoint_so_the_signature_is_checked_first() {
    let archive = Archive::sample();
    let mut proof = archive.inclusion(0, 0);
    proof.checkpoint.checkpoint.root[0] ^= 1;
    assert!(matches!(
        proof.verify(&key().verifying_key()),
        Err(LedgerError::BadSignature { .. })
    ));
    let other = SigningKey::generate();
    let resigned = archive.inclusion(0, 0);
    assert!(matches!(
        resigned.verify(&other.verifying_key()),
        Err(LedgerError::UnknownKey { .. })
    ));
}

#[test]
fn a_proof_against_a_rewritten_history_fails_even_if_correctly_signed() {
    // The operator rewrites object 0's records and signs a checkpoint over the new history:
    // a proof from the old history does not verify against it.
    let honest = Archive::sample();
    let rewritten = Archive::new(&[(100..105).collect(), vec![5], (6..14).collect()]);
    let mut proof = honest.inclusion(1, 0);
    proof.checkpoint = rewritten.signed(3);
    assert!(proof.verify(&key().verifying_key()).is_err());
}

#[test]
fn oversized_and_malformed_proof_documents_are_refused() {
    let huge = vec![b' '; MAX_PROOF_JSON + 1];
    assert!(matches!(
        InclusionProof::from_json(&huge),
        Err(LedgerError::TooLarge { .. })
    ));
    assert!(matches!(
        ConsistencyProof::from_json(&huge),
        Err(LedgerError::TooLarge { .. })
    ));
    assert!(matches!(
        InclusionProof::from_json(b"[]"),
        Err(LedgerError::Json(_))
    ));
    let text = String::from_utf8(Archive::sample().inclusion(0, 1).to_json()).expect("utf-8");
    let short_hash = text.replacen("\"record_leaf\": \"", "\"record_leaf\": \"0", 1);
    let err = InclusionProof::from_json(short_hash.as_bytes()).expect_err("bad hash");
    assert!(
        err.to_string().contains("65 characters, expected 64"),
        "{err}"
    );
}

fn consistency(archive: &Archive, old: usize, new: usize) -> ConsistencyProof {
    let leaves = archive.object_leaves(new);
    ConsistencyProof {
        old: archive.signed(old),
        new: archive.signed(new),
        path: if old == 0 {
            Vec::new()
        } else {
            consistency_proof(&leaves, old as u64).expect("0 < old <= new")
        },
    }
}

#[test]
fn every_later_checkpoint_is_proven_consistent_with_every_earlier_one() {
    let archive = Archive::new(&(0..9).map(|i| vec![i]).collect::<Vec<_>>());
    let vk = key().verifying_key();
    for old in 0..=9 {
        for new in old..=9 {
            let proof = consistency(&archive, old, new);
            proof.verify(&vk).expect("consistent");
            let back = ConsistencyProof::from_json(&proof.to_json()).expect("parses");
            assert_eq!(back, proof);
        }
    }
}

#[test]
fn a_rolled_back_or_forked_archive_is_detected() {
    let archive = Archive::sample();
    let vk = key().verifying_key();
    let mut rollback = consistency(&archive, 2, 3);
    std::mem::swap(&mut rollback.old, &mut rollback.new);
    let err = rollback.verify(&vk).expect_err("rollback");
    assert!(matches!(
        err,
        LedgerError::BadTreeSizes {
            old_size: 3,
            new_size: 2
        }
    ));
    assert!(err.to_string().contains("rolled back"), "{err}");

    // Same size, different history: the roots differ.
    let fork = Archive::new(&[(0..5).collect(), vec![5], (6..16).collect()]);
    let same_size = ConsistencyProof {
        old: archive.signed(3),
        new: fork.signed(3),
        path: Vec::new(),
    };
    assert!(same_size.verify(&vk).is_err());

    // A longer history that rewrote an old object: no path from the old root leads to it.
    let mut grown = Archive::sample();
    grown.objects.extend(fork.objects);
    grown.objects[0].summary.chain_end[0] ^= 1;
    let proof = ConsistencyProof {
        old: archive.signed(3),
        new: grown.signed(6),
        path: consistency_proof(&grown.object_leaves(6), 3).expect("sizes"),
    };
    assert!(matches!(
        proof.verify(&vk),
        Err(LedgerError::ProofMismatch { .. })
    ));
}

#[test]
fn consistency_needs_one_partition_and_two_valid_signatures() {
    let archive = Archive::sample();
    let vk = key().verifying_key();
    let mut other_partition = consistency(&archive, 1, 3);
    let mut cp = other_partition.new.checkpoint.clone();
    cp.partition = PARTITION + 1;
    other_partition.new = key().sign(cp);
    let err = what(other_partition.verify(&vk).expect_err("two partitions"));
    assert!(err.contains(&format!("{LOG}/{PARTITION}")), "{err}");

    let mut unsigned = consistency(&archive, 1, 3);
    unsigned.old.checkpoint.tree_size = 2;
    assert!(matches!(
        unsigned.verify(&vk),
        Err(LedgerError::BadSignature { .. })
    ));
}
