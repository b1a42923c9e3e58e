//! Rack-aware replica placement: pure functions over the placeable nodes.
//!
//! A node may register a rack (`cluster.rack`: a rack, an availability zone, any failure
//! domain). Replicas of one partition go to distinct racks first, so losing a rack loses at
//! most one replica of a partition while there are at least as many racks as replicas; with
//! fewer racks every rack gets one before any gets two. Nodes are ordered so that
//! consecutive positions alternate between racks (each rack's nodes in id order, racks taken
//! in turn, as Kafka does), and a partition takes the nodes from its starting position on,
//! skipping a node whose rack it already has while an unused rack remains. The starting
//! position moves by one per partition, which spreads leaders (first replicas) over every
//! node. Without racks the order is the node ids and the walk takes consecutive nodes: plain
//! round-robin.

use std::collections::{BTreeMap, BTreeSet};

use pyralog_types::NodeId;

/// Longest rack name.
pub const MAX_RACK_BYTES: usize = 64;

/// A rack name must be short, printable and without spaces (it shows up in tables and
/// metrics).
pub fn validate_rack(rack: &str) -> Result<(), String> {
    let ok = !rack.is_empty()
        && rack.len() <= MAX_RACK_BYTES
        && rack
            .chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "rack {rack:?} must be 1..={MAX_RACK_BYTES} printable ASCII characters without spaces or quotes"
        ))
    }
}

/// The nodes in placement order: racks alternating (each rack's nodes in id order; nodes
/// without a rack form a group of their own), or plain id order when no node has a rack.
pub fn rack_alternating<'a>(
    nodes: impl IntoIterator<Item = (NodeId, Option<&'a str>)>,
) -> Vec<(NodeId, Option<String>)> {
    let mut by_rack: BTreeMap<Option<&str>, BTreeSet<NodeId>> = BTreeMap::new();
    for (id, rack) in nodes {
        by_rack.entry(rack).or_default().insert(id);
    }
    if by_rack.keys().all(Option::is_none) {
        return by_rack
            .into_values()
            .flatten()
            .map(|id| (id, None))
            .collect();
    }
    let mut groups: Vec<(Option<&str>, Vec<NodeId>)> = by_rack
        .into_iter()
        .map(|(rack, ids)| (rack, ids.into_iter().collect()))
        .collect();
    let longest = groups.iter().map(|(_, ids)| ids.len()).max().unwrap_or(0);
    let mut order = Vec::new();
    for round in 0..longest {
        for (rack, ids) in &mut groups {
            if let Some(id) = ids.get(round) {
                order.push((*id, rack.map(str::to_owned)));
            }
        }
    }
    order
}

/// The `rf` replicas of a partition starting at position `start` (modulo the node count) of
/// `order`: new racks first, then any node not yet taken. Fewer than `rf` only when there
/// are fewer nodes. A node without a rack counts as a rack of its own.
pub fn replicas(order: &[(NodeId, Option<String>)], start: u64, rf: usize) -> Vec<NodeId> {
    let n = order.len();
    if n == 0 {
        return Vec::new();
    }
    let first = usize::try_from(start % n as u64).unwrap_or(0);
    let walk = || (0..n).map(|k| &order[(first + k) % n]);
    let mut chosen: Vec<NodeId> = Vec::with_capacity(rf);
    let mut racks: BTreeSet<&str> = BTreeSet::new();
    for (id, rack) in walk() {
        if chosen.len() == rf {
            return chosen;
        }
        match rack {
            Some(r) if racks.contains(r.as_str()) => {}
            Some(r) => {
                racks.insert(r);
                chosen.push(*id);
            }
            None => chosen.push(*id),
        }
    }
    for (id, _) in walk() {
        if chosen.len() == rf {
            break;
        }
        if !chosen.contains(id) {
            chosen.push(*id);
        }
    }
    chosen
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn order(nodes: &[(NodeId, Option<&str>)]) -> Vec<(NodeId, Option<String>)> {
        rack_alternating(nodes.iter().copied())
    }

    #[test]
    fn without_racks_placement_is_plain_round_robin() {
        let o = order(&[(3, None), (1, None), (2, None), (4, None)]);
        assert_eq!(
            o.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1, 2, 3, 4]
        );
        for start in 0..8u64 {
            let want: Vec<NodeId> = (0..3).map(|i| (start + i) % 4 + 1).collect();
            assert_eq!(replicas(&o, start, 3), want, "start {start}");
        }
        assert_eq!(replicas(&o, 0, 9).len(), 4, "never more than the nodes");
        assert!(replicas(&[], 0, 3).is_empty());
    }

    #[test]
    fn racks_alternate_and_each_partition_spans_them() {
        let o = order(&[
            (1, Some("a")),
            (2, Some("a")),
            (3, Some("b")),
            (4, Some("b")),
            (5, Some("c")),
        ]);
        assert_eq!(
            o.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
            vec![1, 3, 5, 2, 4]
        );
        // Two racks fit in any window of RF 2; RF 3 takes all three racks even when the
        // walk meets rack a twice first (start 3: nodes 2, 4, then 1 is rack a again).
        assert_eq!(replicas(&o, 3, 3), vec![2, 4, 5]);
        // RF 4 over 3 racks: every rack once, then the next node.
        assert_eq!(replicas(&o, 0, 4), vec![1, 3, 5, 2]);
    }

    #[test]
    fn rack_names_are_short_and_printable() {
        assert!(validate_rack("eu-west-1a").is_ok());
        for bad in ["", "two words", "tab\t", "quote\"", &"x".repeat(65), "é"] {
            assert!(validate_rack(bad).is_err(), "{bad:?}");
        }
    }

    proptest! {
        /// Every partition's replicas are distinct nodes and span as many racks as they can:
        /// min(rf, racks).
        #[test]
        fn replicas_use_as_many_racks_as_they_can(
            racks in proptest::collection::vec(0u8..4, 1..12),
            rf in 1usize..5,
            start in 0u64..100,
        ) {
            let names = ["a", "b", "c", "d"];
            let nodes: Vec<(NodeId, Option<&str>)> = racks
                .iter()
                .enumerate()
                .map(|(i, r)| (i as NodeId + 1, Some(names[*r as usize])))
                .collect();
            let o = order(&nodes);
            let chosen = replicas(&o, start, rf);
            prop_assert_eq!(chosen.len(), rf.min(nodes.len()));
            let distinct: BTreeSet<NodeId> = chosen.iter().copied().collect();
            prop_assert_eq!(distinct.len(), chosen.len());
            let rack_of = |id: NodeId| nodes.iter().find(|(n, _)| *n == id).and_then(|(_, r)| *r);
            let spanned: BTreeSet<&str> = chosen.iter().filter_map(|id| rack_of(*id)).collect();
            let available: BTreeSet<&str> = nodes.iter().filter_map(|(_, r)| *r).collect();
            prop_assert_eq!(spanned.len(), rf.min(available.len()));
        }
    }
}
