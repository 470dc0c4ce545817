//! Exact transactions for the everyday changes (DESIGN.md §3): an idle resync sends nothing,
//! endpoint churn flushes and refills only that Service's chain, verdict-map elements change only
//! when a Service's dispatch really changes, and only the changed Service is touched.

use super::{compute, lines, planned, port_view, ruleset};
use crate::{chain_name, ChainKind, Op, Transaction};
use model::fixtures::{ep, node_config, service, slice, Ep, Slice, Svc};
use model::{IpFamily, Protocol};

/// `slice` with these endpoints.
fn with_endpoints(slice: Slice, endpoints: &[Ep]) -> Slice {
    endpoints.iter().cloned().fold(slice, |s, e| s.endpoint(e))
}

/// A ready endpoint on this node.
fn local(ip: &str) -> Ep {
    ep(ip, "node-a")
}

/// A ready endpoint on another node.
fn remote(ip: &str) -> Ep {
    ep(ip, "node-b")
}

/// A cluster of several Services of every kind. `web` (default/web, ClusterIP 10.96.0.10:80 →
/// 8080) and `lb` (shop/lb, LoadBalancer with eTP Local, 198.51.100.1:443 → 8443) get the given
/// endpoints; `front` (shop/front, NodePort 30080 with one local endpoint) is left out unless
/// asked for. Also: kube-system/dns (UDP and TCP ports) and default/api (dual stack with
/// session affinity).
fn cluster(web: &[Ep], lb: &[Ep], front: bool) -> (Vec<Svc>, Vec<Slice>) {
    let mut services = vec![
        service("default", "web", "10.96.0.10").port("http", "TCP", 80),
        service("kube-system", "dns", "10.96.0.53")
            .port("dns", "UDP", 53)
            .port("dns-tcp", "TCP", 53),
        service("shop", "lb", "10.96.0.30")
            .type_("LoadBalancer")
            .node_port("https", "TCP", 443, 30443)
            .etp_local()
            .health_check_node_port(32000)
            .lb_ingress("198.51.100.1", None),
        service("default", "api", "10.96.0.40")
            .cluster_ips(&["10.96.0.40", "fd00:96::40"])
            .port("http", "TCP", 80)
            .affinity(Some(600)),
    ];
    let mut slices = vec![
        with_endpoints(
            slice("default", "web-1", "web", "IPv4").port("http", "TCP", 8080),
            web,
        ),
        slice("kube-system", "dns-1", "dns", "IPv4")
            .port("dns", "UDP", 5353)
            .port("dns-tcp", "TCP", 5353)
            .endpoint(remote("10.1.1.1")),
        with_endpoints(
            slice("shop", "lb-1", "lb", "IPv4").port("https", "TCP", 8443),
            lb,
        ),
        slice("default", "api-4", "api", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(remote("10.1.4.1")),
        slice("default", "api-6", "api", "IPv6")
            .port("http", "TCP", 8080)
            .endpoint(local("fd00:10::4:1")),
    ];
    if front {
        services.push(
            service("shop", "front", "10.96.0.20")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30080),
        );
        slices.push(
            slice("shop", "front-1", "front", "IPv4")
                .port("http", "TCP", 8080)
                .endpoint(local("10.1.2.1")),
        );
    }
    (services, slices)
}

/// The default cluster: web with two endpoints, lb with a local and a remote one, front.
fn base() -> (Vec<Svc>, Vec<Slice>) {
    cluster(
        &[remote("10.1.0.1"), remote("10.1.0.2")],
        &[local("10.1.3.1"), remote("10.1.3.2")],
        true,
    )
}

/// The name of a per-service chain of an IPv4 service-port of `(services, slices)`.
/// The endpoint map of a chain and the key prefix (`tag0 . tag1`) of its endpoints there.
fn endpoint_slot(
    objects: &(Vec<Svc>, Vec<Slice>),
    kind: ChainKind,
    namespace: &str,
    name: &str,
    port: &str,
) -> (String, String) {
    let out = compute(&node_config(), &objects.0, &objects.1);
    let view = port_view(&out, IpFamily::V4, namespace, name, port, Protocol::Tcp);
    let slot = crate::names::endpoint_tag(kind, view);
    (slot.map, format!("{} . {}", slot.tag[0], slot.tag[1]))
}

fn chain(
    objects: &(Vec<Svc>, Vec<Slice>),
    kind: ChainKind,
    namespace: &str,
    name: &str,
    port: &str,
) -> String {
    let out = compute(&node_config(), &objects.0, &objects.1);
    chain_name(
        kind,
        port_view(&out, IpFamily::V4, namespace, name, port, Protocol::Tcp),
    )
}

/// `(adds, flushes, deletes)` of chains, `(adds, deletes)` of elements, rules added, and
/// `(adds, deletes)` of sets, in that order.
fn counts(txn: &Transaction) -> [usize; 8] {
    let mut c = [0; 8];
    for op in &txn.ops {
        let i = match op {
            Op::AddChain { .. } => 0,
            Op::FlushChain { .. } => 1,
            Op::DeleteChain { .. } => 2,
            Op::AddElement { .. } => 3,
            Op::DeleteElement { .. } => 4,
            Op::AddRule { .. } => 5,
            Op::AddSet { .. } => 6,
            Op::DeleteSet { .. } => 7,
            Op::AddTable { .. } | Op::DeleteTable { .. } => panic!("table op: {}", op.render()),
        };
        c[i] += 1;
    }
    c
}

/// The sets whose elements the transaction changes.
fn element_sets(txn: &Transaction) -> Vec<&str> {
    let mut sets: Vec<&str> = txn
        .ops
        .iter()
        .filter_map(|op| match op {
            Op::AddElement { set, .. } | Op::DeleteElement { set, .. } => Some(set.as_str()),
            _ => None,
        })
        .collect();
    sets.sort_unstable();
    sets.dedup();
    sets
}

#[test]
fn idle_resync_is_empty() {
    let (services, slices) = base();
    let first = ruleset(&services, &slices);
    // Recomputed from freshly built objects, not a clone.
    let (services, slices) = base();
    let again = ruleset(&services, &slices);
    let txn = planned(&first, &again);
    assert!(txn.is_empty(), "idle resync sends:\n{}", txn.render());
    assert_eq!(txn.len(), 0);
}

fn add_new_service(endpoint: Ep) -> (Transaction, String) {
    let before = base();
    let mut after = base();
    after
        .0
        .push(service("default", "new", "10.96.0.99").port("http", "TCP", 80));
    after.1.push(
        slice("default", "new-1", "new", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(endpoint),
    );
    let svc = chain(&after, ChainKind::Service, "default", "new", "http");
    let txn = planned(&ruleset(&before.0, &before.1), &ruleset(&after.0, &after.1));
    (txn, svc)
}

#[test]
fn adding_a_clusterip_service_with_a_remote_endpoint() {
    let (txn, svc) = add_new_service(remote("10.1.9.1"));
    let t = "ip kube-nftproxy";
    assert_eq!(
        lines(&txn),
        [
            format!("add chain {t} {svc}"),
            format!("add element {t} cluster-ips {{ 10.96.0.99 }}"),
            format!(
                "add element {t} service-ips {{ 10.96.0.99 . tcp . 80 comment \"default/new:http\" : goto {svc} }}"
            ),
            format!("add rule {t} {svc} meta l4proto tcp dnat to 10.1.9.1:8080"),
        ]
    );
    assert_eq!(counts(&txn), [1, 0, 0, 2, 0, 1, 0, 0]);
    assert_eq!(txn.services(), ["default/new"]);
}

#[test]
fn adding_a_clusterip_service_with_a_local_endpoint_adds_its_hairpin_element() {
    let (txn, svc) = add_new_service(local("10.1.9.1"));
    let t = "ip kube-nftproxy";
    assert_eq!(
        lines(&txn),
        [
            format!("add chain {t} {svc}"),
            format!("add element {t} cluster-ips {{ 10.96.0.99 }}"),
            format!("add element {t} hairpin-connections {{ 10.1.9.1 . 10.1.9.1 . tcp . 8080 }}"),
            format!(
                "add element {t} service-ips {{ 10.96.0.99 . tcp . 80 comment \"default/new:http\" : goto {svc} }}"
            ),
            format!("add rule {t} {svc} meta l4proto tcp dnat to 10.1.9.1:8080"),
        ]
    );
    assert_eq!(counts(&txn), [1, 0, 0, 3, 0, 1, 0, 0]);
    assert_eq!(txn.services(), ["default/new"]);
}

/// The transaction for web's endpoints going from `before` to `after`, web's chain, and its
/// endpoint map and key prefix.
fn web_change(before: &[Ep], after: &[Ep]) -> (Transaction, String, (String, String)) {
    let lb = [local("10.1.3.1"), remote("10.1.3.2")];
    let a = cluster(before, &lb, true);
    let b = cluster(after, &lb, true);
    let svc = chain(&a, ChainKind::Service, "default", "web", "http");
    let slot = endpoint_slot(&a, ChainKind::Service, "default", "web", "http");
    let txn = planned(&ruleset(&a.0, &a.1), &ruleset(&b.0, &b.1));
    (txn, svc, slot)
}

#[test]
fn replacing_one_remote_endpoint_of_three_changes_only_its_endpoint_elements() {
    let (txn, _, (map, tag)) = web_change(
        &[remote("10.1.0.1"), remote("10.1.0.2"), remote("10.1.0.3")],
        &[remote("10.1.0.1"), remote("10.1.0.3"), remote("10.1.0.4")],
    );
    let t = "ip kube-nftproxy";
    let c = "comment \"default/web:http\"";
    // Endpoints sit in the map in address order: the ones after the replaced one move up.
    // No rule changes, so the kernel has nothing to validate.
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} {map} {{ {tag} . 1 }}"),
            format!("delete element {t} {map} {{ {tag} . 2 }}"),
            format!("add element {t} {map} {{ {tag} . 1 {c} : 10.1.0.3 . 8080 }}"),
            format!("add element {t} {map} {{ {tag} . 2 {c} : 10.1.0.4 . 8080 }}"),
        ]
    );
    assert_eq!(counts(&txn), [0, 0, 0, 2, 2, 0, 0, 0]);
    assert_eq!(element_sets(&txn), [map.as_str()]);
    assert_eq!(txn.services(), ["default/web"]);

    // Replacing the last one is one element out, one in.
    let (txn, _, _) = web_change(
        &[remote("10.1.0.1"), remote("10.1.0.2"), remote("10.1.0.3")],
        &[remote("10.1.0.1"), remote("10.1.0.2"), remote("10.1.0.4")],
    );
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} {map} {{ {tag} . 2 }}"),
            format!("add element {t} {map} {{ {tag} . 2 {c} : 10.1.0.4 . 8080 }}"),
        ]
    );
}

#[test]
fn replacing_one_local_endpoint_of_three_also_swaps_its_hairpin_element() {
    let (txn, _, (map, tag)) = web_change(
        &[local("10.1.0.1"), local("10.1.0.2"), remote("10.1.0.3")],
        &[local("10.1.0.1"), remote("10.1.0.3"), local("10.1.0.4")],
    );
    let t = "ip kube-nftproxy";
    let c = "comment \"default/web:http\"";
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} {map} {{ {tag} . 1 }}"),
            format!("delete element {t} {map} {{ {tag} . 2 }}"),
            format!(
                "delete element {t} hairpin-connections {{ 10.1.0.2 . 10.1.0.2 . tcp . 8080 }}"
            ),
            format!("add element {t} {map} {{ {tag} . 1 {c} : 10.1.0.3 . 8080 }}"),
            format!("add element {t} {map} {{ {tag} . 2 {c} : 10.1.0.4 . 8080 }}"),
            format!("add element {t} hairpin-connections {{ 10.1.0.4 . 10.1.0.4 . tcp . 8080 }}"),
        ]
    );
    // No verdict-map element changes and no rules: only the endpoint map and the hairpin set.
    assert_eq!(element_sets(&txn), [map.as_str(), "hairpin-connections"]);
    assert_eq!(counts(&txn)[5], 0);
    assert_eq!(txn.services(), ["default/web"]);
}

#[test]
fn adding_one_endpoint_adds_its_element_and_rewrites_the_modulus() {
    let three = [remote("10.1.0.1"), remote("10.1.0.2"), remote("10.1.0.3")];
    let (txn, svc, (map, tag)) =
        web_change(&three, &[three.as_slice(), &[remote("10.1.0.4")]].concat());
    let t = "ip kube-nftproxy";
    let c = "comment \"default/web:http\"";
    let dnat = |n: u32| {
        let [t0, t1] = [0, 1].map(|i| tag.split(" . ").nth(i).unwrap_or_default().to_owned());
        format!(
            "add rule {t} {svc} meta l4proto tcp dnat ip to numgen random mod 1 offset {t0} . \
             numgen random mod 1 offset {t1} . numgen random mod {n} map @{map}"
        )
    };
    assert_eq!(
        lines(&txn),
        [
            format!("add element {t} {map} {{ {tag} . 3 {c} : 10.1.0.4 . 8080 }}"),
            format!("flush chain {t} {svc}"),
            dnat(4),
        ]
    );
    assert_eq!(txn.services(), ["default/web"]);

    // A local one also adds its hairpin element, and nothing else.
    let (txn, _, _) = web_change(&three, &[three.as_slice(), &[local("10.1.0.4")]].concat());
    assert_eq!(counts(&txn), [0, 1, 0, 2, 0, 1, 0, 0]);
    assert_eq!(element_sets(&txn), [map.as_str(), "hairpin-connections"]);
    assert_eq!(txn.services(), ["default/web"]);

    // From one endpoint to two: the elements, then the rule that reads them.
    let (txn, _, _) = web_change(&three[..1], &three[..2]);
    assert_eq!(
        lines(&txn),
        [
            format!("add element {t} {map} {{ {tag} . 0 {c} : 10.1.0.1 . 8080 }}"),
            format!("add element {t} {map} {{ {tag} . 1 {c} : 10.1.0.2 . 8080 }}"),
            format!("flush chain {t} {svc}"),
            dnat(2),
        ]
    );
    // Back to one: the elements go, in the same transaction as the rule stops reading them.
    let (txn, _, _) = web_change(&three[..2], &three[..1]);
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} {map} {{ {tag} . 0 }}"),
            format!("delete element {t} {map} {{ {tag} . 1 }}"),
            format!("flush chain {t} {svc}"),
            format!("add rule {t} {svc} meta l4proto tcp dnat to 10.1.0.1:8080"),
        ]
    );
}

#[test]
fn removing_a_service_deletes_its_elements_and_chains_and_nothing_else() {
    let before = base();
    let after = cluster(
        &[remote("10.1.0.1"), remote("10.1.0.2")],
        &[local("10.1.3.1"), remote("10.1.3.2")],
        false,
    );
    let svc = chain(&before, ChainKind::Service, "shop", "front", "http");
    let ext = chain(&before, ChainKind::External, "shop", "front", "http");
    let txn = planned(&ruleset(&before.0, &before.1), &ruleset(&after.0, &after.1));
    let t = "ip kube-nftproxy";
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} cluster-ips {{ 10.96.0.20 }}"),
            format!(
                "delete element {t} hairpin-connections {{ 10.1.2.1 . 10.1.2.1 . tcp . 8080 }}"
            ),
            format!("delete element {t} service-ips {{ 10.96.0.20 . tcp . 80 }}"),
            format!("delete element {t} service-nodeports {{ tcp . 30080 }}"),
            format!("flush chain {t} {ext}"),
            format!("flush chain {t} {svc}"),
            format!("delete chain {t} {ext}"),
            format!("delete chain {t} {svc}"),
        ]
    );
    assert_eq!(counts(&txn), [0, 2, 2, 0, 4, 0, 0, 0]);
    assert_eq!(txn.services(), ["shop/front"]);
}

#[test]
fn removing_a_dual_stack_service_with_affinity_deletes_its_sets_in_both_tables() {
    let (mut services, mut slices) = base();
    let before = ruleset(&services, &slices);
    services.retain(|s| s.0.metadata.name.as_deref() != Some("api"));
    slices.retain(|s| {
        !s.0.metadata
            .name
            .as_deref()
            .unwrap_or("")
            .starts_with("api-")
    });
    let after = ruleset(&services, &slices);
    let txn = planned(&before, &after);
    // Per family: cluster-ips and service-ips elements (and the IPv6 local endpoint's hairpin
    // element), the service and endpoint chains flushed and deleted, the affinity set deleted.
    assert_eq!(counts(&txn), [0, 4, 4, 0, 5, 0, 0, 2]);
    for op in &txn.ops {
        if let Op::DeleteSet { set, .. } = op {
            assert!(set.starts_with("affinity-"), "{set}");
        }
    }
    assert_eq!(txn.services(), ["default/api"]);
}

#[test]
fn a_service_losing_its_last_endpoint_swaps_dispatch_for_reject() {
    let (txn, svc, _) = web_change(&[remote("10.1.0.1")], &[]);
    let t = "ip kube-nftproxy";
    assert_eq!(
        lines(&txn),
        [
            format!("delete element {t} service-ips {{ 10.96.0.10 . tcp . 80 }}"),
            format!(
                "add element {t} no-endpoint-services {{ 10.96.0.10 . tcp . 80 comment \"default/web:http\" : goto reject-chain }}"
            ),
            format!("flush chain {t} {svc}"),
            format!("delete chain {t} {svc}"),
        ]
    );
    assert_eq!(counts(&txn), [0, 1, 1, 1, 1, 0, 0, 0]);
    assert_eq!(txn.services(), ["default/web"]);

    // And back: the reject element goes, the chain and its dispatch come back.
    let (txn, _, _) = web_change(&[], &[remote("10.1.0.1")]);
    assert_eq!(counts(&txn), [1, 0, 0, 1, 1, 1, 0, 0]);
    assert_eq!(txn.services(), ["default/web"]);
}

/// The transaction for lb's endpoints going from `before` to `after`, and lb's chains
/// (service, local, external) in the `before` cluster.
fn lb_change(before: &[Ep], after: &[Ep]) -> (Transaction, [String; 3]) {
    let web = [remote("10.1.0.1"), remote("10.1.0.2")];
    let a = cluster(&web, before, true);
    let b = cluster(&web, after, true);
    let names = [ChainKind::Service, ChainKind::Local, ChainKind::External]
        .map(|kind| chain(&a, kind, "shop", "lb", "https"));
    let txn = planned(&ruleset(&a.0, &a.1), &ruleset(&b.0, &b.1));
    (txn, names)
}

#[test]
fn etp_local_service_losing_its_only_local_endpoint_adds_drop_elements() {
    let (txn, [svc, loc, ext]) = lb_change(
        &[local("10.1.3.1"), remote("10.1.3.2")],
        &[remote("10.1.3.2")],
    );
    let t = "ip kube-nftproxy";
    let web = [remote("10.1.0.1"), remote("10.1.0.2")];
    let lb = [local("10.1.3.1"), remote("10.1.3.2")];
    let (map, tag) = endpoint_slot(
        &cluster(&web, &lb, true),
        ChainKind::Service,
        "shop",
        "lb",
        "https",
    );
    assert_eq!(
        lines(&txn),
        [
            // The cluster set is down to one endpoint: its elements go.
            format!("delete element {t} {map} {{ {tag} . 0 }}"),
            format!("delete element {t} {map} {{ {tag} . 1 }}"),
            format!("delete element {t} hairpin-connections {{ 10.1.3.1 . 10.1.3.1 . tcp . 8443 }}"),
            format!(
                "add element {t} no-endpoint-nodeports {{ tcp . 30443 comment \"shop/lb:https\" : drop }}"
            ),
            format!(
                "add element {t} no-endpoint-services {{ 198.51.100.1 . tcp . 443 comment \"shop/lb:https\" : drop }}"
            ),
            format!("flush chain {t} {ext}"),
            format!(
                "add rule {t} {ext} ip saddr 10.0.0.0/8 goto {svc} comment \"short-circuit pod traffic\""
            ),
            format!(
                "add rule {t} {ext} fib saddr type local meta mark set meta mark | 0x00004000 comment \"masquerade local traffic\""
            ),
            format!(
                "add rule {t} {ext} fib saddr type local goto {svc} comment \"short-circuit local traffic\""
            ),
            format!("flush chain {t} {svc}"),
            format!("add rule {t} {svc} meta l4proto tcp dnat to 10.1.3.2:8443"),
            format!("flush chain {t} {loc}"),
            format!("delete chain {t} {loc}"),
        ]
    );
    // Cluster dispatch (service-ips, service-nodeports → external chain) is unchanged.
    assert_eq!(
        element_sets(&txn),
        [
            map.as_str(),
            "hairpin-connections",
            "no-endpoint-nodeports",
            "no-endpoint-services"
        ]
    );
    assert_eq!(txn.services(), ["shop/lb"]);

    // And back.
    let (txn, _) = lb_change(
        &[remote("10.1.3.2")],
        &[local("10.1.3.1"), remote("10.1.3.2")],
    );
    // The hairpin element, and the cluster set's two endpoint elements again.
    assert_eq!(counts(&txn), [1, 2, 0, 3, 2, 6, 0, 0]);
    assert_eq!(
        element_sets(&txn),
        [
            map.as_str(),
            "hairpin-connections",
            "no-endpoint-nodeports",
            "no-endpoint-services"
        ]
    );
    assert_eq!(txn.services(), ["shop/lb"]);
}

/// Two Services that reach the same local pod share its hairpin element: the incremental state
/// keeps it until neither Service needs it, and its transactions say so.
#[test]
fn a_hairpin_element_two_services_share_goes_only_with_the_last_of_them() {
    use crate::DesiredState;
    use model::ServiceRef;
    use std::collections::BTreeSet;
    let svc = |name: &str, ip: &str| service("default", name, ip).port("http", "TCP", 80);
    let pod = |name: &str| {
        slice("default", &format!("{name}-1"), name, "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(local("10.1.9.1"))
    };
    let both = (
        vec![svc("a", "10.96.0.1"), svc("b", "10.96.0.2")],
        vec![pod("a"), pod("b")],
    );
    let only_b = (vec![svc("b", "10.96.0.2")], vec![pod("b")]);
    let none: (Vec<Svc>, Vec<Slice>) = (Vec::new(), Vec::new());
    let options = crate::Options::default();
    let views = |out: &model::NodeServices, name: &str| -> Vec<model::ServicePortView> {
        let s = ServiceRef::new("default", name);
        out.ipv4.service_ports(&s).cloned().collect()
    };
    let hairpin = "hairpin-connections { 10.1.9.1 . 10.1.9.1 . tcp . 8080 }";
    // From `from` to `to`, only `name` changing: the state equals the full desired ruleset, and
    // the transaction's hairpin lines.
    let step = |state: &mut DesiredState,
                from: &(Vec<Svc>, Vec<Slice>),
                to: &(Vec<Svc>, Vec<Slice>),
                name: &str| {
        let before = compute(&node_config(), &from.0, &from.1);
        let after = compute(&node_config(), &to.0, &to.1);
        let (old, new) = (views(&before, name), views(&after, name));
        let txn = state.update(
            &after,
            &old.iter().collect::<Vec<_>>(),
            &new.iter().collect::<Vec<_>>(),
        );
        let want = ruleset(&to.0, &to.1);
        assert!(
            *state.ruleset() == want,
            "after {name} changed:\n{}\ninstead of\n{}",
            crate::render(state.ruleset()),
            crate::render(&want)
        );
        let hairpins: BTreeSet<String> = lines(&txn)
            .into_iter()
            .filter(|l| l.contains("hairpin-connections {"))
            .collect();
        hairpins
    };
    let mut state = DesiredState::new(&compute(&node_config(), &both.0, &both.1), &options);
    assert!(
        step(&mut state, &both, &only_b, "a").is_empty(),
        "b still needs it"
    );
    let gone = step(&mut state, &only_b, &none, "b");
    assert_eq!(gone.len(), 1, "{gone:?}");
    assert!(gone
        .iter()
        .all(|l| l.starts_with("delete element") && l.ends_with(hairpin)));
    // Built up one Service at a time, then taken down in the other order.
    let added = step(&mut state, &none, &only_b, "b");
    assert!(added
        .iter()
        .all(|l| l.starts_with("add element") && l.ends_with(hairpin)));
    assert_eq!(added.len(), 1);
    assert!(
        step(&mut state, &only_b, &both, "a").is_empty(),
        "already there"
    );
    let only_a = (vec![svc("a", "10.96.0.1")], vec![pod("a")]);
    assert!(
        step(&mut state, &both, &only_a, "b").is_empty(),
        "a still needs it"
    );
    assert_eq!(step(&mut state, &only_a, &none, "a").len(), 1);
}
