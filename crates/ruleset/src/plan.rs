//! The planner: the smallest ordered transaction from the current ruleset to the desired one.
//!
//! Order (each step only needs what earlier steps made, and nothing is deleted while still
//! referenced):
//! 1. tables that are new are added;
//! 2. sets whose declaration changed are deleted (after flushing the chains that use them), and
//!    base chains whose hook changed are flushed and deleted;
//! 3. new (or re-declared) sets and chains are added;
//! 4. element changes: deletions, then additions (a changed value is a delete and an add);
//! 5. chains whose rules changed are flushed and refilled; new chains are filled;
//! 6. chains no longer wanted are flushed; sets no longer wanted are deleted; then those chains;
//! 7. tables no longer wanted are deleted.
//!
//! Unchanged objects cost nothing: an idle resync is an empty transaction.

use crate::transaction::{Op, Transaction};
use crate::types::{Ruleset, Set, Table, TableId};
use std::collections::{BTreeMap, BTreeSet};

/// Plans the transaction that turns `current` into `desired`.
pub fn plan(current: &Ruleset, desired: &Ruleset) -> Transaction {
    let mut ops = Vec::new();
    let empty = Table::default();
    for (id, want) in &desired.tables {
        let have = match current.tables.get(id) {
            Some(t) => t,
            None => {
                ops.push(Op::AddTable {
                    table: id.clone(),
                    comment: want.comment.clone(),
                });
                &empty
            }
        };
        plan_table(id, have, want, &mut ops);
    }
    for id in current.tables.keys() {
        if !desired.tables.contains_key(id) {
            ops.push(Op::DeleteTable { table: id.clone() });
        }
    }
    Transaction { ops }
}

fn plan_table(id: &TableId, have: &Table, want: &Table, ops: &mut Vec<Op>) {
    let t = || id.clone();
    let mut flushed: BTreeSet<&str> = BTreeSet::new();
    let mut recreated_sets: BTreeSet<&str> = BTreeSet::new();
    let mut recreated_chains: BTreeSet<&str> = BTreeSet::new();

    // 2. Re-declared sets and base chains go first.
    for (name, set) in &want.sets {
        if have.sets.get(name).is_some_and(|old| old.spec != set.spec) {
            recreated_sets.insert(name);
        }
    }
    if !recreated_sets.is_empty() {
        for (chain_name, chain) in &have.chains {
            let uses = chain
                .rules
                .iter()
                .any(|r| r.set_refs().any(|s| recreated_sets.contains(s)));
            if uses && flushed.insert(chain_name) {
                ops.push(Op::FlushChain {
                    table: t(),
                    chain: chain_name.clone(),
                });
            }
        }
        for name in &recreated_sets {
            ops.push(Op::DeleteSet {
                table: t(),
                set: (*name).to_owned(),
                map: have.sets[*name].spec.is_map(),
            });
        }
    }
    for (name, chain) in &want.chains {
        if let Some(old) = have.chains.get(name) {
            if old.base != chain.base {
                if !old.rules.is_empty() && flushed.insert(name) {
                    ops.push(Op::FlushChain {
                        table: t(),
                        chain: name.clone(),
                    });
                }
                ops.push(Op::DeleteChain {
                    table: t(),
                    chain: name.clone(),
                });
                recreated_chains.insert(name);
            }
        }
    }

    // 3. New sets and chains.
    for (name, set) in &want.sets {
        if !have.sets.contains_key(name) || recreated_sets.contains(name.as_str()) {
            ops.push(Op::AddSet {
                table: t(),
                set: name.clone(),
                spec: set.spec.clone(),
            });
        }
    }
    for (name, chain) in &want.chains {
        if !have.chains.contains_key(name) || recreated_chains.contains(name.as_str()) {
            ops.push(Op::AddChain {
                table: t(),
                chain: name.clone(),
                base: chain.base,
            });
        }
    }

    // 4. Elements.
    let no_set = Set::default();
    let current_elements = |name: &str| -> &Set {
        if recreated_sets.contains(name) {
            &no_set
        } else {
            have.sets.get(name).unwrap_or(&no_set)
        }
    };
    let mut additions = Vec::new();
    for (name, set) in &want.sets {
        let old = current_elements(name);
        diff_elements(id, name, old, set, ops, &mut additions);
    }
    ops.append(&mut additions);

    // 5. Chain contents.
    for (name, chain) in &want.chains {
        let old = have.chains.get(name);
        let is_new = old.is_none() || recreated_chains.contains(name.as_str());
        let changed = old.is_some_and(|o| o.rules != chain.rules);
        let was_flushed = flushed.contains(name.as_str());
        if !is_new && (changed || was_flushed) {
            if !was_flushed {
                flushed.insert(name);
                ops.push(Op::FlushChain {
                    table: t(),
                    chain: name.clone(),
                });
            }
        } else if !is_new {
            continue;
        }
        for rule in &chain.rules {
            ops.push(Op::AddRule {
                table: t(),
                chain: name.clone(),
                rule: rule.clone(),
            });
        }
    }

    // 6. Leftovers.
    let stale: Vec<&String> = have
        .chains
        .keys()
        .filter(|name| !want.chains.contains_key(*name))
        .collect();
    for name in &stale {
        if !have.chains[*name].rules.is_empty() && !flushed.contains(name.as_str()) {
            ops.push(Op::FlushChain {
                table: t(),
                chain: (*name).clone(),
            });
        }
    }
    // Sets before chains: no rule uses a stale set any more (its chains were flushed), and a
    // stale map's elements may still continue in a stale chain.
    for (name, set) in &have.sets {
        if !want.sets.contains_key(name) {
            ops.push(Op::DeleteSet {
                table: t(),
                set: name.clone(),
                map: set.spec.is_map(),
            });
        }
    }
    for name in stale {
        ops.push(Op::DeleteChain {
            table: t(),
            chain: name.clone(),
        });
    }
}

/// Element deletions go to `ops` now, additions to `additions` (appended after all deletions).
fn diff_elements(
    id: &TableId,
    name: &str,
    old: &Set,
    new: &Set,
    ops: &mut Vec<Op>,
    additions: &mut Vec<Op>,
) {
    let changed = |a: &BTreeMap<_, _>, k, v| a.get(k) != Some(v);
    for (key, value) in old.elements.iter() {
        if changed(&new.elements, key, value) {
            ops.push(Op::DeleteElement {
                table: id.clone(),
                set: name.to_owned(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
    for (key, value) in new.elements.iter() {
        if changed(&old.elements, key, value) {
            additions.push(Op::AddElement {
                table: id.clone(),
                set: name.to_owned(),
                key: key.clone(),
                value: value.clone(),
            });
        }
    }
}
