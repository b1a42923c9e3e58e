//! Who is calling: principals, and the names a certificate proves.
//!
//! A certificate's identity is its subject alternative names: URI names first (SPIFFE-style
//! `spiffe://…`), then DNS names. The common name is not used (RFC 6125 deprecates it as an
//! identity). A client certificate's principal is its first such name; a node's certificate
//! must carry the configured identity of a node (`node-{id}` by default) among its DNS names.

use std::fmt;

use rustls_pki_types::CertificateDer;

/// How a principal proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AuthMethod {
    /// A client certificate verified against the configured client CA.
    Certificate,
    /// A static bearer token from the token file.
    Token,
    /// A JWT signed by the configured issuer.
    Jwt,
    /// Authentication is off: every caller is the anonymous principal.
    Anonymous,
}

impl AuthMethod {
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Certificate => "certificate",
            AuthMethod::Token => "token",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Anonymous => "anonymous",
        }
    }
}

/// An authenticated caller of the client listener.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    pub name: String,
    pub method: AuthMethod,
}

/// The name every caller has while authentication is off.
pub const ANONYMOUS: &str = "ANONYMOUS";

impl Principal {
    pub fn anonymous() -> Principal {
        Principal {
            name: ANONYMOUS.to_owned(),
            method: AuthMethod::Anonymous,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (by {})", self.name, self.method.as_str())
    }
}

/// The identity names of a certificate: URI names, then DNS names, in certificate order.
pub fn certificate_names(cert: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    let parsed = webpki::EndEntityCert::try_from(cert).map_err(|e| format!("unparsable: {e}"))?;
    let mut names: Vec<String> = parsed.valid_uri_names().map(str::to_owned).collect();
    names.extend(parsed.valid_dns_names().map(str::to_owned));
    if names.is_empty() {
        return Err("the certificate has no DNS or URI subject alternative name".to_owned());
    }
    Ok(names)
}
