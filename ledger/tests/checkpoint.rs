//! Signed checkpoints and keys: what is signed, what the documents look like, and how every
//! kind of mistake or forgery is reported.

mod common;

use common::{key, Archive, PUBLIC, SEED};
use pyralog_ledger::{
    ChainVersion, LedgerError, SignedCheckpoint, SigningKey, VerifyingKey, MAX_CHECKPOINT_JSON,
};

#[test]
fn the_signed_bytes_are_the_documented_binary_encoding() {
    let cp = Archive::sample().checkpoint(2);
    let mut expected = b"pyralog-ledger-checkpoint-v1".to_vec();
    expected.extend(6u32.to_be_bytes());
    expected.extend(b"orders");
    expected.extend(3u32.to_be_bytes());
    expected.extend(2u64.to_be_bytes());
    expected.extend(5u64.to_be_bytes());
    expected.extend(cp.root);
    expected.extend(cp.chain_head);
    expected.extend(12u64.to_be_bytes());
    expected.extend((common::T0 + 2).to_be_bytes());
    assert_eq!(cp.signing_bytes(), expected);
}

#[test]
fn a_seed_gives_the_rfc_8032_public_key_and_round_trips() {
    let k = key();
    assert_eq!(k.verifying_key().to_hex(), PUBLIC);
    assert_eq!(k.seed_hex(), SEED);
    let from_file = SigningKey::from_seed_hex(&format!("  {SEED}\n")).expect("trimmed");
    assert_eq!(from_file.seed_hex(), SEED);
    assert!(SigningKey::from_seed_hex(&SEED[..62]).is_err());
    assert!(SigningKey::from_seed_hex(&SEED.replace('9', "x")).is_err());
}

#[test]
fn debug_output_never_shows_the_secret() {
    let k = key();
    let shown = format!("{k:?}");
    assert!(!shown.contains(SEED), "{shown}");
    assert!(shown.contains(&k.verifying_key().key_id()), "{shown}");
}

#[test]
fn the_key_id_is_the_first_8_bytes_of_the_public_keys_sha256() {
    use sha2::Digest as _;
    let vk = key().verifying_key();
    let digest = sha2::Sha256::digest(hex::decode(PUBLIC).expect("hex"));
    assert_eq!(vk.key_id(), hex::encode(&digest[..8]));
    assert_eq!(vk.key_id().len(), 16);
}

#[test]
fn public_keys_parse_from_hex_and_weak_keys_are_refused() {
    let vk = VerifyingKey::from_hex(&format!("{PUBLIC}\n")).expect("a valid key");
    assert_eq!(vk, key().verifying_key());
    // The identity point: every signature under it is trivially forgeable.
    let identity = format!("01{}", "00".repeat(31));
    assert!(matches!(
        VerifyingKey::from_hex(&identity),
        Err(LedgerError::BadKey(_))
    ));
    assert!(matches!(
        VerifyingKey::from_hex("abcd"),
        Err(LedgerError::BadHex { .. })
    ));
}

#[test]
fn a_signed_checkpoint_verifies_and_survives_json() {
    let signed = Archive::sample().signed(3);
    let vk = key().verifying_key();
    signed.verify(&vk).expect("verifies");
    let back = SignedCheckpoint::from_json(&signed.to_json()).expect("parses");
    assert_eq!(back, signed);
    back.verify(&vk).expect("still verifies");
    // Reformatting the JSON does not touch the signature.
    let value: serde_json::Value = serde_json::from_slice(&signed.to_json()).expect("json");
    let pretty = serde_json::to_vec_pretty(&value).expect("json");
    SignedCheckpoint::from_json(&pretty)
        .expect("parses")
        .verify(&vk)
        .expect("verifies");
}

/// A golden document: the record encoding, the chain, both Merkle trees, the object leaf,
/// the signed bytes and the JSON layout all feed into it, so a change to any of them (which
/// would orphan every proof users hold) fails here. Ed25519 signatures are deterministic.
/// Version 2 of the chain: ledgers created before version 3 keep verifying, so their golden
/// document stays as it was.
#[test]
fn the_json_document_is_stable() {
    let archive = Archive::with_version(&[vec![0]], ChainVersion::V2);
    let json = String::from_utf8(archive.signed(1).to_json()).expect("utf-8");
    let expected = concat!(
        r#"{"checkpoint":{"log":"orders","partition":3,"tree_size":1,"last_offset":0,"#,
        r#""root":"cfd3dda659bb15f419c9fbbd2fce26dd3b5bb921b531dfa9a66fb81c3e0a6c51","#,
        r#""chain_head":"7d4728bc2454299c179f26955a4cfe62011a8d44d2e1a30c4c666df57439f73e","#,
        r#""manifest_version":11,"time_us":1700000000000001},"key_id":"21fe31dfa154a261","#,
        r#""signature":"72394ce73873d711b68e4aa672ee89a73ef3a8e4c47b114d8fb56e786576daf2"#,
        r#"6038ae105da7ea3925a985f849a638a7b6ccff2ceb602fc70128560e9395e509"}"#,
    );
    assert_eq!(json, expected);
}

/// The same golden document for the current chain (version 3): only the chain head and what
/// covers it (the archive root, the signature) differ.
#[test]
fn the_json_document_of_a_version_3_chain_is_stable() {
    let json = String::from_utf8(Archive::new(&[vec![0]]).signed(1).to_json()).expect("utf-8");
    let expected = concat!(
        r#"{"checkpoint":{"log":"orders","partition":3,"tree_size":1,"last_offset":0,"#,
        r#""root":"0cd26345a34ee641ad5d2a2b5905c5f8016fa106d84604a0cbfb47f8a7fb10c9","#,
        r#""chain_head":"2ae9d4ef5ef5e811bfcc3f3378593616e01d65b52d9bcc23df7d67f0477d08b8","#,
        r#""manifest_version":11,"time_us":1700000000000001},"key_id":"21fe31dfa154a261","#,
        r#""signature":"1f6ec5c45570e7c2c9efdf8904aba13cd492fa12c83a7536eff8bec653b7a632"#,
        r#"3eead0147da0c18d21c764f930ce76955469d5bb61556ad7562ba822d201c709"}"#,
    );
    assert_eq!(json, expected);
}

#[test]
fn changing_any_signed_field_breaks_the_signature() {
    let signed = Archive::sample().signed(3);
    let vk = key().verifying_key();
    let edits: [fn(&mut SignedCheckpoint); 8] = [
        |s| s.checkpoint.log.push('x'),
        |s| s.checkpoint.partition += 1,
        |s| s.checkpoint.tree_size -= 1,
        |s| s.checkpoint.last_offset += 1,
        |s| s.checkpoint.root[0] ^= 1,
        |s| s.checkpoint.chain_head[31] ^= 1,
        |s| s.checkpoint.manifest_version += 1,
        |s| s.checkpoint.time_us -= 1,
    ];
    for edit in edits {
        let mut forged = signed.clone();
        edit(&mut forged);
        let err = forged.verify(&vk).expect_err("altered");
        assert!(matches!(err, LedgerError::BadSignature { .. }), "{err}");
        assert!(err.to_string().contains("altered after signing"), "{err}");
    }
}

#[test]
fn another_keys_checkpoint_is_reported_as_signed_by_another_key() {
    let other = SigningKey::generate();
    let signed = other.sign(Archive::sample().checkpoint(1));
    signed
        .verify(&other.verifying_key())
        .expect("verifies under its own key");
    let err = signed
        .verify(&key().verifying_key())
        .expect_err("wrong key");
    assert!(
        matches!(&err, LedgerError::UnknownKey { found, .. } if *found == other.verifying_key().key_id()),
        "{err}"
    );
    // Claiming our key id does not help: the signature is still checked under our key.
    let mut claimed = signed;
    claimed.key_id = key().verifying_key().key_id();
    assert!(matches!(
        claimed.verify(&key().verifying_key()),
        Err(LedgerError::BadSignature { .. })
    ));
}

#[test]
fn a_malformed_signature_is_a_hex_error() {
    let mut signed = Archive::sample().signed(1);
    signed.signature.truncate(100);
    assert!(matches!(
        signed.verify(&key().verifying_key()),
        Err(LedgerError::BadHex { .. })
    ));
}

#[test]
fn oversized_and_malformed_documents_are_refused_before_use() {
    let huge = vec![b' '; MAX_CHECKPOINT_JSON + 1];
    assert!(matches!(
        SignedCheckpoint::from_json(&huge),
        Err(LedgerError::TooLarge { limit }) if limit == MAX_CHECKPOINT_JSON
    ));
    assert!(matches!(
        SignedCheckpoint::from_json(b"{\"checkpoint\": 1}"),
        Err(LedgerError::Json(_))
    ));
    let mut value: serde_json::Value =
        serde_json::from_slice(&Archive::sample().signed(1).to_json()).expect("json");
    value["unsigned_note"] = serde_json::json!("trust me");
    let err = SignedCheckpoint::from_json(value.to_string().as_bytes()).expect_err("unknown");
    assert!(err.to_string().contains("unsigned_note"), "{err}");
}
