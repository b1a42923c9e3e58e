//! Reading just the fixed header of a stored batch.
//!
//! Index lookups, recovery of a clean active segment and index rebuilds walk a segment batch by
//! batch. They need a batch's size, offsets, epoch and max timestamp, not its records, so they
//! read only the first [`HEADER_LEN`] bytes of each batch (one small `pread`) and decode the
//! fields named in the version-1 layout documented in `pyralog_types::batch`. Full framing and
//! CRC checks stay with [`pyralog_types::batch::Batch`].

use pyralog_types::batch::{peek_size, BatchError, HEADER_LEN, MAGIC};

const OFF_EPOCH: usize = 12;
const OFF_MAGIC: usize = 20;
const OFF_LAST_OFFSET_DELTA: usize = 27;
const OFF_MAX_TS: usize = 43;

/// The fields of a batch header that segment bookkeeping needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchHeader {
    pub(crate) base_offset: u64,
    /// Total size in bytes, header included.
    pub(crate) size: u64,
    pub(crate) last_offset_delta: u32,
    pub(crate) epoch: u64,
    pub(crate) max_timestamp: i64,
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` (at least [`HEADER_LEN`] bytes).
    pub(crate) fn decode(buf: &[u8]) -> Result<BatchHeader, BatchError> {
        if buf.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: buf.len(),
            });
        }
        let size = peek_size(buf)?;
        if buf[OFF_MAGIC] != MAGIC {
            return Err(BatchError::BadMagic(buf[OFF_MAGIC]));
        }
        Ok(BatchHeader {
            base_offset: u64_at(buf, 0),
            size: size as u64,
            last_offset_delta: u32_at(buf, OFF_LAST_OFFSET_DELTA),
            epoch: u64_at(buf, OFF_EPOCH),
            max_timestamp: u64_at(buf, OFF_MAX_TS) as i64,
        })
    }

    pub(crate) fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub(crate) fn next_offset(&self) -> u64 {
        self.last_offset().saturating_add(1)
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyralog_types::batch::{assign, Batch, BatchBuilder, Compression, NewRecord};
    use pyralog_types::{Epoch, LogOffset};

    #[test]
    fn decodes_what_batch_reports() {
        let mut b = BatchBuilder::new(Compression::None);
        for ts in [5, 9, 7] {
            b.push(&NewRecord {
                timestamp: ts,
                value: Some(bytes::Bytes::from_static(b"v")),
                ..Default::default()
            });
        }
        let mut bytes = b.build().expect("build").to_vec();
        assign(&mut bytes, LogOffset(42), Epoch(3));
        let h = BatchHeader::decode(&bytes).expect("decode");
        let batch = Batch::parse(bytes.clone().into()).expect("parse");
        assert_eq!(h.base_offset, 42);
        assert_eq!(h.size as usize, batch.size());
        assert_eq!(h.last_offset(), batch.last_offset().0);
        assert_eq!(h.epoch, 3);
        assert_eq!(h.max_timestamp, 9);
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(BatchHeader::decode(&[0u8; 10]).is_err());
        assert!(BatchHeader::decode(&[0u8; HEADER_LEN]).is_err());
        assert!(BatchHeader::decode(&[0xffu8; HEADER_LEN]).is_err());
    }
}
