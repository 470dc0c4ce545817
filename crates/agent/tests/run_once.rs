//! `kube-nftproxy run --once` and `cleanup`, run as the real binary inside network namespaces
//! made for the test: the first run programs the ruleset, a second run adopts it with zero
//! operations (whichever backend wrote it), and cleanup deletes our tables and nothing else.

use std::path::{Path, PathBuf};
use testbed::{require_kernel, NetNs};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Runs the binary in `ns` with `args` (and `KUBE_NFTPROXY_BACKEND=backend`); returns stdout,
/// panicking with stderr when it fails.
fn agent(ns: &NetNs, backend: &str, args: &[&str]) -> String {
    let bin = env!("CARGO_BIN_EXE_kube-nftproxy");
    let assignment = format!("KUBE_NFTPROXY_BACKEND={backend}");
    let mut full: Vec<&str> = vec![&assignment, bin];
    full.extend_from_slice(args);
    let out = ns
        .exec("env", &full)
        .unwrap_or_else(|e| panic!("running {bin}: {e}"));
    assert!(
        out.status.success(),
        "kube-nftproxy {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_once(ns: &NetNs, backend: &str, node: &str) -> String {
    let root = repo();
    let manifests = root.join("examples/cluster.yaml");
    let config = root.join("examples/config.toml");
    agent(
        ns,
        backend,
        &[
            "run",
            "--manifests",
            &manifests.to_string_lossy(),
            "--config",
            &config.to_string_lossy(),
            "--node",
            node,
            "--once",
        ],
    )
}

/// The number in "applied N operations".
fn operations(summary: &str) -> usize {
    summary
        .strip_prefix("applied ")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("not a run summary: {summary:?}"))
}

fn listing(ns: &NetNs) -> String {
    ns.nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"))
}

#[test]
fn a_second_run_applies_nothing_whichever_backend_wrote_the_rules() {
    if !require_kernel() {
        return;
    }
    for (first, second) in [
        ("netlink", "netlink"),
        ("nft", "netlink"),
        ("netlink", "nft"),
    ] {
        let ns = NetNs::new("run").unwrap_or_else(|e| panic!("netns: {e}"));
        let summary = run_once(&ns, first, "node-a");
        assert!(
            operations(&summary) > 100,
            "{first}: the first run programs everything: {summary}"
        );
        assert!(summary.contains(&format!("with {first}")), "{summary}");
        let programmed = listing(&ns);
        let again = run_once(&ns, second, "node-a");
        assert_eq!(
            operations(&again),
            0,
            "{second} after {first}: nothing changed, so nothing is applied: {again}"
        );
        assert_eq!(listing(&ns), programmed, "{second} after {first}");
    }
}

#[test]
fn a_run_for_another_node_changes_only_what_differs() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("run").unwrap_or_else(|e| panic!("netns: {e}"));
    let first = operations(&run_once(&ns, "netlink", "node-a"));
    let change = operations(&run_once(&ns, "netlink", "node-b"));
    assert!(
        change > 0 && change < first / 2,
        "node-a → node-b changes local endpoints only: {change} of {first} operations"
    );
    assert_eq!(operations(&run_once(&ns, "netlink", "node-b")), 0);
}

#[test]
fn cleanup_deletes_our_tables_and_nothing_else() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("cleanup").unwrap_or_else(|e| panic!("netns: {e}"));
    ns.nft_load("table inet other {\n\tchain c {\n\t\ttype filter hook input priority 0; policy accept;\n\t}\n}\n")
        .unwrap_or_else(|e| panic!("loading another table: {e}"));
    run_once(&ns, "netlink", "node-a");
    let out = agent(&ns, "netlink", &["cleanup"]);
    assert_eq!(
        out.trim(),
        "deleted table ip kube-nftproxy, table ip6 kube-nftproxy"
    );
    let left = listing(&ns);
    assert!(!left.contains("kube-nftproxy"), "{left}");
    assert!(left.contains("table inet other"), "{left}");
    let again = agent(&ns, "nft", &["cleanup"]);
    assert_eq!(again.trim(), "no kube-nftproxy tables to delete");
}
