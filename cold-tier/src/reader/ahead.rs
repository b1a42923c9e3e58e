//! Work done ahead of a sequential reader, in the background: fetching row groups into the
//! chunk cache (read-ahead) and decoding the fetched ones into the decoded cache
//! (decode-ahead), so the next read finds its rows ready.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use tracing::debug;

use super::{decode_group, fetch_exact, ColdReader, Footer, Window};
use crate::cache::ChunkCache;
use crate::error::ColdError;
use crate::manifest::ColdSegment;

impl ColdReader {
    /// Keeps the read-ahead window ahead of a sequential reader, in the background: the
    /// window is the row groups from `first` on, at least `readahead.groups` of them and at
    /// least `readahead.bytes` of Parquet. Nothing is fetched while the window's first quarter is
    /// cached (or being fetched); otherwise every missing group of the whole window goes in one
    /// ranged-GET call, so a consumer costs one GET per three quarters of a window, not one per
    /// row group, and still has a quarter window fetched ahead while the next GET is out.
    pub(super) fn read_ahead(&self, seg: &ColdSegment, footer: &Footer, first: usize) {
        let Some(cache) = self.cache.clone() else {
            return;
        };
        if self.readahead.groups == 0 {
            return;
        }
        let mut window = Vec::new();
        let mut bytes = 0u64;
        for g in footer.groups.iter().skip(first) {
            if window.len() >= self.readahead.groups && bytes >= self.readahead.bytes {
                break;
            }
            bytes += g.bytes.end - g.bytes.start;
            window.push(g.bytes.clone());
        }
        let near = window.len().div_ceil(4);
        let (ranges, keys): (Vec<Range<u64>>, Vec<String>) = {
            let mut flying = self.in_flight.lock();
            let wanted: Vec<(usize, Range<u64>, String)> = window
                .into_iter()
                .enumerate()
                .map(|(i, r)| {
                    let k = ChunkCache::key(&seg.key, seg.size_bytes, r.start, r.end);
                    (i, r, k)
                })
                .filter(|(_, _, k)| !cache.may_contain(k) && !flying.contains(k))
                .collect();
            if !wanted.iter().any(|(i, _, _)| *i < near) {
                return;
            }
            flying.extend(wanted.iter().map(|(_, _, k)| k.clone()));
            wanted.into_iter().map(|(_, r, k)| (r, k)).unzip()
        };
        let (store, seg, in_flight) = (self.store.clone(), seg.clone(), self.in_flight.clone());
        tokio::spawn(async move {
            match fetch_exact(store.as_ref(), &seg, &ranges).await {
                Ok(pieces) => {
                    for (k, b) in keys.iter().zip(pieces) {
                        cache.insert(k.clone(), b);
                    }
                }
                Err(e) => debug!(key = %seg.key, error = %e, "read-ahead failed"),
            }
            let mut flying = in_flight.lock();
            for k in &keys {
                flying.remove(k);
            }
        });
    }

    /// Decodes, in the background, the row groups from `first` on that the next read of
    /// about `max_bytes` will want and whose bytes the chunk cache holds (a group still being
    /// fetched is decoded by the read that needs it, never fetched twice). The groups are
    /// claimed at once, before the task starts, so the next read's planning skips them: each
    /// group has one decoder, and a read that wants it meanwhile waits for it. The task
    /// takes the decode pool's permits like a read, one group at a time, so reads keep their
    /// turn between its groups.
    pub(super) fn decode_ahead(
        &self,
        seg: &ColdSegment,
        footer: &Arc<Footer>,
        first: usize,
        max_bytes: usize,
    ) {
        let (Some(decoded), Some(cache)) = (self.decoded.clone(), self.cache.clone()) else {
            return;
        };
        let mut wanted = Vec::new();
        let mut starts = HashMap::new();
        let mut planned = 0u64;
        for (g, group) in footer.groups.iter().enumerate().skip(first) {
            if planned >= max_bytes as u64 {
                break;
            }
            planned += group.uncompressed;
            let key = ChunkCache::key(&seg.key, seg.size_bytes, group.bytes.start, group.bytes.end);
            if !cache.may_contain(&key) {
                break;
            }
            starts.insert(g, (key, group.bytes.start));
            wanted.push((seg.key.clone(), seg.size_bytes, g));
        }
        let claims = decoded.claim_new(wanted);
        if claims.is_empty() {
            return;
        }
        let (pool, footer, seg) = (self.pool.clone(), footer.clone(), seg.clone());
        tokio::spawn(async move {
            for claim in claims {
                let g = claim.key().2;
                let Some((key, start)) = starts.remove(&g) else {
                    continue;
                };
                let decode = async {
                    let bytes = cache.get(&key).await.ok_or_else(|| {
                        ColdError::InvalidInput(format!("{key} left the chunk cache"))
                    })?;
                    let window = Window {
                        file_len: seg.size_bytes,
                        pieces: vec![(start, bytes)],
                    };
                    decode_group(&pool, window, footer.clone(), g, seg.key.clone()).await
                };
                // Stopping drops the remaining claims, which releases them.
                if let Err(e) = claim.decode(decode).await {
                    debug!(key = %seg.key, group = g, error = %e, "decode-ahead stopped");
                    break;
                }
            }
        });
    }
}
