//! Tests of the ruleset crate (pure: no kernel).
//!
//! - `plan_props`: `plan` as a property over realistic random clusters: applying `plan(A, B)` to
//!   `A` with the kernel's checks gives exactly `B`, and `plan(B, B)` is empty.
//! - `op_counts`: exact transactions for the everyday changes (DESIGN.md §3 costs).
//! - `layout`: what `desired` lays out for specific cases, by rendered rule text.
//! - `apply_checks`: the referential checks and all-or-nothing behaviour of `Ruleset::apply`.

mod apply_checks;
mod layout;
mod op_counts;
mod plan_props;

use crate::{desired, plan, render, Family, Options, Ruleset, TableId, Transaction};
use model::fixtures::{node_config, Slice, Svc};
use model::{node_view, ClusterView, NodeConfig, NodeServices};

/// The node view of these objects; panics when the fixtures themselves are bad.
#[track_caller]
fn compute(config: &NodeConfig, services: &[Svc], slices: &[Slice]) -> NodeServices {
    let view = ClusterView::from_objects(
        services.iter().cloned().map(Svc::build),
        slices.iter().cloned().map(Slice::build),
        None,
        &config.node_name,
    );
    let out = node_view(&view, config);
    assert!(out.errors.is_empty(), "fixture errors: {:?}", out.errors);
    out
}

/// The desired ruleset of these objects with the fixture node and default options.
#[track_caller]
fn ruleset(services: &[Svc], slices: &[Slice]) -> Ruleset {
    desired(
        &compute(&node_config(), services, slices),
        &Options::default(),
    )
}

/// Our table of a family.
fn table_id(family: Family) -> TableId {
    TableId {
        family,
        name: Options::default().table_name,
    }
}

/// The rules of a chain as `nft list` prints them; panics listing the chains when missing.
#[track_caller]
fn rules(rs: &Ruleset, family: Family, chain: &str) -> Vec<String> {
    let table = &rs.tables[&table_id(family)];
    let c = table.chains.get(chain).unwrap_or_else(|| {
        panic!(
            "no chain {chain}; have {:?}",
            table.chains.keys().collect::<Vec<_>>()
        )
    });
    c.rules.iter().map(|r| r.render(family)).collect()
}

use model::fixtures::port_view;

/// Plans `current` → `want`, applies the plan in memory (with the kernel's checks), asserts the
/// result is exactly `want`, and returns the plan.
#[track_caller]
fn planned(current: &Ruleset, want: &Ruleset) -> Transaction {
    let txn = plan(current, want);
    let mut got = current.clone();
    if let Err(e) = got.apply(&txn) {
        panic!("plan does not apply: {e}\n{}", txn.render());
    }
    assert!(
        got == *want,
        "applying the plan gives\n{}\ninstead of\n{}\nplan:\n{}",
        render(&got),
        render(want),
        txn.render()
    );
    txn
}

/// The transaction as `nft -f` lines.
fn lines(txn: &Transaction) -> Vec<String> {
    txn.ops.iter().map(|op| op.render()).collect()
}
