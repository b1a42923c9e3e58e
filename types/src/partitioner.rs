//! Key → partition mapping.
//!
//! Keyed records go to `xxh3_64(key) % partition_count`. XXH3-64 (seed 0) is specified
//! publicly and implemented in every mainstream language, so a client written anywhere can
//! route keys exactly as the Rust client does. Rust's `DefaultHasher` is never used: it is
//! randomised per process.

use xxhash_rust::xxh3::xxh3_64;

use crate::ids::PartitionId;

/// The partition of a keyed record. `partition_count` must be at least 1.
pub fn partition_for_key(key: &[u8], partition_count: u32) -> PartitionId {
    let n = u64::from(partition_count.max(1));
    // The remainder is below `partition_count`, which is a u32.
    (xxh3_64(key) % n) as PartitionId
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_across_runs() {
        // Golden values: changing them breaks every client that routes keys.
        assert_eq!(xxh3_64(b""), 0x2D06800538D394C2);
        assert_eq!(partition_for_key(b"user-42", 1), 0);
        let p = partition_for_key(b"user-42", 12);
        assert_eq!(p, (xxh3_64(b"user-42") % 12) as u32);
    }

    #[test]
    fn spreads_keys() {
        let mut counts = [0u32; 4];
        for i in 0..4000 {
            counts[partition_for_key(format!("key-{i}").as_bytes(), 4) as usize] += 1;
        }
        assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    }
}
