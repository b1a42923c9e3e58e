//! The record batch: Pyralog's unit of produce, storage, replication and fetch.
//!
//! A batch travels from the producer to the leader's segment file and on to consumers as the
//! same bytes. The leader only patches `base_offset` and `epoch`, which sit *before* the CRC'd
//! region, so appending never re-encodes and a fetch is a copy of file bytes.
//!
//! # Layout (version 1, all integers little-endian)
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0  | 8 | `base_offset` u64 | assigned by the leader |
//! | 8  | 4 | `length` u32 | bytes that follow this field |
//! | 12 | 8 | `epoch` u64 | leader epoch, assigned by the leader |
//! | 20 | 1 | `magic` u8 | format version, `1` |
//! | 21 | 4 | `crc` u32 | CRC32C of every byte from offset 25 to the end |
//! | 25 | 2 | `attributes` u16 | bits 0-1 compression (0 none, 1 zstd); bit 2 has tombstones; bit 3 has dedup ids; others 0 |
//! | 27 | 4 | `last_offset_delta` u32 | offset of the last record minus `base_offset` |
//! | 31 | 4 | `record_count` u32 | |
//! | 35 | 8 | `first_timestamp` i64 | µs since the Unix epoch |
//! | 43 | 8 | `max_timestamp` i64 | µs since the Unix epoch |
//! | 51 | 8 | `producer_id` i64 | -1 when not idempotent |
//! | 59 | 2 | `producer_epoch` i16 | -1 when not idempotent |
//! | 61 | 4 | `base_sequence` i32 | -1 when not idempotent |
//! | 65 | … | records | plain, or `u32 uncompressed length` + one zstd frame |
//!
//! Each record: `length` varint (bytes that follow), `attributes` u8 (0), `timestamp_delta`
//! zigzag varint (vs `first_timestamp`), `offset_delta` varint, `key_length` zigzag varint
//! (-1 = no key) + key, `value_length` zigzag varint (-1 = tombstone) + value,
//! `header_count` varint, then per header `key_length` varint + UTF-8 key + `value_length`
//! varint + value.
//!
//! What a leader or follower checks beyond this framing (dense offsets, timestamps, flags,
//! bounded decompression) is in `validate`.

use bytes::Bytes;

mod builder;
mod rebuild;
mod validate;
pub use builder::{BatchBuilder, NewRecord};
pub use rebuild::rebuild_batches;
pub use validate::{BatchRules, OffsetRule};

use crate::ids::{Epoch, LogOffset, TimestampMicros};
use crate::record::{Header, Record};

pub const MAGIC: u8 = 1;
/// Size of the fixed batch header.
pub const HEADER_LEN: usize = 65;
/// Bytes before the `length` field's coverage begins (`base_offset` + `length`).
pub const LOG_OVERHEAD: usize = 12;
/// Start of the CRC-covered region.
const CRC_START: usize = 25;

const OFF_BASE_OFFSET: usize = 0;
const OFF_LENGTH: usize = 8;
const OFF_EPOCH: usize = 12;
const OFF_MAGIC: usize = 20;
const OFF_CRC: usize = 21;
const OFF_ATTRIBUTES: usize = 25;
const OFF_LAST_OFFSET_DELTA: usize = 27;
const OFF_RECORD_COUNT: usize = 31;
const OFF_FIRST_TS: usize = 35;
const OFF_MAX_TS: usize = 43;
const OFF_PRODUCER_ID: usize = 51;
const OFF_PRODUCER_EPOCH: usize = 59;
const OFF_BASE_SEQUENCE: usize = 61;

const ATTR_COMPRESSION_MASK: u16 = 0b11;
const ATTR_HAS_TOMBSTONES: u16 = 0b100;
const ATTR_HAS_DEDUP_IDS: u16 = 0b1000;

/// The record header carrying a record's dedup id: the partition leader stores a record whose
/// dedup id it saw recently only once (see the hot tier's dedup window). A batch holding such
/// a record has attribute bit 3 set, so batches without one are never decoded for the check.
pub const DEDUP_ID_HEADER: &str = "pyralog.dedup_id";

/// Largest records region [`Batch::records`] decompresses: the backstop for batches already
/// stored or fetched. A leader validates a produced batch against its log's `max_batch_bytes`
/// instead ([`BatchRules::produce`]).
pub const MAX_UNCOMPRESSED_BYTES: usize = 256 * 1024 * 1024;

/// Compression codec of a batch's records region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    /// zstd at the given level (1 is fast and usually enough).
    Zstd(i32),
}

/// Why bytes are not a valid batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("unsupported batch format version {0} (expected {MAGIC})")]
    BadMagic(u8),
    #[error("batch length field {0} is smaller than the batch header")]
    BadLength(u32),
    #[error("batch CRC mismatch: header says {expected:#010x}, bytes give {actual:#010x}")]
    CrcMismatch { expected: u32, actual: u32 },
    #[error("unknown compression codec {0}")]
    UnknownCompression(u16),
    #[error("malformed records: {0}")]
    Malformed(&'static str),
    #[error("zstd: {0}")]
    Compression(String),
    #[error("empty batch: a batch holds at least one record")]
    Empty,
    #[error("record of {size} bytes exceeds the limit of {limit}")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("records region of {size} bytes uncompressed exceeds the limit of {limit}")]
    UncompressedTooLarge { size: u64, limit: usize },
    /// A header field disagrees with the records (or a field holds an undefined value).
    #[error("batch field {field}: {detail}")]
    Inconsistent { field: &'static str, detail: String },
}

/// Per-record fields [`Record`] does not carry, for validation.
#[derive(Debug, Clone, Copy)]
struct RecordMeta {
    attributes: u8,
    offset_delta: u64,
}

/// Sets the leader-assigned fields of an encoded batch in place (no CRC change needed).
pub fn assign(batch: &mut [u8], base_offset: LogOffset, epoch: Epoch) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.0.to_le_bytes());
    batch[OFF_EPOCH..OFF_EPOCH + 8].copy_from_slice(&epoch.0.to_le_bytes());
}

/// Recomputes the CRC of an encoded batch in place (after its covered bytes were edited).
/// For tools and tests that change stored batches on purpose, e.g. to show that a ledger's
/// chain catches what a CRC alone cannot.
pub fn reseal(batch: &mut [u8]) {
    if batch.len() >= CRC_START {
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Reads the total size of the batch starting at `buf[0]` from its header, if enough bytes are
/// present to tell. Used to walk a stream of batches (segment files, fetch responses).
pub fn peek_size(buf: &[u8]) -> Result<usize, BatchError> {
    if buf.len() < LOG_OVERHEAD {
        return Err(BatchError::Truncated {
            needed: LOG_OVERHEAD,
            available: buf.len(),
        });
    }
    let length = u32_at(buf, OFF_LENGTH);
    if (length as usize) < HEADER_LEN - LOG_OVERHEAD {
        return Err(BatchError::BadLength(length));
    }
    Ok(LOG_OVERHEAD + length as usize)
}

/// The fixed header fields of a stored batch, decoded from its first [`HEADER_LEN`] bytes
/// alone: what segment bookkeeping (index lookups, recovery, index rebuilds) needs without
/// reading the records. Full framing and CRC checks stay with [`Batch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: u64,
    /// Total size in bytes, header included.
    pub size: u64,
    pub last_offset_delta: u32,
    pub epoch: u64,
    pub max_timestamp: TimestampMicros,
}

impl BatchHeader {
    /// Decodes the header at the start of `buf` (at least [`HEADER_LEN`] bytes).
    pub fn decode(buf: &[u8]) -> Result<BatchHeader, BatchError> {
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
            base_offset: u64_at(buf, OFF_BASE_OFFSET),
            size: size as u64,
            last_offset_delta: u32_at(buf, OFF_LAST_OFFSET_DELTA),
            epoch: u64_at(buf, OFF_EPOCH),
            max_timestamp: u64_at(buf, OFF_MAX_TS) as i64,
        })
    }

    pub fn last_offset(&self) -> u64 {
        self.base_offset
            .saturating_add(u64::from(self.last_offset_delta))
    }

    /// The offset after this batch.
    pub fn next_offset(&self) -> u64 {
        self.last_offset().saturating_add(1)
    }
}

/// Checks exactly one stored batch where it lies (framing, as [`Batch::parse`], and its CRC)
/// and returns its header: for readers that serve stored bytes as they are and never need a
/// [`Batch`] of their own, e.g. a fetch reading several batches into one buffer.
pub fn check_stored(buf: &[u8]) -> Result<BatchHeader, BatchError> {
    check_framing(buf)?;
    verify_crc(buf)?;
    BatchHeader::decode(buf)
}

/// [`Batch::parse`]'s checks, on a slice.
fn check_framing(bytes: &[u8]) -> Result<(), BatchError> {
    if bytes.len() < HEADER_LEN {
        return Err(BatchError::Truncated {
            needed: HEADER_LEN,
            available: bytes.len(),
        });
    }
    let size = peek_size(bytes)?;
    if size != bytes.len() {
        return Err(BatchError::Truncated {
            needed: size,
            available: bytes.len(),
        });
    }
    let magic = bytes[OFF_MAGIC];
    if magic != MAGIC {
        return Err(BatchError::BadMagic(magic));
    }
    let attributes = u16::from_le_bytes([bytes[OFF_ATTRIBUTES], bytes[OFF_ATTRIBUTES + 1]]);
    let codec = attributes & ATTR_COMPRESSION_MASK;
    if codec > 1 {
        return Err(BatchError::UnknownCompression(codec));
    }
    let record_count = u32_at(bytes, OFF_RECORD_COUNT);
    if record_count == 0 {
        return Err(BatchError::Empty);
    }
    if record_count > u32_at(bytes, OFF_LAST_OFFSET_DELTA).saturating_add(1) {
        return Err(BatchError::Malformed(
            "record_count exceeds the offset range",
        ));
    }
    Ok(())
}

/// The CRC check of a whole batch (its framing already checked).
fn verify_crc(bytes: &[u8]) -> Result<(), BatchError> {
    let expected = u32_at(bytes, OFF_CRC);
    let actual = crc32c::crc32c(&bytes[CRC_START..]);
    if expected == actual {
        Ok(())
    } else {
        Err(BatchError::CrcMismatch { expected, actual })
    }
}

/// A batch whose framing (size, version, codec) has been checked. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct Batch {
    bytes: Bytes,
}

impl std::fmt::Debug for Batch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Batch")
            .field("base_offset", &self.base_offset())
            .field("last_offset", &self.last_offset())
            .field("epoch", &self.epoch())
            .field("records", &self.record_count())
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

impl Batch {
    /// Checks the framing of exactly one batch. Does not verify the CRC (see
    /// [`Batch::verify_crc`]): callers choose when to pay for it.
    pub fn parse(bytes: Bytes) -> Result<Batch, BatchError> {
        check_framing(&bytes)?;
        Ok(Batch { bytes })
    }

    /// Parses and verifies the CRC.
    pub fn parse_verified(bytes: Bytes) -> Result<Batch, BatchError> {
        let b = Batch::parse(bytes)?;
        b.verify_crc()?;
        Ok(b)
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        verify_crc(&self.bytes)
    }

    /// The header fields as [`BatchHeader`] (the framing was checked by `parse`).
    pub fn header(&self) -> BatchHeader {
        BatchHeader {
            base_offset: self.base_offset().0,
            size: self.size() as u64,
            last_offset_delta: self.last_offset_delta(),
            epoch: self.epoch().0,
            max_timestamp: self.max_timestamp(),
        }
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    pub fn base_offset(&self) -> LogOffset {
        LogOffset(u64_at(&self.bytes, OFF_BASE_OFFSET))
    }

    pub fn last_offset(&self) -> LogOffset {
        LogOffset(
            self.base_offset()
                .0
                .saturating_add(u64::from(self.last_offset_delta())),
        )
    }

    pub fn last_offset_delta(&self) -> u32 {
        u32_at(&self.bytes, OFF_LAST_OFFSET_DELTA)
    }

    pub fn epoch(&self) -> Epoch {
        Epoch(u64_at(&self.bytes, OFF_EPOCH))
    }

    /// Whether some record carries a [`DEDUP_ID_HEADER`].
    pub fn has_dedup_ids(&self) -> bool {
        self.attributes() & ATTR_HAS_DEDUP_IDS != 0
    }

    /// The compression of this batch (for re-encoding a subset of its records).
    pub fn compression(&self) -> Compression {
        match self.attributes() & ATTR_COMPRESSION_MASK {
            1 => Compression::Zstd(1),
            _ => Compression::None,
        }
    }

    pub fn attributes(&self) -> u16 {
        u16::from_le_bytes([self.bytes[OFF_ATTRIBUTES], self.bytes[OFF_ATTRIBUTES + 1]])
    }

    pub fn compression_codec(&self) -> u16 {
        self.attributes() & ATTR_COMPRESSION_MASK
    }

    pub fn has_tombstones(&self) -> bool {
        self.attributes() & ATTR_HAS_TOMBSTONES != 0
    }

    pub fn record_count(&self) -> u32 {
        u32_at(&self.bytes, OFF_RECORD_COUNT)
    }

    pub fn first_timestamp(&self) -> TimestampMicros {
        u64_at(&self.bytes, OFF_FIRST_TS) as i64
    }

    pub fn max_timestamp(&self) -> TimestampMicros {
        u64_at(&self.bytes, OFF_MAX_TS) as i64
    }

    pub fn producer_id(&self) -> i64 {
        u64_at(&self.bytes, OFF_PRODUCER_ID) as i64
    }

    pub fn producer_epoch(&self) -> i16 {
        i16::from_le_bytes([
            self.bytes[OFF_PRODUCER_EPOCH],
            self.bytes[OFF_PRODUCER_EPOCH + 1],
        ])
    }

    pub fn base_sequence(&self) -> i32 {
        u32_at(&self.bytes, OFF_BASE_SEQUENCE) as i32
    }

    /// The records region, decompressed (to at most `limit` bytes) if needed.
    fn records_region(&self, limit: usize) -> Result<Bytes, BatchError> {
        let region = self.bytes.slice(HEADER_LEN..);
        match self.compression_codec() {
            0 => Ok(region),
            1 => validate::decompress_bounded(&region, limit).map(Bytes::from),
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// Decodes every record. Offsets and epoch come from the header.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        // The count is only a claim until the records decode: it does not size an allocation.
        let mut out = Vec::with_capacity((self.record_count() as usize).min(1024));
        self.for_each_record(MAX_UNCOMPRESSED_BYTES, |_, r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Decodes the records in order, each with increasing offsets inside the batch's range,
    /// decompressing at most `limit` bytes.
    fn for_each_record(
        &self,
        limit: usize,
        mut f: impl FnMut(RecordMeta, Record) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        self.visit_records(limit, |meta, view, region| {
            let mut headers = Vec::with_capacity(view.header_count.min(64) as usize);
            for h in view.headers() {
                let (key, value) = h?;
                headers.push(Header {
                    key: key.to_owned(),
                    value: region.slice_ref(value),
                });
            }
            f(
                meta,
                Record {
                    offset: view.offset,
                    epoch: view.epoch,
                    timestamp: view.timestamp,
                    key: view.key.map(|k| region.slice_ref(k)),
                    value: view.value.map(|v| region.slice_ref(v)),
                    headers,
                },
            )
        })
    }

    /// Visits every record in order without copying or counting references: each
    /// [`RecordView`] borrows the batch's (decompressed) bytes. Offsets and epoch come from
    /// the header. Checks what [`Batch::records`] checks.
    pub fn for_each_view(
        &self,
        mut f: impl FnMut(RecordView<'_>) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        self.visit_records(MAX_UNCOMPRESSED_BYTES, |_, view, _| f(view))
    }

    fn visit_records(
        &self,
        limit: usize,
        mut f: impl FnMut(RecordMeta, RecordView<'_>, &Bytes) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let region = self.records_region(limit)?;
        let base = self.base_offset().0;
        let epoch = self.epoch();
        let first_ts = self.first_timestamp();
        let last_delta = u64::from(self.last_offset_delta());
        let mut cur = Cursor {
            buf: &region,
            pos: 0,
        };
        let mut prev_delta: Option<u64> = None;
        for _ in 0..self.record_count() {
            let len = cur.varint_u64()? as usize;
            let end = cur
                .pos
                .checked_add(len)
                .filter(|&e| e <= region.len())
                .ok_or(BatchError::Malformed("record length beyond batch"))?;
            let mut rc = Cursor {
                buf: &region[..end],
                pos: cur.pos,
            };
            let attributes = rc.u8()?;
            let ts_delta = rc.varint_i64()?;
            let offset_delta = rc.varint_u64()?;
            if offset_delta > last_delta || prev_delta.is_some_and(|p| offset_delta <= p) {
                return Err(BatchError::Malformed(
                    "record offset deltas must increase within 0..=last_offset_delta",
                ));
            }
            prev_delta = Some(offset_delta);
            let key = rc.opt_slice()?;
            let value = rc.opt_slice()?;
            let header_count = rc.varint_u64()?;
            let headers_start = rc.pos;
            for _ in 0..header_count {
                let klen = rc.varint_u64()? as usize;
                std::str::from_utf8(rc.take(klen)?)
                    .map_err(|_| BatchError::Malformed("header key is not UTF-8"))?;
                let vlen = rc.varint_u64()? as usize;
                rc.take(vlen)?;
            }
            if rc.pos != end {
                return Err(BatchError::Malformed("record has trailing bytes"));
            }
            let headers = &region[headers_start..end];
            cur.pos = end;
            let meta = RecordMeta {
                attributes,
                offset_delta,
            };
            let view = RecordView {
                // Saturating: a producer's batch carries whatever base offset it likes
                // until the leader assigns one.
                offset: LogOffset(base.saturating_add(offset_delta)),
                epoch,
                timestamp: first_ts.wrapping_add(ts_delta),
                key,
                value,
                header_count,
                headers,
            };
            f(meta, view, &region)?;
        }
        if cur.pos != region.len() {
            return Err(BatchError::Malformed("bytes after the last record"));
        }
        Ok(())
    }
}

/// One record of a batch, borrowed from the batch's bytes ([`Batch::for_each_view`]).
#[derive(Debug, Clone, Copy)]
pub struct RecordView<'a> {
    pub offset: LogOffset,
    pub epoch: Epoch,
    pub timestamp: TimestampMicros,
    pub key: Option<&'a [u8]>,
    pub value: Option<&'a [u8]>,
    pub header_count: u64,
    /// The encoded headers (already checked).
    headers: &'a [u8],
}

impl<'a> RecordView<'a> {
    /// The headers in order: `(key, value)`.
    pub fn headers(&self) -> impl Iterator<Item = Result<(&'a str, &'a [u8]), BatchError>> + 'a {
        let mut c = Cursor {
            buf: self.headers,
            pos: 0,
        };
        (0..self.header_count).map(move |_| {
            let klen = c.varint_u64()? as usize;
            let key = std::str::from_utf8(c.take(klen)?)
                .map_err(|_| BatchError::Malformed("header key is not UTF-8"))?;
            let vlen = c.varint_u64()? as usize;
            Ok((key, c.take(vlen)?))
        })
    }
}

/// Splits a buffer holding whole batches back to back. Stops with an error at the first
/// incomplete or malformed one.
pub fn split_batches(mut buf: Bytes) -> impl Iterator<Item = Result<Batch, BatchError>> {
    std::iter::from_fn(move || {
        if buf.is_empty() {
            return None;
        }
        let res = peek_size(&buf).and_then(|size| {
            if size > buf.len() {
                return Err(BatchError::Truncated {
                    needed: size,
                    available: buf.len(),
                });
            }
            Batch::parse(buf.split_to(size))
        });
        if res.is_err() {
            buf = Bytes::new();
        }
        Some(res)
    })
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

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn u8(&mut self) -> Result<u8, BatchError> {
        let b = *self
            .buf
            .get(self.pos)
            .ok_or(BatchError::Malformed("record truncated"))?;
        self.pos += 1;
        Ok(b)
    }

    fn varint_u64(&mut self) -> Result<u64, BatchError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(BatchError::Malformed("varint too long"))
    }

    fn varint_i64(&mut self) -> Result<i64, BatchError> {
        let u = self.varint_u64()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BatchError::Malformed("field length beyond record"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn opt_slice(&mut self) -> Result<Option<&'a [u8]>, BatchError> {
        let len = self.varint_i64()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::Malformed("negative length"))?;
        self.take(len).map(Some)
    }
}

#[cfg(test)]
mod tests;
