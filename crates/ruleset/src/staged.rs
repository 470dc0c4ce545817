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
use crate::transaction::{owner_of_element, owner_of_name, Op, Transaction};
use crate::types::{Chain, ElemKey, ElemValue, Ruleset, Set, Table, TableId};
use std::collections::{BTreeSet, HashMap};

/// The stages that build `desired` from empty tables, planned one at a time so that only one
/// stage's operations exist at once (the whole transaction copies every element of the
/// ruleset). They are exactly `split_by_service` (the tests' reference) of [`plan`] from an
/// empty ruleset, in order (tested as a property).
///
/// Stage 1 is [`plan`] from an empty ruleset to what it builds. A later stage's operations are
/// made directly from its objects in `desired`: they are what [`plan`] from stage 1's ruleset to
/// that ruleset with the stage's objects added would give (additions only), without building
/// either ruleset.
pub struct StagesFromEmpty<'a> {
    desired: &'a Ruleset,
    /// What stage 1 builds: the tables and everything that belongs to no Service. Emptied
    /// once stage 1 is planned.
    base: Ruleset,
    /// What each later stage adds to `base`: its Services' objects, and with the last the
    /// `cluster-ips` elements; emptied once the stage is planned. In `desired`'s order, which
    /// within a table is the order [`plan`] adds them in: table by table; in a table, the
    /// chains by name, then the sets by name, each a whole per-service set or the stage's
    /// elements of a shared set by key.
    later: Vec<Vec<Item<'a>>>,
    /// For each shared set with elements in a later stage, the stage of each of its elements in
    /// key order ([`BASE`] for stage 1): four bytes an element, where an index of the elements
    /// themselves took forty (the largest part of the first sync's peak).
    marks: Vec<Vec<u32>>,
    /// The next stage (0: the first).
    next: usize,
}

/// The mark of an element that stage 1 adds.
const BASE: u32 = u32::MAX;

/// One object of `desired` that a later stage adds, with the table it is in.
enum Item<'a> {
    /// A per-service chain, by name.
    Chain(&'a TableId, &'a String, &'a Chain),
    /// A per-service set, by name, with its elements.
    Set(&'a TableId, &'a String, &'a Set),
    /// The elements of a shared set (which stage 1 creates) that stage `stage` (0: the first
    /// later one) adds: those whose entry in `marks[marks]` is `stage`.
    Elements {
        table: &'a TableId,
        name: &'a String,
        set: &'a Set,
        marks: u32,
        stage: u32,
    },
}

impl<'a> Item<'a> {
    /// The table the object is in.
    fn table(&self) -> &'a TableId {
        match self {
            Item::Chain(id, ..) | Item::Set(id, ..) => id,
            Item::Elements { table, .. } => table,
        }
    }

    /// How many operations adding it takes (`marks`: [`StagesFromEmpty::marks`]).
    fn ops(&self, marks: &[Vec<u32>]) -> usize {
        match self {
            Item::Chain(_, _, chain) => 1 + chain.rules.len(),
            Item::Set(_, _, set) => 1 + set.elements.len(),
            Item::Elements {
                marks: m, stage, ..
            } => marks[*m as usize].iter().filter(|k| *k == stage).count(),
        }
    }
}

/// The elements of `set` whose entry in `marks` (one per element, in key order) is `stage`.
fn marked<'a>(
    set: &'a Set,
    marks: &'a [u32],
    stage: u32,
) -> impl Iterator<Item = (&'a ElemKey, &'a ElemValue)> + 'a {
    set.elements
        .iter()
        .zip(marks)
        .filter(move |(_, k)| **k == stage)
        .map(|(element, _)| element)
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
        marks: Vec::new(),
        next: 0,
    };
    if per_stage == 0 || services.len() <= per_stage {
        return stages;
    }
    let stage_of: HashMap<&str, u32> = services
        .iter()
        .enumerate()
        .map(|(i, svc)| (*svc, (i / per_stage) as u32))
        .collect();
    let last = (services.len().div_ceil(per_stage) - 1) as u32;
    let mut later: Vec<Vec<Item<'_>>> = (0..=last).map(|_| Vec::new()).collect();
    // Whose stage an owned object goes to; `None` for stage 1.
    let stage = |owner: Option<&str>| owner.and_then(|o| stage_of.get(o).copied());
    // The order of these loops is the order of each stage's items, which `later` documents.
    for (id, table) in &desired.tables {
        let mut t = Table {
            comment: table.comment.clone(),
            ..Table::default()
        };
        for (name, chain) in &table.chains {
            match stage(owner_of_name(name)) {
                Some(k) => later[k as usize].push(Item::Chain(id, name, chain)),
                None => {
                    t.chains.insert(name.clone(), chain.clone());
                }
            }
        }
        for (name, set) in &table.sets {
            if name.contains('/') {
                match stage(owner_of_name(name)) {
                    Some(k) => later[k as usize].push(Item::Set(id, name, set)),
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
            let mut marks = Vec::with_capacity(set.elements.len());
            let mut in_stage = vec![false; later.len()];
            for (key, value) in set.elements.iter() {
                let k = if name == CLUSTER_IPS {
                    Some(last)
                } else {
                    stage(owner_of_element(name, value))
                };
                match k {
                    Some(k) => {
                        in_stage[k as usize] = true;
                        marks.push(k);
                    }
                    None => {
                        marks.push(BASE);
                        base.elements_mut().insert(key.clone(), value.clone());
                    }
                }
            }
            if in_stage.contains(&true) {
                let index = stages.marks.len() as u32;
                stages.marks.push(marks);
                for (k, _) in in_stage.iter().enumerate().filter(|(_, seen)| **seen) {
                    later[k].push(Item::Elements {
                        table: id,
                        name,
                        set,
                        marks: index,
                        stage: k as u32,
                    });
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
}

/// The operations of a later stage that adds `items` (in the order `later` documents) on top of
/// stage 1: exactly what [`plan`] gives from stage 1's ruleset to that ruleset with the items
/// added. Every table exists and nothing changes or goes, so per table that is its steps 3 to 5
/// for additions only: the new sets by name, the new chains by name, the elements set by set
/// in name order (a new set's with the shared sets' ones) and by key, then the new chains'
/// rules by chain name.
fn later_stage(items: &[Item<'_>], marks: &[Vec<u32>]) -> Transaction {
    let mut ops = Vec::with_capacity(items.iter().map(|item| item.ops(marks)).sum());
    for run in items.chunk_by(|a, b| a.table() == b.table()) {
        let Some(id) = run.first().map(Item::table) else {
            continue;
        };
        for item in run {
            if let Item::Set(_, name, set) = item {
                ops.push(Op::AddSet {
                    table: id.clone(),
                    set: (*name).clone(),
                    spec: set.spec.clone(),
                });
            }
        }
        for item in run {
            if let Item::Chain(_, name, chain) = item {
                ops.push(Op::AddChain {
                    table: id.clone(),
                    chain: (*name).clone(),
                    base: chain.base,
                });
            }
        }
        let element = |set: &String, key: &ElemKey, value: &ElemValue| Op::AddElement {
            table: id.clone(),
            set: set.clone(),
            key: key.clone(),
            value: value.clone(),
        };
        for item in run {
            match item {
                Item::Set(_, name, set) => {
                    ops.extend(set.elements.iter().map(|(k, v)| element(name, k, v)));
                }
                Item::Elements {
                    name,
                    set,
                    marks: m,
                    stage,
                    ..
                } => ops.extend(
                    marked(set, &marks[*m as usize], *stage)
                        .map(|(key, value)| element(name, key, value)),
                ),
                Item::Chain(..) => {}
            }
        }
        for item in run {
            if let Item::Chain(_, name, chain) = item {
                ops.extend(chain.rules.iter().map(|rule| Op::AddRule {
                    table: id.clone(),
                    chain: (*name).clone(),
                    rule: rule.clone(),
                }));
            }
        }
    }
    Transaction { ops }
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
            // Stage 1's ruleset is needed only to plan it.
            None => plan(&Ruleset::default(), &std::mem::take(&mut self.base)),
            // Its objects are not needed again either.
            Some(k) => later_stage(&std::mem::take(&mut self.later[k]), &self.marks),
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

#[cfg(test)]
mod tests {
    //! Later stages against the planner itself, on synthetic rulesets that hold what `desired`
    //! does not make (the property over `desired` is in `tests::plan_props`): per-service sets
    //! with elements, per-service base chains, several tables, shared elements that name no
    //! Service, and per-service names that sort between the shared ones.
    use super::*;
    use crate::rule::{Expr, Rule};
    use crate::types::{BaseChain, ChainType, Family, Hook, KeyPart, KeyType, SetSpec};
    use proptest::prelude::*;

    /// The Services of the synthetic rulesets.
    const OWNERS: [&str; 5] = ["default/a", "default/b", "kube-system/c", "x/d", "x/e"];

    /// Stage 1's ruleset with `items` added: what later stages were planned against before
    /// they were made directly.
    fn with_items(base: &Ruleset, items: &[Item<'_>], marks: &[Vec<u32>]) -> Ruleset {
        let mut part = base.clone();
        for item in items {
            let to = part
                .tables
                .get_mut(item.table())
                .expect("stage 1 has every table");
            match item {
                Item::Chain(_, name, chain) => {
                    to.chains.insert((*name).clone(), (*chain).clone());
                }
                Item::Set(_, name, set) => {
                    to.sets.insert((*name).clone(), (*set).clone());
                }
                Item::Elements {
                    name,
                    set: from,
                    marks: m,
                    stage,
                    ..
                } => {
                    let set = to
                        .sets
                        .get_mut(*name)
                        .expect("stage 1 has every shared set");
                    for (key, value) in marked(from, &marks[*m as usize], *stage) {
                        set.elements_mut().insert(key.clone(), value.clone());
                    }
                }
            }
        }
        part
    }

    fn per_service_name() -> impl Strategy<Value = String> {
        (
            prop::sample::select(vec!["aff", "ep", "svc", "zz"]),
            prop::sample::select(OWNERS.to_vec()),
            80u16..82,
        )
            .prop_map(|(prefix, owner, port)| format!("{prefix}-H4SH-{owner}/tcp/{port}"))
    }

    fn chain() -> impl Strategy<Value = Chain> {
        let base = (0i32..2).prop_map(|priority| BaseChain {
            kind: ChainType::Nat,
            hook: Hook::Output,
            priority,
        });
        (
            prop::option::of(base),
            prop::collection::vec(
                (0u32..8).prop_map(|m| Rule::new(vec![Expr::MarkIsSet(m)])),
                0..3,
            ),
        )
            .prop_map(|(base, rules)| Chain { base, rules })
    }

    /// Elements whose comment names no Service, a Service, or a Service's port.
    fn set() -> impl Strategy<Value = Set> {
        let comment = prop::option::of(
            (prop::sample::select(OWNERS.to_vec()), any::<bool>()).prop_map(|(o, port)| {
                if port {
                    format!("{o}:80")
                } else {
                    o.to_owned()
                }
            }),
        );
        prop::collection::btree_map(0u16..30, comment, 0..6).prop_map(|elements| Set {
            spec: SetSpec {
                key: vec![KeyType::InetService],
                ..SetSpec::default()
            },
            elements: elements
                .into_iter()
                .map(|(port, comment)| {
                    let key = ElemKey::new([KeyPart::Port(port)]);
                    let value = ElemValue {
                        comment: comment.map(Into::into),
                        ..ElemValue::default()
                    };
                    (key, value)
                })
                .collect::<std::collections::BTreeMap<_, _>>()
                .into(),
        })
    }

    fn table() -> impl Strategy<Value = Table> {
        let shared_chain = prop::sample::select(vec!["a-chain", "filter-input", "zz", "odd/name"]);
        let shared_set = prop::sample::select(vec![CLUSTER_IPS, "b-map", "hairpin", "services"]);
        (
            prop::collection::btree_map(shared_chain.prop_map(str::to_owned), chain(), 0..3),
            prop::collection::btree_map(per_service_name(), chain(), 0..6),
            prop::collection::btree_map(shared_set.prop_map(str::to_owned), set(), 0..4),
            prop::collection::btree_map(per_service_name(), set(), 0..4),
        )
            .prop_map(|(mut chains, own_chains, mut sets, own_sets)| {
                // As in `desired`: the ClusterIPs name no Service.
                if let Some(s) = sets.get_mut(CLUSTER_IPS) {
                    s.elements_mut().values_mut().for_each(|v| v.comment = None);
                }
                chains.extend(own_chains);
                sets.extend(own_sets);
                Table {
                    comment: Some("synthetic".into()),
                    sets,
                    chains,
                }
            })
    }

    fn ruleset() -> impl Strategy<Value = Ruleset> {
        let id = prop::sample::select(vec![
            (Family::Ip, "a"),
            (Family::Ip6, "a"),
            (Family::Ip, "b"),
        ])
        .prop_map(|(family, name)| TableId {
            family,
            name: name.into(),
        });
        prop::collection::btree_map(id, table(), 1..=3).prop_map(|tables| Ruleset { tables })
    }

    proptest! {
        /// Every later stage is exactly what `plan` gives from stage 1 to stage 1 with the
        /// stage's objects added, and all the stages are the reference split of the whole
        /// transaction.
        #[test]
        fn later_stages_are_what_plan_adds_to_stage_1(desired in ruleset(), per_stage in 1usize..4) {
            let stages = stages_from_empty(&desired, per_stage);
            let planned: Vec<Transaction> = if stages.later.is_empty() {
                vec![plan(&Ruleset::default(), &desired)]
            } else {
                std::iter::once(plan(&Ruleset::default(), &stages.base))
                    .chain(stages.later.iter().map(|items| plan(&stages.base, &with_items(&stages.base, items, &stages.marks))))
                    .collect()
            };
            let made: Vec<Transaction> = stages.collect();
            let render = |stages: &[Transaction]| {
                stages.iter().map(Transaction::render).collect::<Vec<_>>().join("--\n")
            };
            prop_assert!(made == planned, "made:\n{}\nplanned:\n{}", render(&made), render(&planned));
            let split = split_by_service(plan(&Ruleset::default(), &desired), per_stage);
            prop_assert!(made == split, "made:\n{}\nsplit:\n{}", render(&made), render(&split));
        }
    }

    /// The elements of shared sets (100 000 and more at scale) are not indexed one by one: each
    /// later stage has one item per shared set it adds to, and each element a mark.
    #[test]
    fn shared_elements_are_one_item_per_set_and_stage() {
        let mut desired = Ruleset::default();
        let mut table = Table::default();
        let mut set = Set::default();
        for (port, owner) in [
            (1u16, "a/x:80"),
            (2, "a/y:80"),
            (3, "a/x:80"),
            (4, "a/y:80"),
        ] {
            set.elements_mut().insert(
                ElemKey::new([KeyPart::Port(port)]),
                ElemValue {
                    comment: Some(owner.into()),
                    ..ElemValue::default()
                },
            );
        }
        table.sets.insert("services".into(), set);
        desired.tables.insert(
            TableId {
                family: Family::Ip,
                name: "t".into(),
            },
            table,
        );
        let stages = stages_from_empty(&desired, 1);
        let items: Vec<usize> = stages.later.iter().map(Vec::len).collect();
        assert_eq!(items, vec![1, 1], "one item per stage for its two elements");
        assert_eq!(stages.marks, vec![vec![0, 1, 0, 1]]);
    }

    /// The synthetic rulesets do reach what the property is about: later stages with elements
    /// of per-service sets, per-service base chains, several tables, and shared elements
    /// (ClusterIPs with the last).
    #[test]
    fn synthetic_rulesets_reach_every_kind_of_later_object() {
        use proptest::strategy::ValueTree;
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let mut seen = [0usize; 5];
        for _ in 0..200 {
            let desired = ruleset()
                .new_tree(&mut runner)
                .expect("a ruleset")
                .current();
            let stages: Vec<Transaction> = stages_from_empty(&desired, 2).collect();
            let last = stages.len() - 1;
            for (i, stage) in stages.iter().enumerate().skip(1) {
                let tables: BTreeSet<&TableId> = stage
                    .ops
                    .iter()
                    .filter_map(|op| match op {
                        Op::AddChain { table, .. }
                        | Op::AddSet { table, .. }
                        | Op::AddElement { table, .. }
                        | Op::AddRule { table, .. } => Some(table),
                        _ => None,
                    })
                    .collect();
                seen[0] += usize::from(tables.len() > 1);
                for op in &stage.ops {
                    match op {
                        Op::AddElement { set, .. } if set.contains('/') => seen[1] += 1,
                        Op::AddElement { set, .. } if set == CLUSTER_IPS && i == last => {
                            seen[2] += 1;
                        }
                        Op::AddElement { .. } => seen[3] += 1,
                        Op::AddChain { base: Some(_), .. } => seen[4] += 1,
                        _ => {}
                    }
                }
            }
        }
        assert!(seen.iter().all(|&n| n > 10), "{seen:?}");
    }
}
