//! Certificates for development and tests (rcgen): a throwaway CA, node certificates that
//! carry a node's identity, client certificates that carry a principal's name.
//!
//! Production clusters bring certificates from their own PKI; `pyralog dev --secure`,
//! `pyralog certs init` and the test suite make them here. Keys are ECDSA P-256.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

use crate::error::SecurityError;

fn err(e: impl std::fmt::Display) -> SecurityError {
    SecurityError::Certificate(e.to_string())
}

/// When a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: SystemTime,
    pub not_after: SystemTime,
}

impl Validity {
    /// From an hour before `now` (clock skew) for `days` days.
    pub fn days_from(now: SystemTime, days: u64) -> Validity {
        Validity {
            not_before: now - Duration::from_secs(3600),
            not_after: now + Duration::from_secs(days * 86_400),
        }
    }

    fn apply(&self, params: &mut CertificateParams) {
        params.not_before = self.not_before.into();
        params.not_after = self.not_after.into();
    }
}

/// A certificate and its private key, PEM.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub struct LeafSpec {
    /// Identity names: `scheme://…` become URI names, anything else DNS names.
    pub names: Vec<String>,
    /// IP addresses the certificate is valid for (a server reached by IP).
    pub ips: Vec<IpAddr>,
    pub validity: Validity,
    /// Usable as a TLS server certificate.
    pub server: bool,
    /// Usable as a TLS client certificate.
    pub client: bool,
}

/// A certificate authority that can issue leaf certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    key_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

/// A CA's parameters: what its certificate says, and (all an issuer needs) its name and key
/// usages. `validity` only matters for the self-signed certificate.
fn ca_params(name: &str, validity: Option<Validity>) -> Result<CertificateParams, SecurityError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn.push(DnType::OrganizationName, "Pyralog");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    if let Some(v) = validity {
        v.apply(&mut params);
    }
    Ok(params)
}

impl Authority {
    /// A new self-signed CA called `name`.
    pub fn generate(name: &str, validity: Validity) -> Result<Authority, SecurityError> {
        let key = KeyPair::generate().map_err(err)?;
        let params = ca_params(name, Some(validity))?;
        let cert = params.self_signed(&key).map_err(err)?;
        let key_pem = key.serialize_pem();
        Ok(Authority {
            cert_pem: cert.pem(),
            key_pem,
            issuer: Issuer::new(params, key),
        })
    }

    /// A CA made by [`Authority::generate`] and saved with [`Authority::save`], to issue more
    /// certificates (`name` must be the one it was generated with).
    pub fn load(dir: &Path, name: &str) -> Result<Authority, SecurityError> {
        let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| SecurityError::file(&p, e));
        let cert_pem = read(dir.join("ca.pem"))?;
        let key_pem = read(dir.join("ca-key.pem"))?;
        let key = KeyPair::from_pem(&key_pem).map_err(err)?;
        // The issuer is its name and key: certificates it signs chain to the saved CA.
        let params = ca_params(name, None)?;
        Ok(Authority {
            issuer: Issuer::new(params, key),
            cert_pem,
            key_pem,
        })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Writes `ca.pem` and `ca-key.pem` (owner-only) into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), SecurityError> {
        write_file(&dir.join("ca.pem"), &self.cert_pem, false)?;
        write_file(&dir.join("ca-key.pem"), &self.key_pem, true)
    }

    /// Issues a leaf certificate with a new key.
    pub fn issue(&self, spec: &LeafSpec) -> Result<Issued, SecurityError> {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        let mut dn = DistinguishedName::new();
        if let Some(first) = spec.names.first() {
            dn.push(DnType::CommonName, first.as_str());
        }
        params.distinguished_name = dn;
        for name in &spec.names {
            let ia5 = name.as_str().try_into().map_err(err)?;
            params.subject_alt_names.push(if name.contains("://") {
                SanType::URI(ia5)
            } else {
                SanType::DnsName(ia5)
            });
        }
        for ip in &spec.ips {
            params.subject_alt_names.push(SanType::IpAddress(*ip));
        }
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        if spec.server {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ServerAuth);
        }
        if spec.client {
            params
                .extended_key_usages
                .push(ExtendedKeyUsagePurpose::ClientAuth);
        }
        params.use_authority_key_identifier_extension = true;
        spec.validity.apply(&mut params);
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `{stem}.pem` and `{stem}-key.pem` (owner-only) into `dir`; returns their paths.
    pub fn save(&self, dir: &Path, stem: &str) -> Result<(PathBuf, PathBuf), SecurityError> {
        let cert = dir.join(format!("{stem}.pem"));
        let key = dir.join(format!("{stem}-key.pem"));
        write_file(&cert, &self.cert_pem, false)?;
        write_file(&key, &self.key_pem, true)?;
        Ok((cert, key))
    }
}

fn write_file(path: &Path, text: &str, secret: bool) -> Result<(), SecurityError> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(path).map_err(|e| SecurityError::file(path, e))?;
    f.write_all(text.as_bytes())
        .map_err(|e| SecurityError::file(path, e))
}

/// The certificates of a cluster made in one go (`pyralog certs init`, `dev --secure`, tests):
/// one CA; per node a certificate for both listeners (its identity `node-{id}`, `localhost`
/// and the given IPs); per client a client certificate named after the principal.
#[derive(Debug, Clone)]
pub struct CertSet {
    pub dir: PathBuf,
    pub ca: PathBuf,
}

impl CertSet {
    pub fn node_cert(&self, id: u64) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("node-{id}.pem")),
            self.dir.join(format!("node-{id}-key.pem")),
        )
    }

    pub fn client_cert(&self, principal: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("client-{principal}.pem")),
            self.dir.join(format!("client-{principal}-key.pem")),
        )
    }
}

/// Makes a [`CertSet`] in `dir`: `ca.pem`, `node-{id}.pem` for ids `1..=nodes` (identity
/// names from `node_identity`, e.g. `node-{id}`), `client-{name}.pem` per client.
pub fn init_cert_set(
    dir: &Path,
    nodes: u64,
    node_identity: &str,
    clients: &[String],
    ips: &[IpAddr],
    validity: Validity,
) -> Result<CertSet, SecurityError> {
    std::fs::create_dir_all(dir).map_err(|e| SecurityError::file(dir, e))?;
    let ca = Authority::generate("Pyralog CA", validity)?;
    ca.save(dir)?;
    for id in 1..=nodes {
        let identity = node_identity.replace("{id}", &id.to_string());
        ca.issue(&LeafSpec {
            names: vec![identity, "localhost".to_owned()],
            ips: ips.to_vec(),
            validity,
            server: true,
            client: true,
        })?
        .save(dir, &format!("node-{id}"))?;
    }
    for name in clients {
        ca.issue(&LeafSpec {
            names: vec![name.clone()],
            ips: Vec::new(),
            validity,
            server: false,
            client: true,
        })?
        .save(dir, &format!("client-{name}"))?;
    }
    Ok(CertSet {
        dir: dir.to_owned(),
        ca: dir.join("ca.pem"),
    })
}
