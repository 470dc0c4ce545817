//! A ruleset as `nft list ruleset` prints it. The text is also valid `nft -f` input.

use crate::format::{duration, priority};
use crate::types::{
    Chain, ElemKey, ElemValue, Family, KeyType, Ruleset, Set, SetSpec, Table, TableId,
};
use std::fmt::Write as _;

/// Renders every table.
pub fn render(ruleset: &Ruleset) -> String {
    let mut out = String::new();
    for (id, table) in &ruleset.tables {
        out.push_str(&render_table(id, table));
    }
    out
}

/// Renders one table: sets and maps first, then chains, as nft lists them.
pub fn render_table(id: &TableId, table: &Table) -> String {
    let mut blocks = Vec::new();
    for (name, set) in &table.sets {
        blocks.push(render_set(name, set));
    }
    for (name, chain) in &table.chains {
        blocks.push(render_chain(id.family, name, chain));
    }
    let mut out = format!("table {id} {{\n");
    if let Some(c) = &table.comment {
        let _ = writeln!(out, "\tcomment \"{c}\"");
    }
    out.push_str(&blocks.join("\n"));
    out.push_str("}\n");
    out
}

/// `set`/`map` declaration's type clause: `type ipv4_addr . inet_proto . inet_service :
/// verdict`, or for keys nft cannot name (`integer`) `typeof numgen random mod 1 : ip daddr .
/// th dport`, as nft lists them.
pub(crate) fn set_type(set: &SetSpec) -> String {
    let typeof_ = set.needs_typeof();
    let word = if typeof_ { "typeof" } else { "type" };
    let name = |k: &KeyType| {
        if typeof_ {
            set.typeof_expr(*k)
        } else {
            k.keyword().to_owned()
        }
    };
    let join = |types: &[KeyType]| types.iter().map(name).collect::<Vec<_>>().join(" . ");
    let mut t = format!("{word} {}", join(&set.key));
    if set.verdict_map {
        t.push_str(" : verdict");
    } else if !set.data.is_empty() {
        let _ = write!(t, " : {}", join(&set.data));
    }
    t
}

/// One element as nft prints it: `key [comment "…"] [: verdict | : data]`.
pub(crate) fn element(key: &ElemKey, value: &ElemValue) -> String {
    let mut out = key.to_string();
    if let Some(c) = &value.comment {
        let _ = write!(out, " comment \"{c}\"");
    }
    if let Some(v) = value.verdict() {
        let _ = write!(out, " : {v}");
    }
    for (i, part) in value.data_parts().enumerate() {
        let _ = write!(out, "{}{part}", if i == 0 { " : " } else { " . " });
    }
    out
}

fn render_set(name: &str, set: &Set) -> String {
    let kind = if set.spec.is_map() { "map" } else { "set" };
    let mut out = format!("\t{kind} {name} {{\n\t\t{}\n", set_type(&set.spec));
    if let Some(size) = set.spec.size {
        let _ = writeln!(out, "\t\tsize {size}");
    }
    if let Some(timeout) = set.spec.dynamic_timeout {
        let _ = writeln!(
            out,
            "\t\tflags dynamic,timeout\n\t\ttimeout {}",
            duration(timeout)
        );
    }
    if let Some(c) = &set.spec.comment {
        let _ = writeln!(out, "\t\tcomment \"{c}\"");
    }
    if !set.elements.is_empty() {
        let items: Vec<String> = set.elements.iter().map(|(k, v)| element(k, v)).collect();
        let _ = writeln!(out, "\t\telements = {{ {} }}", items.join(",\n\t\t\t     "));
    }
    out.push_str("\t}\n");
    out
}

fn render_chain(family: Family, name: &str, chain: &Chain) -> String {
    let mut out = format!("\tchain {name} {{\n");
    if let Some(base) = &chain.base {
        let _ = writeln!(
            out,
            "\t\ttype {} hook {} priority {}; policy accept;",
            base.kind.keyword(),
            base.hook.keyword(),
            priority(base.kind, base.hook, base.priority)
        );
    }
    for rule in &chain.rules {
        let _ = writeln!(out, "\t\t{}", rule.render(family));
    }
    out.push_str("\t}\n");
    out
}
