//! Records back to hot-tier batches, so cold data goes out in the hot wire format.

use bytes::{Bytes, BytesMut};
use pyralog_types::batch::{self, BatchBuilder, NewRecord};
use pyralog_types::{Epoch, LogOffset, Record};

use crate::error::ColdError;

/// Rebuilds hot-format batches from records (in offset order): consecutive records of the
/// same epoch share a batch of at most about `max_batch_bytes`; offset gaps are kept with
/// [`BatchBuilder::push_at`]. Batches are uncompressed, carry no producer id, and have their
/// base offset and epoch assigned, exactly like batches read from a hot segment.
pub fn records_to_batches(
    records: &[Record],
    max_batch_bytes: usize,
) -> Result<Vec<Bytes>, ColdError> {
    let mut out = Vec::new();
    let mut cur: Option<(LogOffset, Epoch, BatchBuilder)> = None;
    for (i, r) in records.iter().enumerate() {
        if i > 0 && records[i - 1].offset >= r.offset {
            return Err(ColdError::InvalidInput(format!(
                "offsets must increase: {} then {}",
                records[i - 1].offset,
                r.offset
            )));
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
                cur = Some((
                    r.offset,
                    r.epoch,
                    BatchBuilder::new(batch::Compression::None),
                ));
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
            b.push_at(delta, &nr)
                .map_err(|e| ColdError::InvalidInput(format!("record {}: {e}", r.offset)))?;
        }
    }
    if let Some(done) = cur {
        out.push(finish(done)?);
    }
    Ok(out)
}

fn finish((base, epoch, builder): (LogOffset, Epoch, BatchBuilder)) -> Result<Bytes, ColdError> {
    let bytes = builder
        .build()
        .map_err(|e| ColdError::InvalidInput(format!("batch at {base}: {e}")))?;
    let mut buf = BytesMut::from(bytes.as_ref());
    batch::assign(&mut buf, base, epoch);
    Ok(buf.freeze())
}
