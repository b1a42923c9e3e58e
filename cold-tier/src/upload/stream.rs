//! Uploading a segment file while it is being written.
//!
//! The archiver encodes a segment on a blocking thread and must not hold the whole file: a
//! 256 MiB segment would cost 256 MiB of memory per partition being tiered. So the encoder
//! writes into a [`PartSink`], which cuts the bytes into parts of
//! [`UploadOptions::part_bytes`] and hands them over a bounded channel to
//! [`upload_streamed`], which uploads them as they come. What is held at any time is the
//! encoder's row group, the part being filled, one part queued, and at most
//! [`UploadOptions::max_parts_in_flight`] parts being sent: `part_bytes × (max_parts_in_flight
//! + 2)` plus a row group (40 MiB and about 3 MiB with the defaults), whatever the file's size.
//!
//! A file that fits in one part is sent with one create-if-absent PUT, exactly as
//! [`super::upload_segment`] does. A larger one is a multipart upload, which object stores do
//! not offer as create-if-absent; so the upload first looks at the key: an object already
//! there is the retry of an upload whose success was lost, and the stream is compared with it
//! (size and footer) instead of being written. After a multipart upload completes, the
//! object's size is checked against what was sent, which catches a concurrent writer of a
//! different file at the same key (a bug or a split brain) in all but the narrowest race.

use std::collections::VecDeque;
use std::io;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMultipartOptions, WriteMultipart};
use tokio::sync::mpsc;
use tracing::debug;

use super::{put_create, same_object, UploadOptions, TAIL_CHECK_BYTES};
use crate::error::ColdError;

/// One message from the encoder: a part of the file, or the end of it.
#[derive(Debug)]
enum Part {
    Data(Bytes),
    End,
}

/// A connected [`PartSink`] (for the encoder's thread) and [`PartStream`] (for
/// [`upload_streamed`]).
pub fn part_channel(opts: &UploadOptions) -> (PartSink, PartStream) {
    let (tx, rx) = mpsc::channel(1);
    let part_bytes = opts.part_bytes.max(1);
    (
        PartSink {
            tx,
            buf: Vec::new(),
            part_bytes,
        },
        PartStream { rx },
    )
}

/// The encoder's end: a blocking [`io::Write`] that sends a part each time `part_bytes` have
/// been written. Call [`PartSink::finish`] at the end of the file; a sink dropped without it
/// tells the uploader the file is incomplete, and nothing is committed.
///
/// Writes block while the uploader is behind, so use it on a blocking thread, never on an
/// async task. Once the uploader has stopped (it failed), writes fail with `BrokenPipe`.
#[derive(Debug)]
pub struct PartSink {
    tx: mpsc::Sender<Part>,
    buf: Vec<u8>,
    part_bytes: usize,
}

impl PartSink {
    fn send(&mut self, part: Part) -> io::Result<()> {
        self.tx.blocking_send(part).map_err(|_| {
            io::Error::new(io::ErrorKind::BrokenPipe, "the segment upload has stopped")
        })
    }

    /// Sends the part being filled, if any, and starts the next one.
    fn send_part(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let full = std::mem::take(&mut self.buf);
        self.send(Part::Data(Bytes::from(full)))
    }

    /// Sends what is left and marks the end of the file.
    pub fn finish(mut self) -> io::Result<()> {
        self.send_part()?;
        self.send(Part::End)
    }
}

impl io::Write for PartSink {
    /// Fills the current part up to `part_bytes` exactly (it never grows past its first
    /// allocation) and sends each part as it fills.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let mut rest = data;
        while !rest.is_empty() {
            if self.buf.capacity() == 0 {
                // One allocation per part, made when the part's first byte arrives.
                self.buf.reserve_exact(self.part_bytes);
            }
            let room = self.part_bytes - self.buf.len();
            let (now, later) = rest.split_at(room.min(rest.len()));
            self.buf.extend_from_slice(now);
            rest = later;
            if self.buf.len() == self.part_bytes {
                self.send_part()?;
            }
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The uploader's end of a [`part_channel`].
#[derive(Debug)]
pub struct PartStream {
    rx: mpsc::Receiver<Part>,
}

impl PartStream {
    /// The next part; `Ok(None)` at the end of the file, an error if the encoder stopped
    /// before it.
    async fn next(&mut self, key: &Path) -> Result<Option<Bytes>, ColdError> {
        match self.rx.recv().await {
            Some(Part::Data(b)) => Ok(Some(b)),
            Some(Part::End) => Ok(None),
            None => Err(ColdError::Incomplete {
                path: key.to_string(),
            }),
        }
    }
}

/// Uploads the file arriving on `parts` to `key` and returns its size. Idempotent like
/// [`super::upload_segment`]: an identical object already at `key` is success, a different
/// one is [`ColdError::ObjectMismatch`]. If the encoder stops before the end, any multipart
/// upload is aborted and the result is [`ColdError::Incomplete`].
pub async fn upload_streamed(
    store: &dyn ObjectStore,
    key: &Path,
    mut parts: PartStream,
    opts: &UploadOptions,
) -> Result<u64, ColdError> {
    let Some(first) = parts.next(key).await? else {
        return Err(ColdError::InvalidInput(format!(
            "an empty file cannot be uploaded to {key}"
        )));
    };
    let Some(second) = parts.next(key).await? else {
        let len = first.len() as u64;
        put_create(store, key, first, &opts.retry).await?;
        return Ok(len);
    };
    match store.head(key).await {
        Ok(existing) => {
            debug!(%key, "segment already in the bucket: comparing instead of writing");
            let (len, tail) = drain_keeping_tail(key, [first, second], parts).await?;
            same_object(store, key, len, &tail, Some(existing.size)).await?;
            Ok(len)
        }
        Err(object_store::Error::NotFound { .. }) => {
            upload_multipart(store, key, [first, second], parts, opts).await
        }
        Err(e) => Err(ColdError::store("head", key, e)),
    }
}

async fn upload_multipart(
    store: &dyn ObjectStore,
    key: &Path,
    head: [Bytes; 2],
    mut parts: PartStream,
    opts: &UploadOptions,
) -> Result<u64, ColdError> {
    let upload = store
        .put_multipart_opts(key, PutMultipartOptions::default())
        .await
        .map_err(|e| ColdError::store("put", key, e))?;
    let mut writer = WriteMultipart::new_with_chunk_size(upload, opts.part_bytes.max(1));
    let in_flight = opts.max_parts_in_flight.max(1);
    let mut len = 0u64;
    let mut pending: VecDeque<Bytes> = head.into();
    let sent = loop {
        // Wait for room before taking the next part, so a part is either queued in the
        // channel or being sent, never also held here.
        if let Err(e) = writer.wait_for_capacity(in_flight).await {
            break Err(ColdError::store("put", key, e));
        }
        let part = match pending.pop_front() {
            Some(p) => Ok(Some(p)),
            None => parts.next(key).await,
        };
        match part {
            Ok(Some(p)) => {
                len += p.len() as u64;
                writer.put(p);
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(e),
        }
    };
    if let Err(e) = sent {
        // Best effort: an upload left behind is removed by the store's lifecycle rules (S3
        // keeps incomplete uploads until then) and never becomes a visible object.
        let _ = writer.abort().await;
        return Err(e);
    }
    writer
        .finish()
        .await
        .map_err(|e| ColdError::store("put", key, e))?;
    let stored = store
        .head(key)
        .await
        .map_err(|e| ColdError::store("head", key, e))?;
    if stored.size != len {
        return Err(ColdError::ObjectMismatch {
            path: key.to_string(),
            existing: stored.size,
            ours: len,
        });
    }
    debug!(%key, bytes = len, "segment uploaded in parts");
    Ok(len)
}

/// Reads the rest of the file, keeping only its length and its last [`TAIL_CHECK_BYTES`].
async fn drain_keeping_tail(
    key: &Path,
    head: [Bytes; 2],
    mut parts: PartStream,
) -> Result<(u64, Vec<u8>), ColdError> {
    let mut len = 0u64;
    let mut last: VecDeque<Bytes> = VecDeque::new();
    let mut kept = 0usize;
    let mut pending: VecDeque<Bytes> = head.into();
    loop {
        let part = match pending.pop_front() {
            Some(p) => Some(p),
            None => parts.next(key).await?,
        };
        let Some(p) = part else { break };
        len += p.len() as u64;
        kept += p.len();
        last.push_back(p);
        while last
            .front()
            .is_some_and(|f| kept - f.len() >= TAIL_CHECK_BYTES as usize)
        {
            if let Some(f) = last.pop_front() {
                kept -= f.len();
            }
        }
    }
    let joined: Vec<u8> = last.iter().flat_map(|b| b.iter().copied()).collect();
    let tail_len = joined.len().min(TAIL_CHECK_BYTES as usize);
    Ok((len, joined[joined.len() - tail_len..].to_vec()))
}

#[cfg(test)]
mod tests;
