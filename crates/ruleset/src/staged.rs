//! Building our tables from nothing in stages of whole Services.
//!
//! The kernel's cost of one batch grows faster than the batch (`docs/benchmarks.md` §1): a
//! first sync of 10 000 Services in one batch costs about twice what the same operations cost
//! in batches of about 1 000 Services (with the earlier per-Service anonymous maps, three
//! times). So a sync that starts from empty tables (a node's first start, or after `cleanup`)
//! is cut into stages, each applied atomically:
//!
//! 1. the tables, base chains, shared chains, sets and maps, and the elements that belong to no
//!    Service (node addresses, hairpin pairs);
//! 2. the Services in `namespace/name` order, about `per_stage` at a time, each with every
//!    operation that names it (its chains and rules, affinity sets, and its elements in the
//!    shared maps): a Service is either wholly programmed or absent;
//! 3. with the last Services, the `cluster-ips` elements (which name no Service), so that no
//!    ClusterIP is rejected as "invalid port" before its Service's entries are in.
//!
//! Every stage is valid on top of the ones before it (a Service's objects only reference its
//! own objects and the shared ones of stage 1), and together they are exactly the one-batch
//! transaction, in an order the planner would accept. Any sync against existing tables stays
//! one transaction.

use crate::desired::fixed::CLUSTER_IPS;
use crate::transaction::{Op, Transaction};
use crate::types::TableId;
use std::collections::{BTreeMap, BTreeSet};

/// Splits `txn`, a transaction that builds our tables from nothing ([`plan`](crate::plan) from
/// an empty ruleset), into stages of about `per_stage` Services each, as the module describes.
/// Returns the transaction whole (one stage) when it has no more Services than `per_stage`,
/// when `per_stage` is 0, or when it does not start from nothing (it changes a table it does
/// not create, or flushes or deletes anything).
pub fn split_by_service(txn: Transaction, per_stage: usize) -> Vec<Transaction> {
    // From nothing: only additions, all in tables the transaction itself creates.
    let created: BTreeSet<&TableId> = txn
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::AddTable { table, .. } => Some(table),
            _ => None,
        })
        .collect();
    let from_nothing = txn.ops.iter().all(|op| match op {
        Op::AddTable { .. } => true,
        Op::AddChain { table, .. }
        | Op::AddRule { table, .. }
        | Op::AddSet { table, .. }
        | Op::AddElement { table, .. } => created.contains(table),
        _ => false,
    });
    if per_stage == 0 || !from_nothing {
        return vec![txn];
    }
    let services = txn.services();
    let stages = services.len().div_ceil(per_stage);
    if stages <= 1 {
        return vec![txn];
    }
    let stage_of: BTreeMap<String, usize> = services
        .into_iter()
        .enumerate()
        .map(|(i, service)| (service, 1 + i / per_stage))
        .collect();
    let last = stages;
    let mut out: Vec<Vec<Op>> = vec![Vec::new(); stages + 1];
    for op in txn.ops {
        let stage = match op.service() {
            Some(service) => stage_of.get(&service).copied().unwrap_or(0),
            None if matches!(&op, Op::AddElement { set, .. } if set == CLUSTER_IPS) => last,
            None => 0,
        };
        out[stage].push(op);
    }
    out.into_iter()
        .filter(|ops| !ops.is_empty())
        .map(|ops| Transaction { ops })
        .collect()
}
