//! A ledger log's hash chain across replicas: what the leader claims, what a follower checks.
//!
//! Every replica of a ledger log chains its records as it appends them (the hot tier's chain
//! journal). The leader sends its chain heads with each replication fetch answer: the head
//! at the follower's fetch offset and the head after the batches it returns. The follower
//! checks the first against its own head before appending (a copy that already differs from
//! the leader's is not extended), appends, and checks the second against the head its own
//! journal computed over the copied records; batches that do not hash to the leader's claim
//! are cut off again before this replica reports them (they were never acknowledged), and the
//! fetch fails with `CORRUPT_DATA` naming the offsets, so the replica stops advancing and
//! drops out of the ISR instead of holding a different history.
//!
//! A follower whose log restarted empty (its end was below the leader's start) adopts the
//! leader's head there: it has no history of its own to compare.

use pyralog_hot_tier::PartitionLog;
use pyralog_ledger::{to_hex, Hash};
use pyralog_types::LogOffset;

use crate::error::GatewayError;

/// The leader's side: its chain heads at `from` and `next` (empty when not a ledger or not
/// held).
pub(crate) fn leader_claims(
    hot: &PartitionLog,
    from: LogOffset,
    next: LogOffset,
    returned_any: bool,
) -> Result<(Vec<u8>, Vec<u8>), GatewayError> {
    if !hot.is_ledger() {
        return Ok((Vec::new(), Vec::new()));
    }
    let head = |at| -> Result<Vec<u8>, GatewayError> {
        Ok(hot
            .chain_head_at(at)?
            .map(|h| h.to_vec())
            .unwrap_or_default())
    };
    let before = head(from)?;
    let after = if returned_any {
        head(next)?
    } else {
        Vec::new()
    };
    Ok((before, after))
}

fn as_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

/// The follower's check before appending: its head at its end equals the leader's head there
/// (seeding an unknown chain of an empty log from it).
pub(crate) fn check_before(hot: &PartitionLog, leader_before: &[u8]) -> Result<(), GatewayError> {
    let Some(theirs) = as_hash(leader_before).filter(|_| hot.is_ledger()) else {
        return Ok(());
    };
    let end = hot.end_offset();
    if hot.chain_end()?.is_none() {
        hot.seed_chain(end, &theirs)?;
    }
    match hot.chain_end()? {
        Some((at, mine)) if at == end && mine != theirs => Err(GatewayError::CorruptData(format!(
            "ledger chain: this replica's head after offset {end} is {}, the leader's is {}; \
             the copies hold different records (`pyralog ledger` tools and `logs repair` \
             find which)",
            to_hex(&mine),
            to_hex(&theirs)
        ))),
        _ => Ok(()),
    }
}

/// The follower's check after appending the batches that took its log from `before` to its
/// current end: its journal's head there equals the leader's claim. On a mismatch the batches
/// are cut off again and the error names their range.
pub(crate) fn check_after(
    hot: &PartitionLog,
    before: LogOffset,
    leader_after: &[u8],
) -> Result<(), GatewayError> {
    let Some(theirs) = as_hash(leader_after).filter(|_| hot.is_ledger()) else {
        return Ok(());
    };
    let end = hot.end_offset();
    match hot.chain_end()? {
        Some((at, mine)) if at == end && mine == theirs => Ok(()),
        // A chain this replica does not know (its log restarted where the leader's journal
        // holds no head): nothing to compare.
        None => Ok(()),
        mine => {
            hot.truncate_to(before)?;
            Err(GatewayError::CorruptData(format!(
                "ledger chain: the records copied from the leader at offsets {before}..{end} \
                 hash to {}, but the leader's chain says {}; they were not kept",
                mine.map_or_else(|| "an unknown head".to_string(), |(_, h)| to_hex(&h)),
                to_hex(&theirs)
            )))
        }
    }
}

#[cfg(test)]
mod tests;
