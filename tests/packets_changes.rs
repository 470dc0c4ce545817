//! Changes to a live node, with real connections: an incremental change moves new connections
//! and keeps established ones, touching only the changed Service; a refused transaction leaves
//! the rules and the traffic as they were; re-syncing an unchanged state changes nothing.
//! Rules are programmed with the netlink backend after reading the kernel's tables back
//! ([`integration::packet_support::sync`]), as the agent does.

use integration::packet_support::{
    answers, cluster, desired, ip, ips, serve, servers, sync, ANSWER, NODE_A, NODE_B,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use model::fixtures::{ep, service, slice};
use nft::ApplyError;
use ruleset::{Expr, Op, Rule, Verdict};
use testbed::{Proto, Session};

/// `default/web` (10.96.0.10:80) and an unrelated `default/other` (10.96.0.11:80).
fn services() -> Vec<Service> {
    vec![
        service("default", "web", "10.96.0.10")
            .port("http", "TCP", 80)
            .build(),
        service("default", "other", "10.96.0.11")
            .port("http", "TCP", 80)
            .build(),
    ]
}

/// `web`'s endpoints on port 8080, and `other`'s (always b1 and b2, remote, so that no
/// hairpin element is shared with web).
fn slices(web: &[(&str, &str)]) -> Vec<EndpointSlice> {
    let mut web_slice = slice("default", "web-1", "web", "IPv4").port("http", "TCP", 8080);
    for (addr, node) in web {
        web_slice = web_slice.endpoint(ep(addr, node));
    }
    vec![
        web_slice.build(),
        slice("default", "other-1", "other", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.244.2.10", NODE_B))
            .endpoint(ep("10.244.2.11", NODE_B))
            .build(),
    ]
}

#[test]
fn replacing_an_endpoint_moves_new_connections_and_keeps_established_ones() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, a2, b1) = (cluster.pod("a1"), cluster.pod("a2"), cluster.pod("b1"));
    let before = desired(
        services(),
        slices(&[("10.244.1.10", NODE_A), ("10.244.1.11", NODE_A)]),
    );
    sync(cluster.node(), &before).unwrap_or_else(|e| panic!("first sync: {e}"));
    let _servers = serve(&cluster, &["a1", "a2", "b1"]);
    let vip = ip("10.96.0.10");
    let rules = ruleset::render(&before);

    // An established connection to one of web's endpoints.
    let (mut session, greeting) = Session::open(cluster.pod("client").ns(), vip, 80, ANSWER)
        .unwrap_or_else(|e| panic!("opening a connection to {vip}: {e}\n{rules}"));
    let kept = greeting.server;
    assert!(ips(&[a1, a2], false).contains(&kept), "{greeting:?}");
    let dropped_ip = if kept == a1.ip(false) {
        a2.ip(false)
    } else {
        a1.ip(false)
    };

    // Re-syncing the same state: nothing to do, nothing flushed.
    let idle = sync(cluster.node(), &before).unwrap_or_else(|e| panic!("idle sync: {e}"));
    assert!(
        idle.is_empty(),
        "an idle resync applies nothing: {}",
        idle.render()
    );

    // Replace the other endpoint by b1 (remote).
    let after = desired(
        services(),
        slices(&[(&kept.to_string(), NODE_A), ("10.244.2.10", NODE_B)]),
    );
    let txn = sync(cluster.node(), &after).unwrap_or_else(|e| panic!("change: {e}"));
    assert_eq!(
        txn.services(),
        vec!["default/web".to_owned()],
        "only web changed:\n{}",
        txn.render()
    );
    // Web's endpoint map changes (endpoints sit in address order: replacing the second is one
    // element out and one in, replacing the first moves the second up too) and the dropped
    // local endpoint's hairpin element goes; no rule changes.
    let moved = if kept == a1.ip(false) { 1 } else { 2 };
    assert_eq!(txn.len(), 1 + 2 * moved, "operations:\n{}", txn.render());
    assert!(
        txn.ops
            .iter()
            .all(|op| matches!(op, Op::AddElement { .. } | Op::DeleteElement { .. })),
        "only elements change:\n{}",
        txn.render()
    );

    // The established connection still reaches the endpoint it had.
    for _ in 0..3 {
        let reply = session
            .exchange()
            .unwrap_or_else(|e| panic!("the established connection broke: {e}"));
        assert_eq!(reply.server, kept, "{reply:?}");
    }
    // New connections go to the new set only.
    let rules = ruleset::render(&after);
    let replies = answers(cluster.pod("client").ns(), Proto::Tcp, vip, 80, 20, &rules);
    let reached = servers(&replies);
    assert!(!reached.contains(&dropped_ip), "{reached:?}");
    assert_eq!(reached, [kept, b1.ip(false)].into_iter().collect());
}

#[test]
fn a_refused_transaction_leaves_the_rules_and_the_traffic_in_place() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let before = desired(
        services(),
        slices(&[("10.244.1.10", NODE_A), ("10.244.2.10", NODE_B)]),
    );
    sync(cluster.node(), &before).unwrap_or_else(|e| panic!("first sync: {e}"));
    let _servers = serve(&cluster, &["a1", "a2", "b1"]);
    let listed = cluster
        .node()
        .nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"));

    // A real change (web loses b1, gains a2), with a dangling goto for web in the middle.
    let after = desired(
        services(),
        slices(&[("10.244.1.10", NODE_A), ("10.244.1.11", NODE_A)]),
    );
    let mut txn = ruleset::plan(&before, &after);
    let table = before.tables.keys().next().cloned().expect("a table");
    let chain = before.tables[&table]
        .chains
        .keys()
        .find(|c| c.starts_with("service-") && c.contains("default/web/"))
        .cloned()
        .expect("web's service chain");
    txn.ops.insert(
        txn.ops.len() / 2,
        Op::AddRule {
            table,
            chain,
            rule: Rule::new(vec![Expr::Verdict(Verdict::Goto("no-such-chain".into()))]),
        },
    );
    let path = std::path::PathBuf::from("/var/run/netns").join(cluster.node().name());
    let err = nft::in_netns(&path, move || nft::Backend::apply(&nft::Netlink, &txn))
        .unwrap_or_else(|e| panic!("entering the node: {e}"))
        .expect_err("a dangling goto must be refused");
    assert!(matches!(err, ApplyError::Rejected { .. }), "{err}");
    assert_eq!(err.services(), vec!["default/web".to_owned()], "{err}");
    assert_eq!(
        cluster
            .node()
            .nft_list_ruleset()
            .unwrap_or_else(|e| panic!("listing: {e}")),
        listed,
        "the refused transaction changed the ruleset"
    );
    let rules = ruleset::render(&before);
    let replies = answers(
        cluster.pod("client").ns(),
        Proto::Tcp,
        ip("10.96.0.10"),
        80,
        20,
        &rules,
    );
    assert_eq!(servers(&replies), ips(&[a1, b1], false));
}
