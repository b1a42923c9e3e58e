//! Physical baselines: what the hardware does without Pyralog in the way.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Instant;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::{io, BenchError};

#[derive(Debug, Clone, Serialize)]
pub struct DiskBaseline {
    /// Sequential `write` of `chunk_bytes` followed by `fdatasync`, repeated.
    pub append_fsync_mb_s: f64,
    pub fsync_p50_us: u64,
    pub fsync_p99_us: u64,
    pub chunk_bytes: usize,
    pub total_bytes: usize,
}

/// Raw sequential append + fsync on a file in `dir` (the node's data directory).
pub fn disk(dir: &Path, total: usize, chunk: usize) -> Result<DiskBaseline, BenchError> {
    std::fs::create_dir_all(dir).map_err(io(dir.display().to_string()))?;
    let path = dir.join(".pyralog-bench-baseline");
    let mut f = std::fs::File::create(&path).map_err(io(path.display().to_string()))?;
    let buf = crate::payload(7, chunk);
    let mut hist = Histogram::<u64>::new(3).map_err(|e| BenchError::Invalid(e.to_string()))?;
    let t = Instant::now();
    let mut written = 0;
    while written < total {
        f.write_all(&buf).map_err(io("baseline write"))?;
        let s = Instant::now();
        f.sync_data().map_err(io("baseline fsync"))?;
        let _ = hist.record(s.elapsed().as_micros() as u64);
        written += chunk;
    }
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    let _ = std::fs::remove_file(&path);
    Ok(DiskBaseline {
        append_fsync_mb_s: written as f64 / 1e6 / secs,
        fsync_p50_us: hist.value_at_quantile(0.5),
        fsync_p99_us: hist.value_at_quantile(0.99),
        chunk_bytes: chunk,
        total_bytes: written,
    })
}

/// Loopback TCP throughput: one connection, `total` bytes in 1 MiB writes.
pub fn loopback_tcp(total: usize) -> Result<f64, BenchError> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("bind loopback"))?;
    let addr = listener.local_addr().map_err(io("loopback addr"))?;
    let reader = std::thread::spawn(move || -> std::io::Result<usize> {
        let (mut s, _) = listener.accept()?;
        let mut buf = vec![0u8; 1 << 20];
        let mut n = 0;
        loop {
            let r = s.read(&mut buf)?;
            if r == 0 {
                return Ok(n);
            }
            n += r;
        }
    });
    let mut s = std::net::TcpStream::connect(addr).map_err(io("connect loopback"))?;
    let buf = vec![1u8; 1 << 20];
    let t = Instant::now();
    let mut sent = 0;
    while sent < total {
        s.write_all(&buf).map_err(io("loopback write"))?;
        sent += buf.len();
    }
    drop(s);
    let received = reader
        .join()
        .map_err(|_| BenchError::Invalid("loopback reader panicked".into()))?
        .map_err(io("loopback read"))?;
    Ok(received as f64 / 1e6 / t.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baselines_measure_something() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = disk(dir.path(), 4 << 20, 1 << 20).expect("disk");
        assert!(d.append_fsync_mb_s > 0.0);
        assert_eq!(d.total_bytes, 4 << 20);
        assert!(loopback_tcp(8 << 20).expect("tcp") > 0.0);
    }
}
