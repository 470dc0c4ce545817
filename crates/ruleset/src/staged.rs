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
use crate::plan::plan;
use crate::transaction::{owner_of_element, owner_of_name, Transaction};
use crate::types::{ElemKey, Ruleset, Set, Table, TableId};
use std::collections::{BTreeSet, HashMap};

/// The stages that build `desired` from empty tables, planned one at a time so that only one
/// stage's operations exist at once (the whole transaction copies every element of the
/// ruleset). They are exactly `split_by_service` (the tests' reference) of [`plan`] from an
/// empty ruleset, in order (tested as a property).
pub struct StagesFromEmpty<'a> {
    desired: &'a Ruleset,
    /// What stage 1 builds: the tables and everything that belongs to no Service.
    base: Ruleset,
    /// What each later stage adds to `base`: its Services' objects, and with the last the
    /// `cluster-ips` elements.
    later: Vec<Vec<Item<'a>>>,
    /// The next stage (0: the first).
    next: usize,
}

/// One object of `desired` that a later stage adds.
enum Item<'a> {
    /// A per-service chain.
    Chain(&'a TableId, &'a str),
    /// A per-service set.
    Set(&'a TableId, &'a str),
    /// An element of a shared set.
    Element(&'a TableId, &'a str, &'a ElemKey),
}

/// The Services that own something in `desired`, sorted (as [`Transaction::services`] of the
/// transaction that builds it).
fn services_of(desired: &Ruleset) -> BTreeSet<&str> {
    let mut out = BTreeSet::new();
    for table in desired.tables.values() {
        out.extend(table.chains.keys().filter_map(|n| owner_of_name(n)));
        for (name, set) in &table.sets {
            out.extend(owner_of_name(name));
            out.extend(
                set.elements
                    .values()
                    .filter_map(|v| owner_of_element(name, v)),
            );
        }
    }
    out
}

/// The stages that build `desired` from empty tables, about `per_stage` Services each (one
/// stage, the whole transaction, when there are no more Services than that or `per_stage` is
/// 0). Use it when none of our tables exist.
pub fn stages_from_empty(desired: &Ruleset, per_stage: usize) -> StagesFromEmpty<'_> {
    let services = services_of(desired);
    let mut stages = StagesFromEmpty {
        desired,
        base: Ruleset::default(),
        later: Vec::new(),
        next: 0,
    };
    if per_stage == 0 || services.len() <= per_stage {
        return stages;
    }
    let stage_of: HashMap<&str, usize> = services
        .iter()
        .enumerate()
        .map(|(i, svc)| (*svc, i / per_stage))
        .collect();
    let last = services.len().div_ceil(per_stage) - 1;
    let mut later: Vec<Vec<Item<'_>>> = (0..=last).map(|_| Vec::new()).collect();
    // Whose stage an owned object goes to; `None` for stage 1.
    let stage = |owner: Option<&str>| owner.and_then(|o| stage_of.get(o).copied());
    for (id, table) in &desired.tables {
        let mut t = Table {
            comment: table.comment.clone(),
            ..Table::default()
        };
        for (name, chain) in &table.chains {
            match stage(owner_of_name(name)) {
                Some(k) => later[k].push(Item::Chain(id, name)),
                None => {
                    t.chains.insert(name.clone(), chain.clone());
                }
            }
        }
        for (name, set) in &table.sets {
            if name.contains('/') {
                match stage(owner_of_name(name)) {
                    Some(k) => later[k].push(Item::Set(id, name)),
                    None => {
                        t.sets.insert(name.clone(), set.clone());
                    }
                }
                continue;
            }
            let mut base = Set {
                spec: set.spec.clone(),
                ..Set::default()
            };
            for (key, value) in &set.elements {
                let k = if name == CLUSTER_IPS {
                    Some(last)
                } else {
                    stage(owner_of_element(name, value))
                };
                match k {
                    Some(k) => later[k].push(Item::Element(id, name, key)),
                    None => {
                        base.elements.insert(key.clone(), value.clone());
                    }
                }
            }
            t.sets.insert(name.clone(), base);
        }
        stages.base.tables.insert(id.clone(), t);
    }
    stages.later = later;
    stages
}

impl StagesFromEmpty<'_> {
    /// How many stages there are in all.
    pub fn stages(&self) -> usize {
        1 + self.later.len()
    }

    /// Stage 1 and the objects of later stage `k`.
    fn part(&self, k: usize) -> Ruleset {
        let mut part = self.base.clone();
        for item in &self.later[k] {
            let (id, from) = match item {
                Item::Chain(id, _) | Item::Set(id, _) | Item::Element(id, _, _) => {
                    (*id, &self.desired.tables[*id])
                }
            };
            let Some(to) = part.tables.get_mut(id) else {
                continue;
            };
            match item {
                Item::Chain(_, name) => {
                    to.chains
                        .insert((*name).to_owned(), from.chains[*name].clone());
                }
                Item::Set(_, name) => {
                    to.sets.insert((*name).to_owned(), from.sets[*name].clone());
                }
                Item::Element(_, set, key) => {
                    if let Some(s) = to.sets.get_mut(*set) {
                        let value = from.sets[*set].elements[*key].clone();
                        s.elements.insert((*key).clone(), value);
                    }
                }
            }
        }
        part
    }
}

impl Iterator for StagesFromEmpty<'_> {
    type Item = Transaction;

    fn next(&mut self) -> Option<Transaction> {
        let i = self.next;
        if i >= self.stages() {
            return None;
        }
        self.next += 1;
        Some(match i.checked_sub(1) {
            None if self.later.is_empty() => plan(&Ruleset::default(), self.desired),
            None => plan(&Ruleset::default(), &self.base),
            Some(k) => plan(&self.base, &self.part(k)),
        })
    }
}

/// Splits `txn`, a transaction that builds our tables from nothing ([`plan`](crate::plan) from
/// an empty ruleset), into stages of about `per_stage` Services each, as the module describes.
/// The reference [`stages_from_empty`] is tested against: the same stages, cut from the whole
/// transaction (which the agent never builds: it holds a copy of every element).
/// Returns the transaction whole (one stage) when it has no more Services than `per_stage`,
/// when `per_stage` is 0, or when it does not start from nothing (it changes a table it does
/// not create, or flushes or deletes anything).
#[cfg(test)]
pub fn split_by_service(txn: Transaction, per_stage: usize) -> Vec<Transaction> {
    use crate::transaction::Op;
    use std::collections::BTreeMap;
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
