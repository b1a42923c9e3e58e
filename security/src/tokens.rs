//! Bearer tokens: static tokens stored hashed, and JWTs from a configured issuer.
//!
//! - **Static tokens**: the file holds SHA-256 hashes, never the tokens, so a leaked config
//!   does not leak credentials. Tokens are meant to be long random strings (`pyralog auth
//!   new-token` makes one), so a plain hash is the right tool (no password stretching).
//! - **JWT**: signature checked with the issuer's keys from a JWKS file (the `kid` picks the
//!   key, and the key fixes the algorithm: a token cannot choose a weaker one or `none`);
//!   `exp` is required, `iss` must match, `aud` when configured.
//!
//! A token with three dot-separated parts is a JWT; anything else is a static token.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, DecodingKey, Validation};
use serde::Deserialize;

use crate::error::{AuthError, SecurityError};
use crate::identity::{AuthMethod, Principal};
use crate::reload::{Reload, Reloading};
use crate::settings::{AuthSettings, JwtSettings};

/// Hex SHA-256 of a token, as the tokens file stores it.
pub fn hash_token(token: &str) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// A new random token (32 random bytes, base64url): for `pyralog auth new-token`.
pub fn new_token() -> Result<String, SecurityError> {
    use aws_lc_rs::rand::SecureRandom;
    use base64::Engine;
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| SecurityError::Config("no randomness available".into()))?;
    Ok(format!(
        "pyt_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenFile {
    tokens: Vec<TokenEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenEntry {
    principal: String,
    sha256: String,
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, SecurityError> {
    let bytes = std::fs::read(path).map_err(|e| SecurityError::file(path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| SecurityError::file(path, e))
}

fn load_tokens(path: &Path) -> Result<HashMap<String, String>, SecurityError> {
    let file: TokenFile = read_json(path)?;
    let mut out = HashMap::new();
    for t in file.tokens {
        let hash = t.sha256.to_ascii_lowercase();
        if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(SecurityError::file(
                path,
                format!("token of {:?}: sha256 must be 64 hex digits", t.principal),
            ));
        }
        if t.principal.is_empty() {
            return Err(SecurityError::file(path, "a token has an empty principal"));
        }
        out.insert(hash, t.principal);
    }
    Ok(out)
}

struct Jwt {
    settings: JwtSettings,
    keys: Arc<Reloading<JwkSet>>,
}

/// Turns bearer tokens into principals.
pub struct TokenAuthenticator {
    tokens: Option<Arc<Reloading<HashMap<String, String>>>>,
    jwt: Option<Jwt>,
}

impl std::fmt::Debug for TokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenAuthenticator")
            .field("static_tokens", &self.tokens.is_some())
            .field("jwt", &self.jwt.as_ref().map(|j| &j.settings.issuer))
            .finish()
    }
}

impl TokenAuthenticator {
    /// Loads the token file and the JWKS named in `settings` (an unreadable file is an error).
    pub fn new(settings: &AuthSettings) -> Result<TokenAuthenticator, SecurityError> {
        let tokens = match &settings.tokens_file {
            Some(path) => {
                let p = path.clone();
                Some(Reloading::new(
                    "token file",
                    vec![path.clone()],
                    move || load_tokens(&p),
                )?)
            }
            None => None,
        };
        let jwt = match &settings.jwt {
            Some(j) => {
                let p = j.jwks_file.clone();
                let keys = Reloading::new("JWKS", vec![p.clone()], move || {
                    let set: JwkSet = read_json(&p)?;
                    if set.keys.is_empty() {
                        return Err(SecurityError::file(&p, "no keys in the JWKS"));
                    }
                    Ok(set)
                })?;
                Some(Jwt {
                    settings: j.clone(),
                    keys,
                })
            }
            None => None,
        };
        Ok(TokenAuthenticator { tokens, jwt })
    }

    /// What the watcher re-reads.
    pub fn reloadables(&self) -> Vec<Arc<dyn Reload>> {
        let mut out: Vec<Arc<dyn Reload>> = Vec::new();
        if let Some(t) = &self.tokens {
            out.push(t.clone());
        }
        if let Some(j) = &self.jwt {
            out.push(j.keys.clone());
        }
        out
    }

    /// The principal a bearer token stands for.
    pub fn authenticate(&self, token: &str) -> Result<Principal, AuthError> {
        if token.split('.').count() == 3 {
            if let Some(jwt) = &self.jwt {
                return jwt.verify(token);
            }
        }
        let Some(tokens) = &self.tokens else {
            return Err(AuthError::UnknownToken);
        };
        match tokens.get().get(&hash_token(token)) {
            Some(principal) => Ok(Principal {
                name: principal.clone(),
                method: AuthMethod::Token,
            }),
            None => Err(AuthError::UnknownToken),
        }
    }
}

impl Jwt {
    fn verify(&self, token: &str) -> Result<Principal, AuthError> {
        let bad = |m: String| AuthError::BadJwt(m);
        let header = decode_header(token).map_err(|e| bad(e.to_string()))?;
        let keys = self.keys.get();
        let jwk = match &header.kid {
            Some(kid) => keys.find(kid),
            None if keys.keys.len() == 1 => keys.keys.first(),
            None => None,
        }
        .ok_or_else(|| bad("no key in the JWKS matches the token's kid".into()))?;
        let key = DecodingKey::from_jwk(jwk).map_err(|e| bad(format!("unusable JWKS key: {e}")))?;
        // The key decides the algorithm family; the header may only pick within it (and a
        // JWK that names its algorithm pins it).
        let alg = match jwk.common.key_algorithm {
            Some(a) => a
                .to_string()
                .parse::<jsonwebtoken::Algorithm>()
                .map_err(|_| bad(format!("key algorithm {a} cannot verify signatures")))?,
            None => header.alg,
        };
        if alg != header.alg {
            return Err(bad(format!(
                "the token says {:?}, its key is for {alg:?}",
                header.alg
            )));
        }
        let mut validation = Validation::new(alg);
        validation.set_issuer(&[&self.settings.issuer]);
        match &self.settings.audience {
            Some(aud) => validation.set_audience(&[aud]),
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.leeway = self.settings.leeway.as_secs();
        let data = decode::<serde_json::Map<String, serde_json::Value>>(token, &key, &validation)
            .map_err(|e| bad(e.to_string()))?;
        let name = data
            .claims
            .get(&self.settings.principal_claim)
            .and_then(|v| v.as_str())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("no {:?} claim", self.settings.principal_claim)))?;
        Ok(Principal {
            name: name.to_owned(),
            method: AuthMethod::Jwt,
        })
    }
}
