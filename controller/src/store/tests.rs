//! Storage tests: openraft's own conformance suite, plus what the suite cannot see (that
//! everything survives a reopen, and what a crash leaves behind).

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;

use openraft::storage::{RaftLogStorage, RaftLogStorageExt, RaftStateMachine};
use openraft::testing::{StoreBuilder, Suite};
use openraft::{
    CommittedLeaderId, EntryPayload, Membership, RaftLogReader, RaftSnapshotBuilder,
    StoredMembership,
};
use tempfile::TempDir;

use super::log::LogStore;
use super::state_machine::StateMachineStore;
use crate::raft_types::{Entry, LogId, StorageError, TypeConfig, Vote};
use crate::state::{Command, CommandResult};

struct Builder;

impl StoreBuilder<TypeConfig, LogStore, StateMachineStore, TempDir> for Builder {
    async fn build(&self) -> Result<(TempDir, LogStore, StateMachineStore), StorageError> {
        let dir = TempDir::new().map_err(|e| openraft::StorageIOError::write(&e))?;
        let log = LogStore::open(dir.path().join("log"))
            .await
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        let sm = StateMachineStore::open(dir.path().join("snapshot"))
            .await
            .map_err(|e| openraft::StorageIOError::write(&e))?;
        Ok((dir, log, sm))
    }
}

#[test]
fn openraft_storage_suite() {
    if let Err(e) = Suite::test_all(Builder) {
        panic!("openraft storage suite: {e}");
    }
}

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn entry(term: u64, index: u64) -> Entry {
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Command::RegisterNode {
            id: index,
            address: format!("10.0.0.{index}:7001"),
            cluster_address: String::new(),
            rack: None,
        }),
    }
}

async fn indexes(log: &mut LogStore) -> Vec<u64> {
    log.try_get_log_entries(..)
        .await
        .expect("read")
        .iter()
        .map(|e| e.log_id.index)
        .collect()
}

async fn open(dir: &Path, segment_bytes: u64) -> LogStore {
    LogStore::open_with(dir.to_path_buf(), segment_bytes)
        .await
        .expect("open log")
}

#[tokio::test]
async fn appends_truncation_purge_and_vote_survive_reopen() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("log");
    // Tiny segments: every append of a few entries rolls to a new one.
    let mut log = open(&dir, 200).await;
    log.blocking_append((1..=4).map(|i| entry(1, i)))
        .await
        .expect("append");
    log.blocking_append((5..=9).map(|i| entry(1, i)))
        .await
        .expect("append");
    let vote = Vote::new(3, 2);
    log.save_vote(&vote).await.expect("vote");
    log.save_committed(Some(log_id(1, 6)))
        .await
        .expect("committed");
    assert!(log.segment_paths().len() >= 2);
    drop(log);

    let mut log = open(&dir, 200).await;
    assert_eq!(indexes(&mut log).await, (1..=9).collect::<Vec<_>>());
    assert_eq!(log.read_vote().await.expect("vote"), Some(vote));
    assert_eq!(
        log.read_committed().await.expect("committed"),
        Some(log_id(1, 6))
    );
    let e = log.try_get_log_entries(3..4).await.expect("read");
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].log_id, log_id(1, 3));
    assert!(matches!(
        &e[0].payload,
        EntryPayload::Normal(Command::RegisterNode { id: 3, .. })
    ));

    // A new leader overwrites the uncommitted suffix from 8 on.
    log.truncate(log_id(1, 8)).await.expect("truncate");
    log.blocking_append([entry(2, 8)]).await.expect("append");
    // Purge behind a snapshot at 5: whole old segments go.
    let before = log.segment_paths();
    log.purge(log_id(1, 5)).await.expect("purge");
    let after = log.segment_paths();
    assert!(after.len() < before.len(), "{before:?} -> {after:?}");
    for gone in before.iter().filter(|p| !after.contains(p)) {
        assert!(
            !gone.exists(),
            "{} was purged but is still there",
            gone.display()
        );
    }
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(state.last_log_id, Some(log_id(2, 8)));
    drop(log);

    let mut log = open(&dir, 200).await;
    assert_eq!(indexes(&mut log).await, vec![6, 7, 8]);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(1, 5)));
    assert_eq!(state.last_log_id, Some(log_id(2, 8)));
    let e8 = log.try_get_log_entries(8..=8).await.expect("read");
    assert_eq!(e8[0].log_id, log_id(2, 8));

    // Truncating everything, then purging beyond the end (a snapshot was installed).
    log.truncate(log_id(1, 6)).await.expect("truncate");
    assert!(indexes(&mut log).await.is_empty());
    log.purge(log_id(3, 20)).await.expect("purge");
    log.blocking_append([entry(3, 21)]).await.expect("append");
    drop(log);
    let mut log = open(&dir, 200).await;
    assert_eq!(indexes(&mut log).await, vec![21]);
    let state = log.get_log_state().await.expect("state");
    assert_eq!(state.last_purged_log_id, Some(log_id(3, 20)));
    assert_eq!(log.segment_paths().len(), 1);
}

#[tokio::test]
async fn a_torn_tail_is_cut_on_open() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("log");
    let mut log = open(&dir, 1 << 20).await;
    log.blocking_append((1..=3).map(|i| entry(1, i)))
        .await
        .expect("append");
    let segment = log.segment_paths().pop().expect("a segment");
    let good_len = fs::metadata(&segment).expect("stat").len();
    drop(log);

    // A crash in the middle of appending entry 4: its header and half its payload.
    let mut frame = Vec::new();
    let payload = serde_json::to_vec(&entry(1, 4)).expect("encode");
    frame.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32c::crc32c(&payload).to_le_bytes());
    frame.extend_from_slice(&payload[..payload.len() / 2]);
    OpenOptions::new()
        .append(true)
        .open(&segment)
        .and_then(|mut f| f.write_all(&frame))
        .expect("tear");

    let mut log = open(&dir, 1 << 20).await;
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
    assert_eq!(fs::metadata(&segment).expect("stat").len(), good_len);
    log.blocking_append([entry(1, 4)]).await.expect("append");
    drop(log);

    // A whole frame whose bytes were not all written (CRC mismatch) is cut as well.
    let len = fs::metadata(&segment).expect("stat").len();
    let mut bytes = fs::read(&segment).expect("read");
    let last = bytes.len() - 3;
    bytes[last] ^= 0xff;
    fs::write(&segment, &bytes).expect("write");
    let mut log = open(&dir, 1 << 20).await;
    assert_eq!(indexes(&mut log).await, vec![1, 2, 3]);
    assert!(fs::metadata(&segment).expect("stat").len() < len);
    assert_eq!(
        log.get_log_state().await.expect("state").last_log_id,
        Some(log_id(1, 3))
    );
}

#[tokio::test]
async fn corruption_before_the_tail_fails_the_open() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("log");
    let mut log = open(&dir, 100).await;
    for i in 1..=4 {
        log.blocking_append([entry(1, i)]).await.expect("append");
    }
    let segments = log.segment_paths();
    assert!(segments.len() >= 2, "{segments:?}");
    drop(log);
    let mut bytes = fs::read(&segments[0]).expect("read");
    bytes[12] ^= 0xff;
    fs::write(&segments[0], &bytes).expect("write");
    let err = LogStore::open_with(dir, 100)
        .await
        .expect_err("a corrupt old segment must not be silently cut");
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[tokio::test]
async fn the_state_machine_is_rebuilt_from_its_snapshot() {
    let tmp = TempDir::new().expect("tempdir");
    let dir = tmp.path().join("snapshot");
    let mut sm = StateMachineStore::open(dir.clone()).await.expect("open");
    let mut state = sm.subscribe();
    let members = Entry {
        log_id: log_id(1, 1),
        payload: EntryPayload::Membership(Membership::new(
            vec![[1u64].into_iter().collect()],
            None,
        )),
    };
    let results = sm
        .apply([members, entry(1, 2), entry(1, 3)])
        .await
        .expect("apply");
    assert_eq!(results, vec![CommandResult::Done; 3]);
    assert!(state.has_changed().expect("watch"));
    assert_eq!(state.borrow_and_update().nodes.len(), 2);

    let snapshot = sm
        .get_snapshot_builder()
        .await
        .build_snapshot()
        .await
        .expect("snapshot");
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(1, 3)));
    // Applied after the snapshot: not in it (the log holds it).
    sm.apply([entry(1, 4)]).await.expect("apply");
    drop(sm);

    let mut sm = StateMachineStore::open(dir.clone()).await.expect("reopen");
    let (applied, membership) = sm.applied_state().await.expect("applied");
    assert_eq!(applied, Some(log_id(1, 3)));
    assert_eq!(membership.log_id(), &Some(log_id(1, 1)));
    assert_eq!(sm.subscribe().borrow().nodes.len(), 2);
    let current = sm
        .get_current_snapshot()
        .await
        .expect("read")
        .expect("a snapshot");
    assert_eq!(current.meta, snapshot.meta);

    // Installing it elsewhere gives the same state; an older snapshot never replaces it.
    let other = TempDir::new().expect("tempdir");
    let mut follower = StateMachineStore::open(other.path().to_path_buf())
        .await
        .expect("open");
    // A snapshot build that started before the install finishes after it.
    let mut stale = follower.get_snapshot_builder().await;
    let mut data = follower.begin_receiving_snapshot().await.expect("begin");
    *data = *current.snapshot;
    follower
        .install_snapshot(&current.meta, data)
        .await
        .expect("install");
    assert_eq!(follower.subscribe().borrow().nodes.len(), 2);
    assert_eq!(
        follower.applied_state().await.expect("applied"),
        (
            Some(log_id(1, 3)),
            StoredMembership::new(
                Some(log_id(1, 1)),
                Membership::new(vec![[1u64].into_iter().collect()], None)
            )
        )
    );
    stale.build_snapshot().await.expect("stale build");
    drop(follower);
    let mut reopened = StateMachineStore::open(other.path().to_path_buf())
        .await
        .expect("reopen");
    assert_eq!(reopened.subscribe().borrow().nodes.len(), 2);
    assert_eq!(
        reopened.applied_state().await.expect("applied").0,
        Some(log_id(1, 3))
    );
}
