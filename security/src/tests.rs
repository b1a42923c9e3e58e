//! The security building blocks on their own: certificates and their names, token checks,
//! reloading, settings; and arbitrary input to every decoder (certificates, tokens, JWTs,
//! token files) never panics.

use std::time::{Duration, SystemTime};

use proptest::prelude::*;
use rustls_pki_types::CertificateDer;

use crate::certs::{init_cert_set, Authority, LeafSpec, Validity};
use crate::error::AuthError;
use crate::identity::certificate_names;
use crate::reload::Reloading;
use crate::settings::{AuthSettings, JwtSettings, SecuritySettings, TlsFiles};
use crate::tokens::{hash_token, TokenAuthenticator};

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + SystemTime::UNIX_EPOCH.elapsed().unwrap_or_default()
}

fn der_of(pem: &str) -> CertificateDer<'static> {
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem")
}

#[test]
fn a_certificate_names_its_uri_then_dns_identities() {
    let ca = Authority::generate("test CA", Validity::days_from(now(), 1)).expect("ca");
    let leaf = ca
        .issue(&LeafSpec {
            names: vec!["node-2".into(), "spiffe://pyralog/node/2".into()],
            ips: vec![std::net::IpAddr::from([127, 0, 0, 1])],
            validity: Validity::days_from(now(), 1),
            server: true,
            client: true,
        })
        .expect("leaf");
    let names = certificate_names(&der_of(&leaf.cert_pem)).expect("names");
    assert_eq!(names, vec!["spiffe://pyralog/node/2", "node-2"]);
}

#[test]
fn a_cert_set_makes_a_server_config_that_loads() {
    let dir = tempfile::tempdir().expect("tempdir");
    let set = init_cert_set(
        dir.path(),
        2,
        "node-{id}",
        &["alice".to_owned()],
        &[],
        Validity::days_from(now(), 1),
    )
    .expect("set");
    let (cert, key) = set.node_cert(2);
    let tls = crate::server::server_tls(crate::server::ServerTlsFiles {
        cert,
        key,
        client_ca: Some(set.ca.clone()),
    });
    assert!(tls.is_ok(), "{tls:?}");
    let missing = crate::server::server_tls(crate::server::ServerTlsFiles {
        cert: dir.path().join("nope.pem"),
        key: dir.path().join("nope-key.pem"),
        client_ca: None,
    });
    assert!(missing.is_err());
}

#[test]
fn a_changed_file_is_reloaded_and_a_broken_one_keeps_the_old_value() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("v");
    std::fs::write(&path, "1").expect("write");
    let p = path.clone();
    let r = Reloading::new("test", vec![path.clone()], move || {
        let text = std::fs::read_to_string(&p).map_err(|e| crate::SecurityError::file(&p, e))?;
        text.trim()
            .parse::<u32>()
            .map_err(|e| crate::SecurityError::file(&p, e))
    })
    .expect("first load");
    assert_eq!(*r.get(), 1);
    assert!(!r.check(), "nothing changed");
    std::fs::write(&path, "22").expect("write");
    assert!(r.check());
    assert_eq!(*r.get(), 22);
    std::fs::write(&path, "not a number").expect("write");
    assert!(!r.check());
    assert_eq!(*r.get(), 22, "a broken file keeps the previous value");
}

fn token_auth(dir: &std::path::Path, with_jwt: bool) -> TokenAuthenticator {
    let tokens = dir.join("tokens.json");
    let file =
        serde_json::json!({"tokens": [{"principal": "carol", "sha256": hash_token("s3cret")}]});
    std::fs::write(&tokens, file.to_string()).expect("tokens");
    let jwt = with_jwt.then(|| {
        let jwks = dir.join("jwks.json");
        let jwks_json = serde_json::json!({"keys": [{"kty": "oct", "kid": "k", "alg": "HS256",
            "k": "c2VjcmV0LWtleS1vZi10aGUtdGVzdC1pc3N1ZXItMDEyMzQ1Njc4OQ"}]});
        std::fs::write(&jwks, jwks_json.to_string()).expect("jwks");
        JwtSettings {
            issuer: "iss".into(),
            audience: None,
            jwks_file: jwks,
            principal_claim: "sub".into(),
            leeway: Duration::from_secs(0),
        }
    });
    TokenAuthenticator::new(&AuthSettings {
        enabled: true,
        superusers: vec![],
        tokens_file: Some(tokens),
        jwt,
    })
    .expect("authenticator")
}

#[test]
fn static_tokens_are_matched_by_hash() {
    let dir = tempfile::tempdir().expect("tempdir");
    let auth = token_auth(dir.path(), false);
    assert_eq!(auth.authenticate("s3cret").expect("known").name, "carol");
    assert_eq!(auth.authenticate("s3cre"), Err(AuthError::UnknownToken));
    // The file stores hashes: the token itself is not a key.
    assert_eq!(
        auth.authenticate(&hash_token("s3cret")),
        Err(AuthError::UnknownToken)
    );
}

#[test]
fn a_bad_token_file_is_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let tokens = dir.path().join("tokens.json");
    std::fs::write(
        &tokens,
        r#"{"tokens": [{"principal": "x", "sha256": "abc"}]}"#,
    )
    .expect("w");
    let e = TokenAuthenticator::new(&AuthSettings {
        enabled: true,
        tokens_file: Some(tokens),
        ..AuthSettings::default()
    })
    .expect_err("short hash");
    assert!(e.to_string().contains("64 hex digits"), "{e}");
}

#[test]
fn settings_that_cannot_work_are_refused() {
    let mut s = SecuritySettings::default();
    assert!(s.validate().is_ok());
    s.auth.enabled = true;
    assert!(s.validate().is_err(), "auth without a way to authenticate");
    s.client_ca = Some("/ca.pem".into());
    assert!(s.validate().is_err(), "client_ca without tls");
    s.tls = Some(TlsFiles {
        cert: "/c.pem".into(),
        key: "/k.pem".into(),
    });
    assert!(s.validate().is_ok());
}

proptest! {
    /// Arbitrary bytes as a certificate: an error, never a panic.
    #[test]
    fn arbitrary_certificates_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = certificate_names(&CertificateDer::from(bytes));
    }

    /// Arbitrary bearer tokens, JWT-shaped or not: an answer, never a panic.
    #[test]
    fn arbitrary_tokens_never_panic(
        parts in proptest::collection::vec("[A-Za-z0-9_=+/.-]{0,40}", 1..5),
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let auth = token_auth(dir.path(), true);
        let token = parts.join(".");
        prop_assert!(auth.authenticate(&token).is_err() || token == "s3cret");
    }

    /// Arbitrary token files: a load error or a table, never a panic.
    #[test]
    fn arbitrary_token_files_never_panic(text in ".{0,200}") {
        let dir = tempfile::tempdir().expect("tempdir");
        let tokens = dir.path().join("tokens.json");
        std::fs::write(&tokens, text).expect("w");
        let _ = TokenAuthenticator::new(&AuthSettings {
            enabled: true,
            tokens_file: Some(tokens),
            ..AuthSettings::default()
        });
    }
}
