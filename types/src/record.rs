//! The record: the unit users produce and consume.

use bytes::Bytes;

use crate::ids::{Epoch, LogOffset, TimestampMicros};

/// One header of a record: a UTF-8 key and an opaque value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub key: String,
    pub value: Bytes,
}

impl Header {
    /// The header carrying a record's dedup id ([`crate::batch::DEDUP_ID_HEADER`]).
    pub fn dedup_id(id: impl Into<Bytes>) -> Header {
        Header {
            key: crate::batch::DEDUP_ID_HEADER.to_owned(),
            value: id.into(),
        }
    }
}

/// A record as stored and served. `value = None` is a tombstone (used by key-based
/// compaction to delete a key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub offset: LogOffset,
    pub epoch: Epoch,
    pub timestamp: TimestampMicros,
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    pub headers: Vec<Header>,
}

impl Record {
    /// Bytes of user payload (key + value + headers), the unit of `max_record_bytes`.
    pub fn payload_len(&self) -> usize {
        self.key.as_ref().map_or(0, Bytes::len)
            + self.value.as_ref().map_or(0, Bytes::len)
            + self
                .headers
                .iter()
                .map(|h| h.key.len() + h.value.len())
                .sum::<usize>()
    }
}
