//! What a batch must be before a leader or a follower stores it, and bounded decompression.
//!
//! A batch is stored as received: the leader patches only its base offset and epoch. So every
//! header field the log trusts later must already agree with the records. `last_offset_delta`
//! decides the log end and the high watermark, `max_timestamp` feeds the time index, the
//! attribute flags decide which batches the dedup window decodes. A CRC proves none of this: any
//! client can compute one over a header that lies. [`Batch::validate_records`] decodes every
//! record once and checks the header against them.
//!
//! Offsets follow one of two rules ([`OffsetRule`]). A producer's batch is *dense*, its records
//! at deltas `0..=last_offset_delta`, so a log built from accepted batches has no gap (the README
//! promises it). A follower copying its leader also accepts *increasing* deltas inside the range:
//! key-based compaction rewrites old batches with their original offsets, which leaves gaps
//! inside them (`BatchBuilder::push_at`).
//!
//! Decompression is bounded before anything is allocated. The declared uncompressed length and
//! the zstd frame's own content size must both be present, agree, and be within the caller's
//! limit (the log's `max_batch_bytes` on produce), and the region must hold exactly one frame.
//! Only then is a buffer of that length allocated, and zstd cannot write past it. An 8 KB
//! frame that would inflate to 256 MiB is refused by reading its first bytes.

use super::{
    u32_at, Batch, BatchError, RecordMeta, ATTR_COMPRESSION_MASK, ATTR_HAS_DEDUP_IDS,
    ATTR_HAS_TOMBSTONES, DEDUP_ID_HEADER,
};

/// Every attribute bit this version knows; a batch with any other bit set is refused.
const ATTR_KNOWN: u16 = ATTR_COMPRESSION_MASK | ATTR_HAS_TOMBSTONES | ATTR_HAS_DEDUP_IDS;

/// How the records of a batch may be spaced within its offset range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetRule {
    /// Record `i` is at delta `i` and `record_count == last_offset_delta + 1`: what a
    /// producer sends, and what keeps a log's offsets gap-free.
    Dense,
    /// Deltas increase and stay within `0..=last_offset_delta`: what a follower may copy,
    /// since batches rewritten by key-based compaction keep their records' original offsets.
    Increasing,
}

/// What [`Batch::validate_records`] checks a batch against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchRules {
    pub offsets: OffsetRule,
    /// Largest payload (key + value + headers) of one record.
    pub max_record_bytes: usize,
    /// Largest records region once decompressed. Nothing larger is ever allocated.
    pub max_uncompressed_bytes: usize,
}

impl BatchRules {
    /// A producer's batch for a log with these limits: dense offsets, and the records region
    /// within `max_batch_bytes` before compression as well as after.
    pub fn produce(max_record_bytes: usize, max_batch_bytes: usize) -> BatchRules {
        BatchRules {
            offsets: OffsetRule::Dense,
            max_record_bytes,
            max_uncompressed_bytes: max_batch_bytes,
        }
    }

    /// A batch a follower copies from its leader. The leader checked record sizes against
    /// the log's limits when it accepted the batch. The decompression bound is the decoding
    /// backstop, because batches stored before a log's limits applied must still replicate.
    pub fn replicate() -> BatchRules {
        BatchRules {
            offsets: OffsetRule::Increasing,
            max_record_bytes: usize::MAX,
            max_uncompressed_bytes: super::MAX_UNCOMPRESSED_BYTES,
        }
    }
}

impl Batch {
    /// Decodes every record and checks that the header describes them: the record count,
    /// offsets by `rules.offsets`, `first_timestamp` equal to the first record's and
    /// `max_timestamp` to the largest, no unknown attribute bits (batch or record), the
    /// tombstone and dedup-id flags set exactly when a record has one, each record within
    /// `rules.max_record_bytes`, and the records region within `rules.max_uncompressed_bytes`
    /// (checked before decompressing). This runs on the leader before it accepts a produced
    /// batch, and on a follower before it stores a copy. Framing and CRC come first
    /// ([`Batch::parse_verified`]).
    pub fn validate_records(&self, rules: &BatchRules) -> Result<(), BatchError> {
        let attributes = self.attributes();
        if attributes & !ATTR_KNOWN != 0 {
            return Err(invalid(
                "attributes",
                format!(
                    "unknown bits {:#06x} set (known: bits 0-3)",
                    attributes & !ATTR_KNOWN
                ),
            ));
        }
        let count = u64::from(self.record_count());
        let last_delta = u64::from(self.last_offset_delta());
        if rules.offsets == OffsetRule::Dense && count != last_delta + 1 {
            return Err(invalid(
                "last_offset_delta",
                format!(
                    "is {last_delta} for {count} records; offsets are dense, so it must be {}",
                    count - 1
                ),
            ));
        }
        let first_ts = self.first_timestamp();
        let mut max_ts: Option<i64> = None;
        let (mut tombstones, mut dedup_ids) = (false, false);
        let mut index = 0u64;
        // Records are checked where they lie: no `Record`, no reference count, no allocation
        // per record (this runs for every batch a leader stores).
        self.visit_records(rules.max_uncompressed_bytes, |meta: RecordMeta, r, _| {
            if meta.attributes != 0 {
                return Err(invalid(
                    "record attributes",
                    format!(
                        "record {index} has attributes {:#04x}; none are defined",
                        meta.attributes
                    ),
                ));
            }
            if rules.offsets == OffsetRule::Dense && meta.offset_delta != index {
                return Err(invalid(
                    "offset_delta",
                    format!(
                        "record {index} is at delta {}; offsets are dense, so it must be {index}",
                        meta.offset_delta
                    ),
                ));
            }
            if index == 0 && r.timestamp != first_ts {
                return Err(invalid(
                    "first_timestamp",
                    format!(
                        "is {first_ts} but the first record's timestamp is {}",
                        r.timestamp
                    ),
                ));
            }
            let mut size = r.key.map_or(0, <[u8]>::len) + r.value.map_or(0, <[u8]>::len);
            if r.header_count > 0 {
                for h in r.headers() {
                    let (key, value) = h?;
                    size += key.len() + value.len();
                    dedup_ids |= key == DEDUP_ID_HEADER;
                }
            }
            if size > rules.max_record_bytes {
                return Err(BatchError::RecordTooLarge {
                    size,
                    limit: rules.max_record_bytes,
                });
            }
            max_ts = Some(max_ts.map_or(r.timestamp, |m| m.max(r.timestamp)));
            tombstones |= r.value.is_none();
            index += 1;
            Ok(())
        })?;
        if let Some(max) = max_ts.filter(|m| *m != self.max_timestamp()) {
            return Err(invalid(
                "max_timestamp",
                format!(
                    "is {} but the records' largest timestamp is {max}",
                    self.max_timestamp()
                ),
            ));
        }
        if tombstones != self.has_tombstones() {
            return Err(invalid(
                "attributes",
                flag_detail("tombstone (bit 2)", tombstones),
            ));
        }
        if dedup_ids != self.has_dedup_ids() {
            return Err(invalid(
                "attributes",
                flag_detail("dedup-id (bit 3)", dedup_ids),
            ));
        }
        Ok(())
    }
}

fn invalid(field: &'static str, detail: String) -> BatchError {
    BatchError::Inconsistent { field, detail }
}

fn flag_detail(flag: &str, records_have: bool) -> String {
    if records_have {
        format!("the {flag} flag is clear but a record has one")
    } else {
        format!("the {flag} flag is set but no record has one")
    }
}

/// Decompresses a zstd records region (`u32` declared length + one frame), allocating at most
/// `limit` bytes, and only after the declared length and the frame's content size agree.
pub(super) fn decompress_bounded(region: &[u8], limit: usize) -> Result<Vec<u8>, BatchError> {
    use zstd::zstd_safe;
    if region.len() < 4 {
        return Err(BatchError::Malformed("compressed region too short"));
    }
    let declared = u32_at(region, 0);
    let frame = &region[4..];
    if declared as usize > limit {
        return Err(BatchError::UncompressedTooLarge {
            size: u64::from(declared),
            limit,
        });
    }
    match zstd_safe::get_frame_content_size(frame) {
        Ok(Some(size)) if size == u64::from(declared) => {}
        Ok(Some(size)) => {
            return Err(invalid(
                "uncompressed length",
                format!("declares {declared} bytes but the zstd frame holds {size}"),
            ))
        }
        Ok(None) => {
            return Err(BatchError::Malformed(
                "the zstd frame does not declare its content size",
            ))
        }
        Err(_) => return Err(BatchError::Malformed("not a zstd frame")),
    }
    match zstd_safe::find_frame_compressed_size(frame) {
        Ok(n) if n == frame.len() => {}
        Ok(_) => return Err(BatchError::Malformed("bytes after the zstd frame")),
        Err(_) => return Err(BatchError::Malformed("truncated zstd frame")),
    }
    // `declared` is within `limit` and equals what the frame says it holds; zstd fails
    // rather than write past this capacity.
    let out = zstd::bulk::decompress(frame, declared as usize)
        .map_err(|e| BatchError::Compression(e.to_string()))?;
    if out.len() != declared as usize {
        return Err(BatchError::Malformed("uncompressed size mismatch"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
