//! Carrying out a transaction in memory, with the checks the kernel makes: what is added must
//! not exist, what is used or deleted must exist, nothing referenced may be deleted. All or
//! nothing, as in the kernel. The planner's tests use it; the agent uses it to keep its copy of
//! what the kernel holds.

use crate::rule::Rule;
use crate::transaction::{Op, Transaction};
use crate::types::{Chain, Ruleset, Set, Table, TableId, Verdict};

/// Why a transaction could not be applied: which operation, and what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("operation {index} ({op}): {reason}")]
pub struct ApplyError {
    /// The position of the failing operation.
    pub index: usize,
    /// The operation, as an nft command.
    pub op: String,
    /// What was wrong.
    pub reason: String,
}

impl Ruleset {
    /// Applies a transaction, all or nothing.
    pub fn apply(&mut self, txn: &Transaction) -> Result<(), ApplyError> {
        let mut next = self.clone();
        for (index, op) in txn.ops.iter().enumerate() {
            next.apply_op(op).map_err(|reason| ApplyError {
                index,
                op: op.render(),
                reason,
            })?;
        }
        *self = next;
        Ok(())
    }

    fn table_mut(&mut self, id: &TableId) -> Result<&mut Table, String> {
        self.tables
            .get_mut(id)
            .ok_or_else(|| format!("no table {id}"))
    }

    fn apply_op(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::AddTable { table, comment } => {
                if self.tables.contains_key(table) {
                    return Err(format!("table {table} exists"));
                }
                let new = Table {
                    comment: comment.clone(),
                    ..Table::default()
                };
                self.tables.insert(table.clone(), new);
            }
            Op::DeleteTable { table } => {
                self.tables
                    .remove(table)
                    .ok_or_else(|| format!("no table {table}"))?;
            }
            Op::AddChain { table, chain, base } => {
                let t = self.table_mut(table)?;
                if t.chains.contains_key(chain) {
                    return Err(format!("chain {chain} exists"));
                }
                let new = Chain {
                    base: *base,
                    rules: Vec::new(),
                };
                t.chains.insert(chain.clone(), new);
            }
            Op::FlushChain { table, chain } => {
                let t = self.table_mut(table)?;
                let c = t
                    .chains
                    .get_mut(chain)
                    .ok_or_else(|| format!("no chain {chain}"))?;
                c.rules.clear();
            }
            Op::DeleteChain { table, chain } => {
                let t = self.table_mut(table)?;
                let c = t
                    .chains
                    .get(chain)
                    .ok_or_else(|| format!("no chain {chain}"))?;
                if !c.rules.is_empty() {
                    return Err(format!("chain {chain} is not empty"));
                }
                if let Some(user) = chain_user(t, chain) {
                    return Err(format!("chain {chain} is still used by {user}"));
                }
                t.chains.remove(chain);
            }
            Op::AddRule { table, chain, rule } => {
                let t = self.table_mut(table)?;
                check_rule(t, rule)?;
                let c = t
                    .chains
                    .get_mut(chain)
                    .ok_or_else(|| format!("no chain {chain}"))?;
                c.rules.push(rule.clone());
            }
            Op::AddSet { table, set, spec } => {
                let t = self.table_mut(table)?;
                if t.sets.contains_key(set) {
                    return Err(format!("set {set} exists"));
                }
                let new = Set {
                    spec: spec.clone(),
                    ..Set::default()
                };
                t.sets.insert(set.clone(), new);
            }
            Op::DeleteSet { table, set, map } => {
                let t = self.table_mut(table)?;
                let s = t.sets.get(set).ok_or_else(|| format!("no set {set}"))?;
                if s.spec.is_map() != *map {
                    return Err(format!(
                        "{set} is not a {}",
                        if *map { "map" } else { "set" }
                    ));
                }
                let user = t
                    .chains
                    .iter()
                    .find(|(_, c)| c.rules.iter().any(|r| r.set_refs().any(|s| s == set)));
                if let Some((name, _)) = user {
                    return Err(format!("set {set} is still used by chain {name}"));
                }
                t.sets.remove(set);
            }
            Op::AddElement {
                table,
                set,
                key,
                value,
            } => {
                let t = self.table_mut(table)?;
                if let Some(target) = value.verdict().and_then(Verdict::target) {
                    check_target(t, target)?;
                }
                let s = t.sets.get_mut(set).ok_or_else(|| format!("no set {set}"))?;
                let types: Vec<_> = key.0.iter().map(|p| p.key_type()).collect();
                if types != s.spec.key {
                    return Err(format!("key {key} does not fit the type of {set}"));
                }
                if s.spec.verdict_map != value.verdict().is_some() {
                    return Err(format!("element {key} and {set} disagree on a verdict"));
                }
                let data: Vec<_> = value.data_parts().map(|p| p.key_type()).collect();
                if data != s.spec.data {
                    return Err(format!("the value of {key} does not fit the type of {set}"));
                }
                if s.elements.contains_key(key) {
                    return Err(format!("element {key} exists in {set}"));
                }
                s.elements_mut().insert(key.clone(), value.clone());
            }
            Op::DeleteElement {
                table, set, key, ..
            } => {
                let t = self.table_mut(table)?;
                let s = t.sets.get_mut(set).ok_or_else(|| format!("no set {set}"))?;
                s.elements_mut()
                    .remove(key)
                    .ok_or_else(|| format!("no element {key} in {set}"))?;
            }
        }
        Ok(())
    }
}

/// A jump target must exist and must not be a base chain.
fn check_target(table: &Table, target: &str) -> Result<(), String> {
    match table.chains.get(target) {
        None => Err(format!("no chain {target} to continue in")),
        Some(c) if c.base.is_some() => Err(format!("{target} is a base chain")),
        Some(_) => Ok(()),
    }
}

fn check_rule(table: &Table, rule: &Rule) -> Result<(), String> {
    for target in rule.chain_refs() {
        check_target(table, target)?;
    }
    for set in rule.set_refs() {
        if !table.sets.contains_key(set) {
            return Err(format!("no set {set}"));
        }
    }
    Ok(())
}

/// What still continues in `chain`: a rule or a map element.
fn chain_user(table: &Table, chain: &str) -> Option<String> {
    for (name, c) in &table.chains {
        if c.rules.iter().any(|r| r.chain_refs().any(|t| t == chain)) {
            return Some(format!("a rule of chain {name}"));
        }
    }
    for (name, s) in &table.sets {
        let used = s
            .elements
            .values()
            .any(|v| v.verdict().and_then(Verdict::target) == Some(chain));
        if used {
            return Some(format!("an element of {name}"));
        }
    }
    None
}
