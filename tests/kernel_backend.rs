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

/// A cluster of `services` Services with two endpoints each (one on node-a), plus one Service
/// with `wide` endpoints.
fn big_cluster(services: usize, wide: usize) -> Ruleset {
    use model::fixtures::{ep, node, node_config, service, slice};
    use model::{node_view, ClusterView};
    let mut svcs = Vec::new();
    let mut slices = Vec::new();
    for i in 0..services {
        let name = format!("svc-{i}");
        let vip = format!("10.96.{}.{}", i / 250, i % 250 + 1);
        svcs.push(service("bulk", &name, &vip).port("http", "TCP", 80).build());
        slices.push(
            slice("bulk", &format!("{name}-1"), &name, "IPv4")
                .port("http", "TCP", 8080)
                .endpoint(ep(&format!("10.244.{}.{}", i / 250, i % 250 + 1), "node-a"))
                .endpoint(ep(&format!("10.245.{}.{}", i / 250, i % 250 + 1), "node-b"))
                .build(),
        );
    }
    svcs.push(
        service("bulk", "wide", "10.97.0.1")
            .port("http", "TCP", 80)
            .build(),
    );
    let mut wide_slice = slice("bulk", "wide-1", "wide", "IPv4").port("http", "TCP", 8080);
    for i in 0..wide {
        wide_slice =
            wide_slice.endpoint(ep(&format!("10.246.{}.{}", i / 250, i % 250 + 1), "node-b"));
    }
    slices.push(wide_slice.build());
    let view = ClusterView::from_objects(
        svcs,
        slices,
        [node("node-a", &["192.168.0.2"], None)],
        "node-a",
    );
    let services = node_view(&view, &node_config());
    assert!(services.errors.is_empty(), "{:?}", services.errors);
    ruleset::desired(&services, &ruleset::Options::default())
}

/// Thousands of Services (tens of thousands of messages, megabytes in one batch) and an
/// anonymous map of hundreds of endpoints (several element messages) in one transaction: sent,
/// acknowledged, read back equal, and a second plan is empty.
#[test]
fn a_large_first_sync_is_one_transaction_and_reads_back_equal() {
    if !require_kernel() {
        return;
    }
    let rules = big_cluster(3000, 600);
    let ns = netns("large");
    apply(&ns, &Netlink, &plan(&Ruleset::default(), &rules))
        .unwrap_or_else(|e| panic!("large first sync: {e}"));
    let read = in_netns(&path(&ns), || nft::read_tables("kube-nftproxy", None))
        .unwrap_or_else(|e| panic!("entering: {e}"))
        .unwrap_or_else(|e| panic!("reading back: {e}"));
    let again = plan(&read, &rules);
    assert!(
        again.is_empty(),
        "after a large sync, read-back differs: {} operations, first: {:?}",
        again.len(),
        again.ops.first().map(Op::render)
    );
}

/// A sync from empty tables in stages of two Services (the kernel takes each stage on top of
/// the ones before) lists exactly as the same ruleset in one transaction, and a restart over
/// it applies nothing.
#[test]
fn a_sync_from_empty_in_stages_lists_as_one_transaction() {
    if !require_kernel() {
        return;
    }
    for (manifests, node, rules) in examples() {
        let sync = |ns: &NetNs, stage_services: usize| {
            let rules = rules.clone();
            in_netns(&path(ns), move || {
                agent::sync::sync_once(&Netlink, "kube-nftproxy", &rules, stage_services)
            })
            .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
            .unwrap_or_else(|e| panic!("{manifests} {node}: {e}"))
        };
        let staged = netns("staged");
        let whole = netns("whole");
        let report = sync(&staged, 2);
        let services = plan(&Ruleset::default(), &rules).services().len();
        assert_eq!(
            report.transactions(),
            1 + services.div_ceil(2),
            "{manifests} {node}: {report}"
        );
        assert_eq!(sync(&whole, 0).transactions(), 1);
        assert_eq!(
            canonical_listing(&listing(&staged)),
            canonical_listing(&listing(&whole)),
            "{manifests} {node}"
        );
        let again = sync(&staged, 2);
        assert_eq!((again.operations, again.transactions()), (0, 1), "{again}");
    }
}
