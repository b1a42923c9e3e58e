//! Encoding records as a batch.
//!
//! The builder writes every record straight into one buffer that already holds room for the
//! batch header, so sealing an uncompressed batch fills in the header and hands that buffer
//! over: no record is copied twice. Records come either as [`NewRecord`]s (producers) or as
//! borrowed slices ([`BatchBuilder::push_slices_at`]: the cold tier rebuilding batches from
//! Arrow columns without building a record per row).

use bytes::{BufMut, Bytes, BytesMut};

use super::{
    assign, BatchError, Compression, ATTR_HAS_DEDUP_IDS, ATTR_HAS_TOMBSTONES, CRC_START,
    DEDUP_ID_HEADER, HEADER_LEN, LOG_OVERHEAD, MAGIC, OFF_CRC,
};
use crate::ids::{Epoch, LogOffset, TimestampMicros};
use crate::record::Header;

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
    /// Batches appended before this one (`..start`, see [`BatchBuilder::appending_to`]),
    /// then `HEADER_LEN` bytes reserved for the header, then the encoded records.
    buf: Vec<u8>,
    start: usize,
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
        Self::with_capacity(compression, 0)
    }

    /// A builder whose buffer has room for `records_bytes` of encoded records.
    pub fn with_capacity(compression: Compression, records_bytes: usize) -> Self {
        Self::appending_to(compression, Vec::with_capacity(HEADER_LEN + records_bytes))
    }

    /// A builder that writes its batch at the end of `buf`, which may already hold batches:
    /// [`BatchBuilder::append_at`] hands `buf` back with the batch sealed at its end, so
    /// batches built one after another share one buffer and none is copied into place.
    pub fn appending_to(compression: Compression, mut buf: Vec<u8>) -> Self {
        let start = buf.len();
        buf.resize(start + HEADER_LEN, 0);
        BatchBuilder {
            compression,
            buf,
            start,
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
        self.buf.len() - self.start
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
            + r.key.as_ref().map_or(0, Bytes::len)
            + r.value.as_ref().map_or(0, Bytes::len)
            + r.headers
                .iter()
                .map(|h| 10 + h.key.len() + 10 + h.value.len())
                .sum::<usize>()
    }

    /// Appends one record; its offset is the next in the batch.
    pub fn push(&mut self, r: &NewRecord) {
        let delta = self.last_delta.map_or(0, |d| d.saturating_add(1));
        self.push_new(delta, r);
    }

    /// Appends one record at an explicit offset delta (relative to the batch's base offset),
    /// for rebuilding batches whose offsets have gaps (compacted data read back from the cold
    /// tier). Deltas must increase; a delta not above the previous one is an error.
    pub fn push_at(&mut self, offset_delta: u32, r: &NewRecord) -> Result<(), BatchError> {
        self.check_delta(offset_delta)?;
        self.push_new(offset_delta, r);
        Ok(())
    }

    /// [`BatchBuilder::push_at`] for a record given as borrowed fields: `headers` as
    /// `(key, value)` pairs.
    pub fn push_slices_at(
        &mut self,
        offset_delta: u32,
        timestamp: TimestampMicros,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, &[u8])],
    ) -> Result<(), BatchError> {
        self.check_delta(offset_delta)?;
        let fields = Fields {
            timestamp,
            key,
            value,
            header_count: headers.len(),
        };
        self.push_record(offset_delta, &fields, headers.iter().copied());
        Ok(())
    }

    fn check_delta(&self, offset_delta: u32) -> Result<(), BatchError> {
        if self.last_delta.is_some_and(|d| offset_delta <= d) {
            return Err(BatchError::Malformed("record offsets out of order"));
        }
        Ok(())
    }

    fn push_new(&mut self, offset_delta: u32, r: &NewRecord) {
        let fields = Fields {
            timestamp: r.timestamp,
            key: r.key.as_deref(),
            value: r.value.as_deref(),
            header_count: r.headers.len(),
        };
        let headers = r.headers.iter().map(|h| (h.key.as_str(), h.value.as_ref()));
        self.push_record(offset_delta, &fields, headers);
    }

    /// Encodes one record at the end of the buffer: its length first, computed up front, so
    /// the body is written in place.
    fn push_record<'h>(
        &mut self,
        offset_delta: u32,
        f: &Fields<'_>,
        headers: impl Iterator<Item = (&'h str, &'h [u8])> + Clone,
    ) {
        if self.count == 0 {
            self.first_ts = f.timestamp;
        }
        self.max_ts = self.max_ts.max(f.timestamp);
        self.has_tombstones |= f.value.is_none();
        let ts_delta = f.timestamp.wrapping_sub(self.first_ts);
        let mut body = 1
            + varint_i64_len(ts_delta)
            + varint_u64_len(u64::from(offset_delta))
            + opt_bytes_len(f.key)
            + opt_bytes_len(f.value)
            + varint_u64_len(f.header_count as u64);
        for (k, v) in headers.clone() {
            self.has_dedup_ids |= k == DEDUP_ID_HEADER;
            body +=
                varint_u64_len(k.len() as u64) + k.len() + varint_u64_len(v.len() as u64) + v.len();
        }
        let buf = &mut self.buf;
        buf.reserve(varint_u64_len(body as u64) + body);
        put_varint_u64(buf, body as u64);
        buf.put_u8(0);
        put_varint_i64(buf, ts_delta);
        put_varint_u64(buf, u64::from(offset_delta));
        put_opt_bytes(buf, f.key);
        put_opt_bytes(buf, f.value);
        put_varint_u64(buf, f.header_count as u64);
        for (k, v) in headers {
            put_varint_u64(buf, k.len() as u64);
            buf.extend_from_slice(k.as_bytes());
            put_varint_u64(buf, v.len() as u64);
            buf.extend_from_slice(v);
        }
        self.count += 1;
        self.last_delta = Some(offset_delta);
    }

    /// Encodes the batch with `base_offset = 0` and `epoch = 0` (the leader assigns both).
    /// On a builder made by [`BatchBuilder::appending_to`], only the batch is returned.
    pub fn build(self) -> Result<Bytes, BatchError> {
        let start = self.start;
        self.seal().map(|buf| Bytes::from(buf).slice(start..))
    }

    /// Encodes the batch with its base offset and epoch already assigned, as the leader
    /// stored it (the cold tier rebuilding batches).
    pub fn build_at(self, base_offset: LogOffset, epoch: Epoch) -> Result<Bytes, BatchError> {
        self.append_at(base_offset, epoch).map(Bytes::from)
    }

    /// Seals the batch at `base_offset` and `epoch` and returns the buffer given to
    /// [`BatchBuilder::appending_to`] with the batch at its end.
    pub fn append_at(self, base_offset: LogOffset, epoch: Epoch) -> Result<Vec<u8>, BatchError> {
        let start = self.start;
        let mut buf = self.seal()?;
        assign(&mut buf[start..], base_offset, epoch);
        Ok(buf)
    }

    fn seal(self) -> Result<Vec<u8>, BatchError> {
        if self.count == 0 {
            return Err(BatchError::Empty);
        }
        let start = self.start;
        let (codec, mut buf) = match self.compression {
            Compression::None => (0u16, self.buf),
            Compression::Zstd(level) => {
                let mut v = self.buf;
                let records_at = start + HEADER_LEN;
                let compressed = zstd::bulk::compress(&v[records_at..], level)
                    .map_err(|e| BatchError::Compression(e.to_string()))?;
                let records_len = (v.len() - records_at) as u32;
                v.truncate(records_at);
                v.reserve(4 + compressed.len());
                v.put_u32_le(records_len);
                v.extend_from_slice(&compressed);
                (1, v)
            }
        };
        let total = buf.len() - start;
        let mut header = BytesMut::with_capacity(HEADER_LEN);
        header.put_u64_le(0);
        header.put_u32_le((total - LOG_OVERHEAD) as u32);
        header.put_u64_le(0);
        header.put_u8(MAGIC);
        header.put_u32_le(0); // crc, patched below
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
        header.put_u16_le(attributes);
        header.put_u32_le(self.last_delta.unwrap_or(0));
        header.put_u32_le(self.count);
        header.put_i64_le(self.first_ts);
        header.put_i64_le(self.max_ts);
        let (pid, pepoch, seq) = self.producer.unwrap_or((-1, -1, -1));
        header.put_i64_le(pid);
        header.put_i16_le(pepoch);
        header.put_i32_le(seq);
        let batch = &mut buf[start..];
        batch[..HEADER_LEN].copy_from_slice(&header);
        let crc = crc32c::crc32c(&batch[CRC_START..]);
        batch[OFF_CRC..OFF_CRC + 4].copy_from_slice(&crc.to_le_bytes());
        Ok(buf)
    }
}

/// The fixed fields of a record being pushed.
struct Fields<'a> {
    timestamp: TimestampMicros,
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    header_count: usize,
}

fn varint_u64_len(v: u64) -> usize {
    // 7 bits per byte, at least one byte.
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn varint_i64_len(v: i64) -> usize {
    varint_u64_len(zigzag(v))
}

fn opt_bytes_len(b: Option<&[u8]>) -> usize {
    match b {
        None => varint_i64_len(-1),
        Some(b) => varint_i64_len(b.len() as i64) + b.len(),
    }
}

fn put_varint_u64(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}

fn put_varint_i64(buf: &mut Vec<u8>, v: i64) {
    put_varint_u64(buf, zigzag(v));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_lengths_match_what_is_written() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_varint_u64(&mut buf, v);
            assert_eq!(buf.len(), varint_u64_len(v), "{v}");
        }
        for v in [0i64, -1, 63, -64, 64, i64::MIN, i64::MAX] {
            let mut buf = Vec::new();
            put_varint_i64(&mut buf, v);
            assert_eq!(buf.len(), varint_i64_len(v), "{v}");
        }
    }
}
