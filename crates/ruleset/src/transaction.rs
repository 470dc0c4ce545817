//! A transaction: the ordered operations that turn one ruleset into another, applied by the
//! kernel all or nothing.

use crate::format::{duration, priority};
use crate::render::{element, set_type};
use crate::rule::Rule;
use crate::types::{BaseChain, ElemKey, ElemValue, SetSpec, TableId};
use std::fmt::Write as _;

/// One operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Create a table.
    AddTable {
        /// The table.
        table: TableId,
        /// Its comment.
        comment: Option<String>,
    },
    /// Delete a table and everything in it.
    DeleteTable {
        /// The table.
        table: TableId,
    },
    /// Create a chain (a base chain when `base` is set).
    AddChain {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// Hook and priority of a base chain.
        base: Option<BaseChain>,
    },
    /// Remove every rule of a chain.
    FlushChain {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
    },
    /// Delete an empty, unreferenced chain.
    DeleteChain {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
    },
    /// Append a rule to a chain.
    AddRule {
        /// The table.
        table: TableId,
        /// The chain.
        chain: String,
        /// The rule.
        rule: Rule,
    },
    /// Create a set or map.
    AddSet {
        /// The table.
        table: TableId,
        /// The set.
        set: String,
        /// Its declaration.
        spec: SetSpec,
    },
    /// Delete an unreferenced set or map.
    DeleteSet {
        /// The table.
        table: TableId,
        /// The set.
        set: String,
        /// True for a map.
        map: bool,
    },
    /// Add an element that is not there.
    AddElement {
        /// The table.
        table: TableId,
        /// The set or map.
        set: String,
        /// The key.
        key: ElemKey,
        /// Verdict and comment.
        value: ElemValue,
    },
    /// Delete an element.
    DeleteElement {
        /// The table.
        table: TableId,
        /// The set or map.
        set: String,
        /// The key.
        key: ElemKey,
        /// Its value as it was (nft needs none; kept for messages).
        value: ElemValue,
    },
}

/// The Service (`namespace/name`) a per-service chain or set belongs to, from its name
/// (`<prefix>-<HASH>-<ns>/<name>/<proto>/<port>[__…]`); `None` for the shared ones.
pub(crate) fn owner_of_name(name: &str) -> Option<&str> {
    if !name.contains('/') {
        return None;
    }
    let rest = name.splitn(3, '-').nth(2)?;
    let first = rest.find('/')?;
    let second = rest[first + 1..]
        .find('/')
        .map_or(rest.len(), |i| first + 1 + i);
    Some(&rest[..second])
}

/// The Service an element of `set` belongs to: a per-service set's Service, or the one its
/// comment (`namespace/name:port`) names.
pub(crate) fn owner_of_element<'a>(set: &'a str, value: &'a ElemValue) -> Option<&'a str> {
    if set.contains('/') {
        return owner_of_name(set);
    }
    let c = value.comment.as_deref()?;
    Some(c.rsplit_once(':').map_or(c, |(svc, _)| svc))
}

impl Op {
    /// The Service (`namespace/name`) an operation is about, when it is about one: read from
    /// per-service chain and set names and from element comments.
    pub fn service(&self) -> Option<String> {
        match self {
            Op::AddChain { chain, .. }
            | Op::FlushChain { chain, .. }
            | Op::DeleteChain { chain, .. }
            | Op::AddRule { chain, .. } => owner_of_name(chain).map(str::to_owned),
            Op::AddSet { set, .. } | Op::DeleteSet { set, .. } => {
                owner_of_name(set).map(str::to_owned)
            }
            Op::AddElement { set, value, .. } | Op::DeleteElement { set, value, .. } => {
                owner_of_element(set, value).map(str::to_owned)
            }
            Op::AddTable { .. } | Op::DeleteTable { .. } => None,
        }
    }

    /// The operation as an `nft -f` command.
    pub fn render(&self) -> String {
        match self {
            Op::AddTable { table, comment } => match comment {
                Some(c) => format!("add table {table} {{ comment \"{c}\"; }}"),
                None => format!("add table {table}"),
            },
            Op::DeleteTable { table } => format!("delete table {table}"),
            Op::AddChain { table, chain, base } => match base {
                Some(b) => format!(
                    "add chain {table} {chain} {{ type {} hook {} priority {}; policy accept; }}",
                    b.kind.keyword(),
                    b.hook.keyword(),
                    priority(b.kind, b.hook, b.priority)
                ),
                None => format!("add chain {table} {chain}"),
            },
            Op::FlushChain { table, chain } => format!("flush chain {table} {chain}"),
            Op::DeleteChain { table, chain } => format!("delete chain {table} {chain}"),
            Op::AddRule { table, chain, rule } => {
                format!("add rule {table} {chain} {}", rule.render(table.family))
            }
            Op::AddSet { table, set, spec } => {
                let kind = if spec.is_map() { "map" } else { "set" };
                let mut out = format!("add {kind} {table} {set} {{ {};", set_type(spec));
                if let Some(size) = spec.size {
                    let _ = write!(out, " size {size};");
                }
                if let Some(t) = spec.dynamic_timeout {
                    let _ = write!(out, " flags dynamic,timeout; timeout {};", duration(t));
                }
                if let Some(c) = &spec.comment {
                    let _ = write!(out, " comment \"{c}\";");
                }
                out.push_str(" }");
                out
            }
            Op::DeleteSet { table, set, map } => {
                format!("delete {} {table} {set}", if *map { "map" } else { "set" })
            }
            Op::AddElement {
                table,
                set,
                key,
                value,
            } => format!("add element {table} {set} {{ {} }}", element(key, value)),
            Op::DeleteElement {
                table, set, key, ..
            } => {
                format!("delete element {table} {set} {{ {key} }}")
            }
        }
    }
}

/// Ordered operations, applied as one atomic batch.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Transaction {
    /// The operations, in order.
    pub ops: Vec<Op>,
}

impl Transaction {
    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The Services the transaction touches (from chain names and element comments), sorted.
    pub fn services(&self) -> Vec<String> {
        let mut all: Vec<String> = self.ops.iter().filter_map(Op::service).collect();
        all.sort();
        all.dedup();
        all
    }

    /// The transaction as an `nft -f` script, one command per line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for op in &self.ops {
            out.push_str(&op.render());
            out.push('\n');
        }
        out
    }
}
