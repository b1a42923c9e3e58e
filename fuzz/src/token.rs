//! Bearer tokens (`pyralog_security::tokens`): every client call on a secured node passes its
//! `authorization` header through `TokenAuthenticator::authenticate` before anything else.
//!
//! The input is a token as sent, and also the claims part of a JWT correctly signed with the
//! issuer's key (so the claims parser is reached, not only the signature check). Contract: no
//! panic; a token is a principal or an `AuthError`; a principal from a JWT is the non-empty
//! `sub` claim of that token.

use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey};
use pyralog_security::tokens::{hash_token, TokenAuthenticator};
use pyralog_security::{AuthMethod, AuthSettings, JwtSettings};

/// The issuer's HMAC key (base64url, as in the JWKS).
const KEY_B64: &str = "ZnV6ei1pc3N1ZXIta2V5LW9mLXRoZS1weXJhbG9nLWZ1enotdGFyZ2V0cw";

struct Auth {
    _dir: tempfile::TempDir,
    auth: TokenAuthenticator,
}

fn auth() -> &'static TokenAuthenticator {
    static A: OnceLock<Auth> = OnceLock::new();
    &A.get_or_init(|| {
        let dir = crate::hot::scratch();
        let tokens = dir.path().join("tokens.json");
        let file = serde_json::json!({"tokens": [{"principal": "svc", "sha256": hash_token("pyt_static")}]});
        std::fs::write(&tokens, file.to_string()).expect("write tokens");
        let jwks = dir.path().join("jwks.json");
        let set = serde_json::json!({"keys": [{"kty": "oct", "kid": "k1", "alg": "HS256", "k": KEY_B64}]});
        std::fs::write(&jwks, set.to_string()).expect("write jwks");
        let auth = TokenAuthenticator::new(&AuthSettings {
            enabled: true,
            superusers: vec![],
            tokens_file: Some(tokens),
            jwt: Some(JwtSettings {
                issuer: "fuzz-issuer".into(),
                audience: Some("pyralog".into()),
                jwks_file: jwks,
                principal_claim: "sub".into(),
                leeway: Duration::from_secs(30),
            }),
        })
        .expect("authenticator");
        Auth { _dir: dir, auth }
    })
    .auth
}

/// A JWT over `claims` (raw bytes), signed with the issuer's key.
pub fn signed(claims: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = EncodingKey::from_secret(&b64.decode(KEY_B64).expect("key is base64url"))
        .expect("an HMAC key");
    let header = b64.encode(br#"{"alg":"HS256","typ":"JWT","kid":"k1"}"#);
    let message = format!("{header}.{}", b64.encode(claims));
    let signature =
        jsonwebtoken::crypto::sign(message.as_bytes(), &key, Algorithm::HS256).expect("sign");
    format!("{message}.{signature}")
}

/// Valid claims, expiring far in the future.
pub fn seed_claims() -> Vec<u8> {
    br#"{"iss":"fuzz-issuer","aud":"pyralog","sub":"alice","exp":4102444800,"nbf":0}"#.to_vec()
}

pub fn target(input: &[u8]) {
    let a = auth();
    let _ = a.authenticate(&String::from_utf8_lossy(input));
    let token = signed(input);
    if let Ok(p) = a.authenticate(&token) {
        assert_eq!(p.method, AuthMethod::Jwt);
        let claims: serde_json::Value =
            serde_json::from_slice(input).expect("accepted claims are JSON");
        assert_eq!(
            claims.get("sub").and_then(|s| s.as_str()),
            Some(p.name.as_str()),
            "the principal is the sub claim"
        );
        assert!(!p.name.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_token_is_accepted_and_a_static_token_too() {
        assert_eq!(
            auth()
                .authenticate(&signed(&seed_claims()))
                .expect("jwt")
                .name,
            "alice"
        );
        assert_eq!(
            auth().authenticate("pyt_static").expect("static").name,
            "svc"
        );
    }
}
