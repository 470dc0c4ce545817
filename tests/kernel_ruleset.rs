//! The rendered rulesets and planned transactions, loaded into a real kernel with `nft -f`
//! inside network namespaces made for the test (and deleted after it, also on failure).

use integration::{canonical_listing, example};
use ruleset::{plan, render, Ruleset};
use testbed::{require_kernel, NetNs};

/// Loads `text` into a fresh namespace and returns what the kernel lists.
fn load_and_list(ns: &NetNs, text: &str) -> String {
    ns.nft_load(text)
        .unwrap_or_else(|e| panic!("the kernel refused the ruleset: {e}\n{text}"));
    ns.nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"))
}

fn assert_kernel_holds(ns: &NetNs, expected: &Ruleset) {
    let listed = ns
        .nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"));
    let want = canonical_listing(&render(expected));
    let got = canonical_listing(&listed);
    assert_eq!(
        got, want,
        "kernel listing differs from the rendered ruleset"
    );
}

#[test]
fn every_snapshot_is_accepted_and_listed_back_identically() {
    if !require_kernel() {
        return;
    }
    for (manifests, node) in [
        ("examples/cluster.yaml", "node-a"),
        ("examples/cluster.yaml", "node-b"),
        ("examples/bad", "node-a"),
    ] {
        let (_, rules) = example(manifests, node);
        let ns = NetNs::new("render").unwrap_or_else(|e| panic!("netns: {e}"));
        let text = render(&rules);
        let listed = load_and_list(&ns, &text);
        assert_eq!(
            canonical_listing(&listed),
            canonical_listing(&text),
            "{manifests} for {node}: kernel listing differs from the rendering"
        );
    }
}

/// First sync, a change of node (different local endpoints), and removal, each as a planned
/// transaction rendered to nft commands and applied on top of what the kernel has.
#[test]
fn planned_transactions_apply_in_the_kernel() {
    if !require_kernel() {
        return;
    }
    let (_, a) = example("examples/cluster.yaml", "node-a");
    let (_, b) = example("examples/cluster.yaml", "node-b");
    let (_, bad) = example("examples/bad", "node-a");
    let empty = Ruleset::default();
    let ns = NetNs::new("plan").unwrap_or_else(|e| panic!("netns: {e}"));
    let steps = [(&empty, &a), (&a, &b), (&b, &bad), (&bad, &a), (&a, &empty)];
    for (from, to) in steps {
        let txn = plan(from, to);
        ns.nft_load(&txn.render()).unwrap_or_else(|e| {
            panic!("the kernel refused the transaction: {e}\n{}", txn.render())
        });
        assert_kernel_holds(&ns, to);
        assert!(plan(to, to).is_empty(), "idle resync must be empty");
    }
    let listed = ns
        .nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"));
    assert!(listed.trim().is_empty(), "all tables deleted: {listed}");
}
