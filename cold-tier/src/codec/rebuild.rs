//! Records back to hot-tier batches, so cold data goes out in the hot wire format.

use bytes::Bytes;
use pyralog_types::batch::{rebuild_batches, Compression};
use pyralog_types::Record;

use crate::error::ColdError;

/// Rebuilds hot-format batches from records (in offset order), uncompressed, keeping offset
/// gaps; see [`rebuild_batches`].
pub fn records_to_batches(
    records: &[Record],
    max_batch_bytes: usize,
) -> Result<Vec<Bytes>, ColdError> {
    rebuild_batches(records, max_batch_bytes, Compression::None).map_err(|e| {
        let at = records.first().map_or(0, |r| r.offset.0);
        ColdError::InvalidInput(format!("rebuilding batches from offset {at}: {e}"))
    })
}
