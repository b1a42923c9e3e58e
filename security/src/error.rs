//! Errors of the security crate: configuration and files (fatal at start, logged on reload),
//! and authentication failures (answered to the caller as `UNAUTHENTICATED`).

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("invalid security config: {0}")]
    Config(String),
    #[error("{path}: {detail}")]
    File { path: PathBuf, detail: String },
    #[error("TLS: {0}")]
    Tls(String),
    #[error("certificate generation: {0}")]
    Certificate(String),
}

impl SecurityError {
    pub(crate) fn file(path: &std::path::Path, detail: impl std::fmt::Display) -> Self {
        SecurityError::File {
            path: path.to_owned(),
            detail: detail.to_string(),
        }
    }
}

/// Why a caller is not authenticated. The text goes back to the caller (never a secret:
/// no token bytes, no key material) and to the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no credentials: present a client certificate or an `authorization: Bearer` token")]
    Missing,
    #[error("the authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("unknown bearer token")]
    UnknownToken,
    #[error("invalid JWT: {0}")]
    BadJwt(String),
    #[error("client certificate rejected: {0}")]
    BadCertificate(String),
    #[error("this port speaks TLS; the connection is plaintext")]
    PlaintextOnTls,
}
