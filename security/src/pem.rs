//! Reading PEM files: certificate chains, private keys and CA bundles.

use std::path::Path;

use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::SecurityError;

/// Every certificate in a PEM file, leaf first.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| SecurityError::file(path, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| SecurityError::file(path, e))?;
    if certs.is_empty() {
        return Err(SecurityError::file(path, "no certificate in the file"));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 or SEC1) in a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, SecurityError> {
    PrivateKeyDer::from_pem_file(path).map_err(|e| SecurityError::file(path, e))
}

/// A CA bundle as a root store.
pub fn load_roots(path: &Path) -> Result<RootCertStore, SecurityError> {
    let mut roots = RootCertStore::empty();
    for cert in load_certs(path)? {
        roots
            .add(cert)
            .map_err(|e| SecurityError::file(path, format!("not a usable CA certificate: {e}")))?;
    }
    Ok(roots)
}
