//! Stored records back into batches: what a tier does when it rewrites data (the cold tier
//! serving Parquet rows, compaction rewriting a hot segment).

use bytes::Bytes;

use super::{BatchBuilder, BatchError, Compression, NewRecord};
use crate::ids::{Epoch, LogOffset};
use crate::record::Record;

/// Rebuilds batches from records in increasing offset order: consecutive records of the same
/// epoch share a batch of at most about `max_batch_bytes`; offset gaps are kept with
/// [`BatchBuilder::push_at`]. Batches carry no producer id and have their base offset and
/// epoch assigned, exactly like batches the leader appended.
pub fn rebuild_batches(
    records: &[Record],
    max_batch_bytes: usize,
    compression: Compression,
) -> Result<Vec<Bytes>, BatchError> {
    let mut out = Vec::new();
    let mut cur: Option<(LogOffset, Epoch, BatchBuilder)> = None;
    for (i, r) in records.iter().enumerate() {
        if i > 0 && records[i - 1].offset >= r.offset {
            return Err(BatchError::Malformed("record offsets must increase"));
        }
        let fits = cur.as_ref().and_then(|(base, epoch, b)| {
            let delta = r
                .offset
                .0
                .checked_sub(base.0)
                .and_then(|d| u32::try_from(d).ok())?;
            let room = b.estimated_size() + r.payload_len() + 32 <= max_batch_bytes;
            (*epoch == r.epoch && room).then_some(delta)
        });
        let delta = match fits {
            Some(d) => d,
            None => {
                if let Some(done) = cur.take() {
                    out.push(finish(done)?);
                }
                cur = Some((r.offset, r.epoch, BatchBuilder::new(compression)));
                0
            }
        };
        if let Some((_, _, b)) = cur.as_mut() {
            let nr = NewRecord {
                timestamp: r.timestamp,
                key: r.key.clone(),
                value: r.value.clone(),
                headers: r.headers.clone(),
            };
            b.push_at(delta, &nr)?;
        }
    }
    if let Some(done) = cur {
        out.push(finish(done)?);
    }
    Ok(out)
}

fn finish((base, epoch, builder): (LogOffset, Epoch, BatchBuilder)) -> Result<Bytes, BatchError> {
    builder.build_at(base, epoch)
}
