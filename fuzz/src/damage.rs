//! Fuzz input as damage to a valid file.
//!
//! The runner ([`crate::runner`]) feeds mutated corpus files and random bytes, without
//! coverage feedback. Random bytes almost never get past a magic number and a CRC, so a
//! target that only decoded its input would test the first ten lines of each decoder. Every
//! target therefore also reads its input as a small program of edits applied to a valid file made by the real encoder, and can
//! recompute the file's checksums afterwards: the decoder then meets bytes that are wrong in
//! one field and right everywhere else, which is where decoders go wrong.

/// What the first input byte asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// Replace the file with the rest of the input instead of editing it.
    pub replace: bool,
    /// Recompute checksums after editing, so the damage reaches the fields behind them.
    pub fix_checksums: bool,
    /// Which file of several to damage (each target reads it its own way).
    pub selector: u8,
}

/// Splits the input into the plan (first byte) and the edit program (the rest).
pub fn plan(input: &[u8]) -> (Plan, &[u8]) {
    match input.split_first() {
        None => (
            Plan {
                replace: false,
                fix_checksums: false,
                selector: 0,
            },
            &[],
        ),
        Some((&b, rest)) => (
            Plan {
                replace: b & 0b11 == 0,
                fix_checksums: b & 0b100 != 0,
                selector: b >> 3,
            },
            rest,
        ),
    }
}

/// Applies `program` to `file`: 4-byte edits `(position u16 LE, operation, value)`, the
/// position taken modulo the current length plus one. Operations: flip bits (xor with an odd
/// value, so the byte always changes), set the byte, cut the file there, insert a byte.
/// Returns the first position touched (`file.len()` if nothing was).
pub fn apply(file: &mut Vec<u8>, program: &[u8]) -> usize {
    let mut first = file.len();
    for edit in program.chunks_exact(4) {
        let pos = usize::from(u16::from_le_bytes([edit[0], edit[1]])) % (file.len() + 1);
        first = first.min(pos);
        match edit[2] % 4 {
            0 => {
                if let Some(b) = file.get_mut(pos) {
                    *b ^= edit[3] | 1;
                }
            }
            1 => {
                if let Some(b) = file.get_mut(pos) {
                    *b = edit[3];
                }
            }
            2 => file.truncate(pos),
            _ => file.insert(pos, edit[3]),
        }
    }
    first
}

/// Byte offsets of the batch format (ARCHITECTURE.md, "The record batch"): `length` at 8,
/// `crc` at 21 covering 25..end.
const BATCH_LENGTH_AT: usize = 8;
const BATCH_CRC_AT: usize = 21;
const BATCH_CRC_FROM: usize = 25;

/// Recomputes the CRC of every batch that can be walked from the start of `buf` (whole
/// batches back to back, as in a segment file or a fetch answer).
pub fn fix_batch_crcs(buf: &mut [u8]) {
    let mut at = 0usize;
    while let Some(len_bytes) = buf.get(at + BATCH_LENGTH_AT..at + BATCH_LENGTH_AT + 4) {
        let mut l = [0u8; 4];
        l.copy_from_slice(len_bytes);
        let size = 12usize.saturating_add(u32::from_le_bytes(l) as usize);
        let Some(end) = at.checked_add(size).filter(|&e| e <= buf.len()) else {
            return;
        };
        if size < BATCH_CRC_FROM {
            return;
        }
        let crc = crc32c::crc32c(&buf[at + BATCH_CRC_FROM..end]);
        buf[at + BATCH_CRC_AT..at + BATCH_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
        at = end;
    }
}

/// Recomputes the CRC of a producer snapshot (`hot-tier/src/producers/snapshot.rs`: a CRC32C
/// at 6 covering 10..end).
pub fn fix_snapshot_crc(buf: &mut [u8]) {
    if buf.len() >= 10 {
        let crc = crc32c::crc32c(&buf[10..]);
        buf[6..10].copy_from_slice(&crc.to_le_bytes());
    }
}

/// Numbers read from fuzz input, preferring the edges where arithmetic breaks (0, 1, the
/// largest values) over uniformly random ones, which almost never hit them.
#[derive(Debug)]
pub struct Numbers<'a>(pub &'a [u8]);

impl Numbers<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn u64(&mut self) -> u64 {
        let Some(kind) = self.byte() else { return 0 };
        match kind % 8 {
            0 => 0,
            1 => 1,
            2 => u64::MAX,
            3 => u64::MAX - 1,
            4 => i64::MAX as u64,
            5 => u64::from(self.byte().unwrap_or(0)),
            _ => {
                let mut b = [0u8; 8];
                for x in &mut b {
                    *x = self.byte().unwrap_or(0);
                }
                u64::from_le_bytes(b)
            }
        }
    }

    pub fn i64(&mut self) -> i64 {
        self.u64() as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_change_the_file_where_they_say() {
        let mut f = vec![0u8; 8];
        // flip byte 3, set byte 5 to 7, insert 9 at 0, cut at 6
        let first = apply(&mut f, &[3, 0, 0, 0, 5, 0, 1, 7, 0, 0, 3, 9, 6, 0, 2, 0]);
        assert_eq!(f, vec![9, 0, 0, 0, 1, 0]);
        assert_eq!(first, 0);
    }

    #[test]
    fn the_first_byte_is_the_plan() {
        let (p, rest) = plan(&[0b0000_1101, 1, 2]);
        assert_eq!(
            p,
            Plan {
                replace: false,
                fix_checksums: true,
                selector: 1
            }
        );
        assert_eq!(rest, &[1, 2]);
    }
}
