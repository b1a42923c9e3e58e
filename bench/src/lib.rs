//! Benchmarks that report ratios, not just absolute numbers.
//!
//! Machines here are shared and noisy, so every Pyralog figure is printed next to a physical
//! baseline measured in the same run on the same disk or network path: raw append+fsync of the
//! data directory ([`baseline::disk`]), loopback TCP ([`baseline::loopback_tcp`]). Workloads
//! ([`workload`]) drive a running node through the real client; latency runs are open-loop
//! (requests are scheduled at a fixed rate and latency is measured from the *scheduled* time),
//! so a stalled server cannot hide its stalls (no coordinated omission).

pub mod baseline;
pub mod cold;
pub mod groups;
pub mod ledger;
pub mod ledger_produce;
pub mod process;
pub mod replication;
pub mod report;
pub mod tls;
pub mod workload;

/// Deterministic payload bytes for record `i`.
pub fn payload(i: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut state = xxhash_rust::xxh3::xxh3_64(&i.to_le_bytes());
    while out.len() < len {
        out.extend_from_slice(&state.to_le_bytes());
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
    }
    out.truncate(len);
    out
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("client: {0}")]
    Client(#[from] pyralog_client::ClientError),
    #[error("I/O on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}
