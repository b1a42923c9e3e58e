//! Building inclusion and consistency proofs from the bucket.
//!
//! A proof is built against a checkpoint already in the bucket and carries it, so whoever
//! checks it needs only the proof and the public key they trust
//! (`pyralog_ledger::InclusionProof::verify`). Building checks that the manifest's objects
//! still have the checkpoint's root: a proof is never made over a history the checkpoint
//! does not vouch for.

use std::sync::Arc;

use object_store::{ObjectStore, ObjectStoreExt};
use pyralog_cold_tier::{for_each_ledger_row, Layout, ManifestStore};
use pyralog_ledger::{
    canonical_record, leaf_hash, merkle, ConsistencyProof, Hash, InclusionProof, ObjectSummary,
    SignedCheckpoint,
};
use pyralog_types::{LogId, PartitionId, Record};

use crate::checkpoints::CheckpointStore;
use crate::error::AuditError;
use crate::tree::{archive_leaves, summaries};
use crate::verify::log_config;

/// The proof that the record at `offset` of `log`/`partition` is in the archive, against
/// the checkpoint of `tree_size` objects (default: the newest checkpoint covering `offset`).
/// Returns the record too.
pub async fn inclusion_proof(
    store: Arc<dyn ObjectStore>,
    layout: &Layout,
    log: &LogId,
    partition: PartitionId,
    offset: u64,
    tree_size: Option<u64>,
) -> Result<(InclusionProof, Record), AuditError> {
    let (objects, checkpoints) = partition_state(&store, layout, log, partition).await?;
    let checkpoint = checkpoints
        .into_iter()
        .filter(|c| match tree_size {
            Some(n) => c.checkpoint.tree_size == n,
            None => c.checkpoint.last_offset >= offset,
        })
        .max_by_key(|c| c.checkpoint.tree_size)
        .ok_or_else(|| {
            AuditError::Unprovable(match tree_size {
                Some(n) => format!("no checkpoint of {n} objects for {log}/{partition}"),
                None => format!(
                    "no checkpoint of {log}/{partition} covers offset {offset} yet (it is not \
                     archived, or its checkpoint is not written)"
                ),
            })
        })?;
    let leaves = vouched_leaves(&objects, &checkpoint)?;
    let object_index = objects[..leaves.len()]
        .iter()
        .position(|o| o.base_offset <= offset && offset <= o.last_offset)
        .ok_or_else(|| {
            AuditError::Unprovable(format!(
                "offset {offset} is not covered by the checkpoint of {} objects",
                leaves.len()
            ))
        })?;
    let object = objects[object_index].clone();
    let manifest = ManifestStore::new(store.clone(), layout.clone())
        .load(log, partition)
        .await?
        .ok_or_else(|| AuditError::NotFound(format!("{log}/{partition} has no manifest")))?
        .0;
    let segment = manifest.segments.get(object_index).ok_or_else(|| {
        AuditError::Unprovable("the manifest changed while the proof was built".into())
    })?;
    let bytes = store
        .get(&segment.path())
        .await
        .map_err(|e| AuditError::store("get", &segment.key, e))?
        .bytes()
        .await
        .map_err(|e| AuditError::store("get", &segment.key, e))?;
    let (record_leaves, found) = tokio::task::spawn_blocking(move || {
        let mut record_leaves = Vec::new();
        let mut found = None;
        let mut buf = Vec::new();
        for_each_ledger_row(bytes, |record, _| {
            buf.clear();
            canonical_record(&record, &mut buf);
            if record.offset.0 == offset {
                found = Some((record_leaves.len() as u64, record));
            }
            record_leaves.push(leaf_hash(&buf));
            Ok(())
        })?;
        Ok::<_, AuditError>((record_leaves, found))
    })
    .await
    .map_err(|e| AuditError::Unprovable(format!("proof task failed: {e}")))??;
    let (index_in_object, record) = found.ok_or_else(|| {
        AuditError::Unprovable(format!(
            "{} does not hold offset {offset}: run `pyralog ledger verify`",
            segment.key
        ))
    })?;
    if merkle::root(&record_leaves) != object.merkle_root {
        return Err(AuditError::Unprovable(format!(
            "{} does not have its sealed Merkle root: run `pyralog ledger verify`",
            segment.key
        )));
    }
    let object_path = merkle::inclusion_proof(&record_leaves, index_in_object)?;
    let tree_path = merkle::inclusion_proof(&leaves, object_index as u64)?;
    let proof = InclusionProof {
        log: log.to_string(),
        partition,
        offset,
        record_leaf: record_leaves[index_in_object as usize],
        index_in_object,
        object,
        object_path,
        object_index: object_index as u64,
        tree_path,
        checkpoint,
    };
    Ok((proof, record))
}

/// The proof that the checkpoint of `new_size` objects extends the one of `old_size`.
pub async fn consistency_proof(
    store: Arc<dyn ObjectStore>,
    layout: &Layout,
    log: &LogId,
    partition: PartitionId,
    old_size: u64,
    new_size: u64,
) -> Result<ConsistencyProof, AuditError> {
    let (objects, checkpoints) = partition_state(&store, layout, log, partition).await?;
    let find = |n: u64| {
        checkpoints
            .iter()
            .find(|c| c.checkpoint.tree_size == n)
            .cloned()
            .ok_or_else(|| {
                AuditError::Unprovable(format!(
                    "no checkpoint of {n} objects for {log}/{partition}"
                ))
            })
    };
    let (old, new) = (find(old_size)?, find(new_size)?);
    if old_size > new_size {
        return Err(AuditError::Unprovable(format!(
            "the old checkpoint ({old_size} objects) must not be larger than the new one \
             ({new_size})"
        )));
    }
    let leaves = vouched_leaves(&objects, &new)?;
    let path = merkle::consistency_proof(&leaves, old_size)?;
    Ok(ConsistencyProof { old, new, path })
}

/// The partition's object summaries (manifest) and its parseable checkpoints.
async fn partition_state(
    store: &Arc<dyn ObjectStore>,
    layout: &Layout,
    log: &LogId,
    partition: PartitionId,
) -> Result<(Vec<ObjectSummary>, Vec<SignedCheckpoint>), AuditError> {
    let config = log_config(store, layout, log).await?;
    if partition >= config.partition_count {
        return Err(AuditError::NotFound(format!(
            "log {log} has {} partitions; there is no partition {partition}",
            config.partition_count
        )));
    }
    let manifest = ManifestStore::new(store.clone(), layout.clone())
        .load(log, partition)
        .await?
        .map(|(m, _)| m);
    let objects = match &manifest {
        Some(m) => summaries(m)?,
        None => Vec::new(),
    };
    let checkpoints = CheckpointStore::new(store.clone(), layout)
        .list(log, partition)
        .await?
        .into_iter()
        .filter_map(|(_, c)| c.ok())
        .collect();
    Ok((objects, checkpoints))
}

/// The archive tree's leaves up to the checkpoint's size, if they have its root.
fn vouched_leaves(
    objects: &[ObjectSummary],
    checkpoint: &SignedCheckpoint,
) -> Result<Vec<Hash>, AuditError> {
    let cp = &checkpoint.checkpoint;
    let size = usize::try_from(cp.tree_size).unwrap_or(usize::MAX);
    if size == 0 || size > objects.len() {
        return Err(AuditError::Unprovable(format!(
            "the checkpoint covers {} objects, the manifest has {}: run `pyralog ledger verify`",
            cp.tree_size,
            objects.len()
        )));
    }
    let leaves = archive_leaves(&objects[..size]);
    if merkle::root(&leaves) != cp.root {
        return Err(AuditError::Unprovable(
            "the manifest's objects do not have the checkpoint's root: run `pyralog ledger \
             verify`"
                .into(),
        ));
    }
    Ok(leaves)
}
