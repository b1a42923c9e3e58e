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
//! | 25 | 2 | `attributes` u16 | bits 0-1 compression (0 none, 1 zstd); bit 2 has tombstones; bit 3 has dedup ids |
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

use bytes::{BufMut, Bytes, BytesMut};

mod rebuild;
pub use rebuild::rebuild_batches;

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

/// Fewest bytes a record takes: length, attributes, timestamp delta, offset delta, key and
/// value lengths, header count.
const MIN_RECORD_BYTES: usize = 7;

/// Largest decompressed records region accepted (guards against decompression bombs).
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
}

/// A record before the leader gives it an offset.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    pub timestamp: TimestampMicros,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

/// Accumulates records and encodes them as one batch.
#[derive(Debug)]
pub struct BatchBuilder {
    compression: Compression,
    records: Vec<u8>,
    count: u32,
    first_ts: TimestampMicros,
    max_ts: TimestampMicros,
    has_tombstones: bool,
    has_dedup_ids: bool,
    producer: Option<(i64, i16, i32)>,
    /// Offset delta of the last pushed record (`None` before the first).
    last_delta: Option<u32>,
}

impl BatchBuilder {
    pub fn new(compression: Compression) -> Self {
        BatchBuilder {
            compression,
            records: Vec::new(),
            count: 0,
            first_ts: 0,
            max_ts: i64::MIN,
            has_tombstones: false,
            has_dedup_ids: false,
            producer: None,
            last_delta: None,
        }
    }

    /// Marks the batch as written by an idempotent producer.
    pub fn with_producer(mut self, id: i64, epoch: i16, base_sequence: i32) -> Self {
        self.producer = Some((id, epoch, base_sequence));
        self
    }

    pub fn record_count(&self) -> u32 {
        self.count
    }

    /// Encoded size so far, before compression.
    pub fn estimated_size(&self) -> usize {
        HEADER_LEN + self.records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// An upper bound of the bytes `r` adds to [`BatchBuilder::estimated_size`] (payload plus
    /// the largest varints), so a batch can be sealed *before* a record would push it over a
    /// size limit.
    pub fn record_size_bound(r: &NewRecord) -> usize {
        // length, attributes, timestamp delta, offset delta, key and value lengths, count.
        const FIXED: usize = 10 + 1 + 10 + 5 + 10 + 10 + 10;
        FIXED
            + r_len(r)
            + r.headers
                .iter()
                .map(|h| 10 + h.key.len() + 10 + h.value.len())
                .sum::<usize>()
    }

    /// Appends one record; its offset is the next in the batch.
    pub fn push(&mut self, r: &NewRecord) {
        let delta = self.last_delta.map_or(0, |d| d.saturating_add(1));
        self.push_record(delta, r);
    }

    /// Appends one record at an explicit offset delta (relative to the batch's base offset),
    /// for rebuilding batches whose offsets have gaps (compacted data read back from the cold
    /// tier). Deltas must increase; a delta not above the previous one is an error.
    pub fn push_at(&mut self, offset_delta: u32, r: &NewRecord) -> Result<(), BatchError> {
        if self.last_delta.is_some_and(|d| offset_delta <= d) {
            return Err(BatchError::Malformed("record offsets out of order"));
        }
        self.push_record(offset_delta, r);
        Ok(())
    }

    fn push_record(&mut self, offset_delta: u32, r: &NewRecord) {
        if self.count == 0 {
            self.first_ts = r.timestamp;
        }
        self.max_ts = self.max_ts.max(r.timestamp);
        self.has_tombstones |= r.value.is_none();
        self.has_dedup_ids |= r.headers.iter().any(|h| h.key == DEDUP_ID_HEADER);
        let mut body = Vec::with_capacity(16 + r_len(r));
        body.put_u8(0);
        put_varint_i64(&mut body, r.timestamp.wrapping_sub(self.first_ts));
        put_varint_u64(&mut body, u64::from(offset_delta));
        put_opt_bytes(&mut body, r.key.as_deref());
        put_opt_bytes(&mut body, r.value.as_deref());
        put_varint_u64(&mut body, r.headers.len() as u64);
        for h in &r.headers {
            put_varint_u64(&mut body, h.key.len() as u64);
            body.extend_from_slice(h.key.as_bytes());
            put_varint_u64(&mut body, h.value.len() as u64);
            body.extend_from_slice(&h.value);
        }
        put_varint_u64(&mut self.records, body.len() as u64);
        self.records.extend_from_slice(&body);
        self.count += 1;
        self.last_delta = Some(offset_delta);
    }

    /// Encodes the batch with `base_offset = 0` and `epoch = 0` (the leader assigns both).
    pub fn build(self) -> Result<Bytes, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let (codec, payload): (u16, std::borrow::Cow<'_, [u8]>) = match self.compression {
            Compression::None => (0, self.records.as_slice().into()),
            Compression::Zstd(level) => {
                let compressed = zstd::bulk::compress(&self.records, level)
                    .map_err(|e| BatchError::Compression(e.to_string()))?;
                let mut v = Vec::with_capacity(4 + compressed.len());
                v.put_u32_le(self.records.len() as u32);
                v.extend_from_slice(&compressed);
                (1, v.into())
            }
        };
        let total = HEADER_LEN + payload.len();
        let mut buf = BytesMut::with_capacity(total);
        buf.put_u64_le(0);
        buf.put_u32_le((total - LOG_OVERHEAD) as u32);
        buf.put_u64_le(0);
        buf.put_u8(MAGIC);
        buf.put_u32_le(0); // crc, patched below
        let attributes = codec
            | if self.has_tombstones {
                ATTR_HAS_TOMBSTONES
            } else {
                0
            }
            | if self.has_dedup_ids {
                ATTR_HAS_DEDUP_IDS
            } else {
                0
            };
        buf.put_u16_le(attributes);
        buf.put_u32_le(self.last_delta.unwrap_or(0));
        buf.put_u32_le(self.count);
        buf.put_i64_le(self.first_ts);
        buf.put_i64_le(self.max_ts);
        let (pid, pepoch, seq) = self.producer.unwrap_or((-1, -1, -1));
        buf.put_i64_le(pid);
        buf.put_i16_le(pepoch);
        buf.put_i32_le(seq);
        buf.extend_from_slice(&payload);
        let crc = crc32c::crc32c(&buf[CRC_START..]);
        buf[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(buf.freeze())
    }
}

fn r_len(r: &NewRecord) -> usize {
    r.key.as_ref().map_or(0, Bytes::len) + r.value.as_ref().map_or(0, Bytes::len)
}

/// Sets the leader-assigned fields of an encoded batch in place (no CRC change needed).
pub fn assign(batch: &mut [u8], base_offset: LogOffset, epoch: Epoch) {
    batch[OFF_BASE_OFFSET..OFF_BASE_OFFSET + 8].copy_from_slice(&base_offset.0.to_le_bytes());
    batch[OFF_EPOCH..OFF_EPOCH + 8].copy_from_slice(&epoch.0.to_le_bytes());
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
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: HEADER_LEN,
                available: bytes.len(),
            });
        }
        let size = peek_size(&bytes)?;
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
        let b = Batch { bytes };
        let codec = b.attributes() & ATTR_COMPRESSION_MASK;
        if codec > 1 {
            return Err(BatchError::UnknownCompression(codec));
        }
        if b.record_count() == 0 {
            return Err(BatchError::Empty);
        }
        if b.record_count() > b.last_offset_delta().saturating_add(1) {
            return Err(BatchError::Malformed(
                "record_count exceeds the offset range",
            ));
        }
        Ok(b)
    }

    /// Parses and verifies the CRC.
    pub fn parse_verified(bytes: Bytes) -> Result<Batch, BatchError> {
        let b = Batch::parse(bytes)?;
        b.verify_crc()?;
        Ok(b)
    }

    pub fn verify_crc(&self) -> Result<(), BatchError> {
        let expected = u32_at(&self.bytes, OFF_CRC);
        let actual = crc32c::crc32c(&self.bytes[CRC_START..]);
        if expected == actual {
            Ok(())
        } else {
            Err(BatchError::CrcMismatch { expected, actual })
        }
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

    /// The records region, decompressed if needed.
    fn records_region(&self) -> Result<Bytes, BatchError> {
        let region = self.bytes.slice(HEADER_LEN..);
        match self.compression_codec() {
            0 => Ok(region),
            1 => {
                if region.len() < 4 {
                    return Err(BatchError::Malformed("compressed region too short"));
                }
                let len = u32_at(&region, 0) as usize;
                if len > MAX_UNCOMPRESSED_BYTES {
                    return Err(BatchError::Malformed("uncompressed size over the limit"));
                }
                let out = zstd::bulk::decompress(&region[4..], len)
                    .map_err(|e| BatchError::Compression(e.to_string()))?;
                if out.len() != len {
                    return Err(BatchError::Malformed("uncompressed size mismatch"));
                }
                Ok(Bytes::from(out))
            }
            other => Err(BatchError::UnknownCompression(other)),
        }
    }

    /// Decodes every record. Offsets and epoch come from the header.
    pub fn records(&self) -> Result<Vec<Record>, BatchError> {
        // `record_count` is an unchecked header field: reserve no more than the stored bytes
        // could hold (a record takes at least 7 bytes), or a 65-byte batch claiming four
        // billion records would ask for hundreds of gigabytes before the first record fails.
        let fit = (self.bytes.len() - HEADER_LEN) / MIN_RECORD_BYTES + 1;
        let mut out = Vec::with_capacity((self.record_count() as usize).min(fit));
        self.for_each_record(|r| {
            out.push(r);
            Ok(())
        })?;
        Ok(out)
    }

    /// Checks that the records region decodes to exactly `record_count` well-formed records
    /// with increasing offsets inside the batch's range, each within `max_record_bytes`.
    /// This is what a leader runs before accepting a batch.
    pub fn validate_records(&self, max_record_bytes: usize) -> Result<(), BatchError> {
        self.for_each_record(|r| {
            let size = r.payload_len();
            if size > max_record_bytes {
                return Err(BatchError::RecordTooLarge {
                    size,
                    limit: max_record_bytes,
                });
            }
            Ok(())
        })
    }

    fn for_each_record(
        &self,
        mut f: impl FnMut(Record) -> Result<(), BatchError>,
    ) -> Result<(), BatchError> {
        let region = self.records_region()?;
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
            let _attributes = rc.u8()?;
            let ts_delta = rc.varint_i64()?;
            let offset_delta = rc.varint_u64()?;
            if offset_delta > last_delta || prev_delta.is_some_and(|p| offset_delta <= p) {
                return Err(BatchError::Malformed("record offsets out of order"));
            }
            prev_delta = Some(offset_delta);
            let key = rc.opt_bytes(&region)?;
            let value = rc.opt_bytes(&region)?;
            let header_count = rc.varint_u64()?;
            let mut headers = Vec::with_capacity(header_count.min(64) as usize);
            for _ in 0..header_count {
                let klen = rc.varint_u64()? as usize;
                let kbytes = rc.take(klen)?;
                let key = std::str::from_utf8(kbytes)
                    .map_err(|_| BatchError::Malformed("header key is not UTF-8"))?
                    .to_owned();
                let vlen = rc.varint_u64()? as usize;
                let start = rc.pos;
                rc.take(vlen)?;
                headers.push(Header {
                    key,
                    value: region.slice(start..start + vlen),
                });
            }
            if rc.pos != end {
                return Err(BatchError::Malformed("record has trailing bytes"));
            }
            cur.pos = end;
            f(Record {
                offset: LogOffset(base + offset_delta),
                epoch,
                timestamp: first_ts.wrapping_add(ts_delta),
                key,
                value,
                headers,
            })?;
        }
        if cur.pos != region.len() {
            return Err(BatchError::Malformed("bytes after the last record"));
        }
        Ok(())
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

fn put_varint_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint_i64(buf: &mut Vec<u8>, v: i64) {
    put_varint_u64(buf, ((v << 1) ^ (v >> 63)) as u64);
}

fn put_opt_bytes(buf: &mut Vec<u8>, b: Option<&[u8]>) {
    match b {
        None => put_varint_i64(buf, -1),
        Some(b) => {
            put_varint_i64(buf, b.len() as i64);
            buf.extend_from_slice(b);
        }
    }
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Cursor<'_> {
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

    fn take(&mut self, n: usize) -> Result<&[u8], BatchError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or(BatchError::Malformed("field length beyond record"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn opt_bytes(&mut self, region: &Bytes) -> Result<Option<Bytes>, BatchError> {
        let len = self.varint_i64()?;
        if len == -1 {
            return Ok(None);
        }
        let len = usize::try_from(len).map_err(|_| BatchError::Malformed("negative length"))?;
        let start = self.pos;
        self.take(len)?;
        Ok(Some(region.slice(start..start + len)))
    }
}

#[cfg(test)]
mod tests;
