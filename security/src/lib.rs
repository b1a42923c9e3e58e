//! Pyralog's security building blocks, with no knowledge of Pyralog's services:
//!
//! - [`server`]: a listener's TLS (rustls, reloaded when its files change) and the accepted
//!   connections handed to tonic, each carrying what its peer proved ([`server::ConnInfo`]).
//! - [`client`]: channels over TCP or TLS with an optional client certificate, checking the
//!   peer's *identity* (a node dials `node-2`, whatever address it used).
//! - [`identity`]: principals, and the names a certificate proves.
//! - [`tokens`]: bearer tokens, static (stored hashed) and JWT (JWKS file).
//! - [`certs`]: a throwaway CA and certificates for `pyralog dev --secure` and tests.
//! - [`settings`]: the `[security]` section of a node's config.
//! - [`limits`] and [`activity`]: the `[server]` section (connection budgets, timeouts) and
//!   the watchdog that closes silent and idle connections.
//!
//! The gateway decides *what* a principal may do (ACLs, `pyralog_types::acl`); this crate
//! only establishes *who* is calling. It sits beside the tiers in the dependency graph and is
//! the only crate that links rustls, webpki and jsonwebtoken directly.

pub mod activity;
pub mod certs;
pub mod client;
pub mod error;
pub mod identity;
pub mod limits;
pub mod pem;
pub mod reload;
pub mod server;
pub mod settings;
pub mod tokens;

pub use error::{AuthError, SecurityError};
pub use identity::{certificate_names, AuthMethod, Principal};
pub use limits::ServerLimits;
pub use settings::{AuthSettings, ClusterTls, JwtSettings, SecuritySettings, TlsFiles};

#[cfg(test)]
mod tests;
