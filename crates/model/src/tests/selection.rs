//! DESIGN.md §2.1 and §2.2: which endpoints each service-port uses, per family.

use super::*;
use crate::fixtures::{ep, node, node_config, service, slice, Ep, NODE};
use crate::NodePortAddresses;
use std::net::IpAddr;

const OTHER_NODE: &str = "node-b";

fn web() -> Svc {
    service("shop", "web", "10.96.0.10").port("http", "TCP", 80)
}

fn web_slice(name: &str, endpoints: Vec<Ep>) -> Slice {
    endpoints.into_iter().fold(
        slice("shop", name, "web", "IPv4").port("http", "TCP", 8080),
        Slice::endpoint,
    )
}

/// The IPv4 view of `shop/web:http` with one slice of these endpoints, on a node in `zone`.
fn select(endpoints: Vec<Ep>, zone: Option<&str>) -> ServicePortView {
    select_with(web(), endpoints, zone)
}

fn select_with(svc: Svc, endpoints: Vec<Ep>, zone: Option<&str>) -> ServicePortView {
    let nodes = vec![node(NODE, &["192.168.0.2"], zone)];
    let out = compute_with(
        &node_config(),
        vec![svc],
        vec![web_slice("web-abc", endpoints)],
        nodes,
    );
    assert_eq!(out.errors, vec![]);
    port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp).clone()
}

#[test]
fn only_ready_endpoints_are_used() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE),
            ep("10.1.0.2", NODE).not_ready(),
            ep("10.1.0.3", NODE).serving_terminating(),
            ep("10.2.0.1", OTHER_NODE),
            ep("10.2.0.2", OTHER_NODE).terminated(),
        ],
        None,
    );
    assert_eq!(
        addrs(&view.cluster_endpoints),
        ["10.1.0.1:8080", "10.2.0.1:8080"]
    );
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.1:8080"]);
    assert!(view
        .cluster_endpoints
        .iter()
        .all(|e| e.ready && !e.terminating));
}

#[test]
fn unset_conditions_mean_ready_serving_not_terminating() {
    let mut bare = ep("10.1.0.1", NODE);
    bare.0.conditions = None;
    let view = select(vec![bare], None);
    let e = &view.cluster_endpoints[0];
    assert!(e.ready && e.serving && !e.terminating && e.is_local);
    assert_eq!(e.node_name.as_deref(), Some(NODE));
}

#[test]
fn endpoints_on_one_node_share_its_name_across_services_and_sets() {
    let other = service("shop", "api", "10.96.0.11").port("http", "TCP", 80);
    let api_slice = slice("shop", "api-abc", "api", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.2", NODE));
    let out = compute_with(
        &node_config(),
        vec![web(), other],
        vec![web_slice("web-abc", vec![ep("10.1.0.1", NODE)]), api_slice],
        Vec::new(),
    );
    let web = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    let api = port(&out, IpFamily::V4, "shop", "api", "http", Protocol::Tcp);
    let names = [
        &web.cluster_endpoints[0],
        &web.local_endpoints[0],
        &api.cluster_endpoints[0],
    ]
    .map(|e| e.node_name.clone().expect("node name"));
    assert_eq!(&*names[0], NODE);
    assert!(names.iter().all(|n| crate::NodeName::ptr_eq(n, &names[0])));
    assert_eq!(web.cluster_endpoints[0].hints, None);
}

#[test]
fn cluster_set_falls_back_to_serving_terminating_endpoints() {
    let view = select(
        vec![
            ep("10.2.0.1", OTHER_NODE).serving_terminating(),
            ep("10.2.0.2", OTHER_NODE).terminated(),
            ep("10.2.0.3", OTHER_NODE).not_ready(),
        ],
        None,
    );
    assert_eq!(addrs(&view.cluster_endpoints), ["10.2.0.1:8080"]);
    assert_eq!(view.local_endpoints, vec![]);
    assert!(view.has_endpoints());
}

#[test]
fn local_set_falls_back_independently_of_the_cluster_set() {
    // Ready endpoints exist elsewhere, so the cluster set has no terminating ones; this node only
    // has a serving-terminating one, which the local set falls back to.
    let view = select(
        vec![
            ep("10.1.0.1", NODE).serving_terminating(),
            ep("10.1.0.2", NODE).terminated(),
            ep("10.2.0.1", OTHER_NODE),
        ],
        None,
    );
    assert_eq!(addrs(&view.cluster_endpoints), ["10.2.0.1:8080"]);
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.1:8080"]);

    // And the other way round: a ready local endpoint, nothing ready elsewhere → no fallback.
    let view = select(
        vec![
            ep("10.1.0.1", NODE),
            ep("10.2.0.1", OTHER_NODE).serving_terminating(),
        ],
        None,
    );
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.1:8080"]);
}

#[test]
fn not_serving_terminating_endpoints_are_never_used() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE).terminated(),
            ep("10.2.0.1", OTHER_NODE).terminated(),
        ],
        None,
    );
    assert_eq!(view.cluster_endpoints, vec![]);
    assert_eq!(view.local_endpoints, vec![]);
    assert!(!view.has_endpoints());
}

#[test]
fn not_ready_endpoints_that_are_not_terminating_are_never_a_fallback() {
    // A writer that sets only `ready: false` leaves `serving` unset, which reads as serving:
    // still not terminating, so not part of the fallback.
    let not_ready = |ip: &str, node: &str| {
        let mut e = ep(ip, node);
        e.0.conditions = Some(k8s_openapi::api::discovery::v1::EndpointConditions {
            ready: Some(false),
            serving: None,
            terminating: None,
        });
        e
    };
    let view = select(
        vec![
            not_ready("10.1.0.1", NODE),
            not_ready("10.2.0.1", OTHER_NODE),
        ],
        None,
    );
    assert!(view.cluster_endpoints.is_empty());
    assert!(view.local_endpoints.is_empty());
    assert!(!view.has_endpoints());
}

#[test]
fn local_set_holds_only_endpoints_on_this_node() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE),
            ep("10.2.0.1", OTHER_NODE),
            ep("10.3.0.1", ""),
            // Node names are compared exactly.
            ep("10.4.0.1", "Node-A"),
        ],
        None,
    );
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.1:8080"]);
    assert_eq!(view.cluster_endpoints.len(), 4);
    let local: Vec<bool> = view.cluster_endpoints.iter().map(|e| e.is_local).collect();
    assert_eq!(local, [true, false, false, false]);
}

#[test]
fn same_ip_port_in_two_slices_prefers_the_non_terminating_one() {
    // Both slice orders: the slice names decide which is read first.
    for (first, second) in [("web-a", "web-b"), ("web-b", "web-a")] {
        let out = compute(
            vec![web()],
            vec![
                web_slice(
                    first,
                    vec![ep("10.1.0.1", OTHER_NODE).serving_terminating()],
                ),
                web_slice(second, vec![ep("10.1.0.1", NODE), ep("10.1.0.2", NODE)]),
            ],
        );
        let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
        assert_eq!(
            addrs(&view.cluster_endpoints),
            ["10.1.0.1:8080", "10.1.0.2:8080"],
            "{first}"
        );
        let kept = &view.cluster_endpoints[0];
        assert!(
            kept.ready && !kept.terminating && kept.is_local,
            "{first}: {kept:?}"
        );
        assert_eq!(
            addrs(&view.local_endpoints),
            ["10.1.0.1:8080", "10.1.0.2:8080"]
        );
    }
}

#[test]
fn endpoints_are_sorted_by_ip_then_port() {
    let out = compute(
        vec![web()],
        vec![
            slice("shop", "web-b", "web", "IPv4")
                .port("http", "TCP", 8081)
                .endpoint(ep("10.0.0.10", NODE))
                .endpoint(ep("10.0.0.9", NODE)),
            slice("shop", "web-a", "web", "IPv4")
                .port("http", "TCP", 8080)
                .endpoint(ep("10.0.0.10", OTHER_NODE))
                .endpoint(ep("10.0.0.100", OTHER_NODE))
                .endpoint(ep("9.0.0.1", OTHER_NODE)),
        ],
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    // Numeric order (10.0.0.9 before 10.0.0.10), then port.
    assert_eq!(
        addrs(&view.cluster_endpoints),
        [
            "9.0.0.1:8080",
            "10.0.0.9:8081",
            "10.0.0.10:8080",
            "10.0.0.10:8081",
            "10.0.0.100:8080"
        ]
    );
    assert_eq!(
        addrs(&view.local_endpoints),
        ["10.0.0.9:8081", "10.0.0.10:8081"]
    );
}

// ---- Topology hints ----

#[test]
fn zone_hints_filter_the_cluster_set_when_every_ready_endpoint_has_them_and_one_matches() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE).zone_hints(&["zone-b"]),
            ep("10.2.0.1", OTHER_NODE).zone_hints(&["zone-a"]),
            ep("10.2.0.2", OTHER_NODE).zone_hints(&["zone-b", "zone-a"]),
        ],
        Some("zone-a"),
    );
    assert!(view.topology_filtered);
    assert_eq!(
        addrs(&view.cluster_endpoints),
        ["10.2.0.1:8080", "10.2.0.2:8080"]
    );
    // Hints never filter the local set.
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.1:8080"]);
}

#[test]
fn zone_hints_are_ignored_when_a_ready_endpoint_has_none() {
    for unhinted in [
        ep("10.2.0.2", OTHER_NODE),
        ep("10.2.0.2", OTHER_NODE).zone_hints(&[]),
    ] {
        let view = select(
            vec![ep("10.2.0.1", OTHER_NODE).zone_hints(&["zone-a"]), unhinted],
            Some("zone-a"),
        );
        assert!(!view.topology_filtered);
        assert_eq!(
            addrs(&view.cluster_endpoints),
            ["10.2.0.1:8080", "10.2.0.2:8080"]
        );
    }
}

#[test]
fn zone_hints_are_ignored_when_none_matches_this_zone() {
    let view = select(
        vec![
            ep("10.2.0.1", OTHER_NODE).zone_hints(&["zone-b"]),
            ep("10.2.0.2", OTHER_NODE).zone_hints(&["zone-c"]),
        ],
        Some("zone-a"),
    );
    assert!(!view.topology_filtered);
    assert_eq!(view.cluster_endpoints.len(), 2);
}

#[test]
fn endpoints_that_are_not_ready_do_not_stop_topology() {
    let view = select(
        vec![
            ep("10.2.0.1", OTHER_NODE).zone_hints(&["zone-a"]),
            ep("10.2.0.2", OTHER_NODE).zone_hints(&["zone-b"]),
            ep("10.2.0.3", OTHER_NODE).not_ready(),
            ep("10.2.0.4", OTHER_NODE).serving_terminating(),
        ],
        Some("zone-a"),
    );
    assert!(view.topology_filtered);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.2.0.1:8080"]);
}

#[test]
fn no_zone_label_means_no_zone_filtering() {
    for zone in [None, Some("")] {
        let view = select(
            vec![
                ep("10.2.0.1", OTHER_NODE).zone_hints(&["zone-a"]),
                ep("10.2.0.2", OTHER_NODE).zone_hints(&["zone-b"]),
            ],
            zone,
        );
        assert!(!view.topology_filtered, "{zone:?}");
        assert_eq!(view.cluster_endpoints.len(), 2, "{zone:?}");
    }
    // Without a Node object at all, the same.
    let out = compute(
        vec![web()],
        vec![web_slice(
            "web-abc",
            vec![
                ep("10.2.0.1", OTHER_NODE).zone_hints(&[""]),
                ep("10.2.0.2", OTHER_NODE).zone_hints(&["zone-b"]),
            ],
        )],
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert!(!view.topology_filtered);
    assert_eq!(view.cluster_endpoints.len(), 2);
}

#[test]
fn node_hints_take_precedence_over_zone_hints() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE)
                .node_hints(&[NODE])
                .zone_hints(&["zone-b"]),
            ep("10.2.0.1", OTHER_NODE)
                .node_hints(&[OTHER_NODE])
                .zone_hints(&["zone-a"]),
        ],
        Some("zone-a"),
    );
    assert!(view.topology_filtered);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);

    // Node hints apply without any zone label.
    let view = select(
        vec![
            ep("10.2.0.1", OTHER_NODE).node_hints(&[NODE, OTHER_NODE]),
            ep("10.2.0.2", OTHER_NODE).node_hints(&[OTHER_NODE]),
        ],
        None,
    );
    assert!(view.topology_filtered);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.2.0.1:8080"]);
}

#[test]
fn node_hints_without_a_match_fall_back_to_zone_hints() {
    let cases = [
        // Every ready endpoint has node hints, none for this node.
        (vec![OTHER_NODE], vec![OTHER_NODE]),
        // Node hints on only some endpoints (one of them for this node): ignored.
        (vec![], vec![NODE]),
    ];
    for (first_nodes, second_nodes) in cases {
        let view = select(
            vec![
                ep("10.2.0.1", OTHER_NODE)
                    .zone_hints(&["zone-a"])
                    .node_hints(&first_nodes),
                ep("10.2.0.2", OTHER_NODE)
                    .zone_hints(&["zone-b"])
                    .node_hints(&second_nodes),
            ],
            Some("zone-a"),
        );
        assert!(view.topology_filtered);
        assert_eq!(
            addrs(&view.cluster_endpoints),
            ["10.2.0.1:8080"],
            "{first_nodes:?}"
        );
    }
}

#[test]
fn hints_never_filter_the_local_set() {
    let view = select(
        vec![
            ep("10.1.0.1", NODE)
                .node_hints(&[OTHER_NODE])
                .zone_hints(&["zone-b"]),
            ep("10.1.0.2", NODE)
                .node_hints(&[OTHER_NODE])
                .zone_hints(&["zone-b"]),
            ep("10.2.0.1", OTHER_NODE)
                .node_hints(&[NODE])
                .zone_hints(&["zone-a"]),
        ],
        Some("zone-a"),
    );
    assert!(view.topology_filtered);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.2.0.1:8080"]);
    assert_eq!(
        addrs(&view.local_endpoints),
        ["10.1.0.1:8080", "10.1.0.2:8080"]
    );
}

#[test]
fn terminating_fallback_ignores_topology() {
    let view = select(
        vec![
            ep("10.2.0.1", OTHER_NODE)
                .serving_terminating()
                .zone_hints(&["zone-a"]),
            ep("10.2.0.2", OTHER_NODE)
                .serving_terminating()
                .zone_hints(&["zone-b"]),
            ep("10.2.0.3", OTHER_NODE).serving_terminating(),
        ],
        Some("zone-a"),
    );
    assert!(!view.topology_filtered);
    assert_eq!(
        addrs(&view.cluster_endpoints),
        ["10.2.0.1:8080", "10.2.0.2:8080", "10.2.0.3:8080"]
    );
}

// ---- Ports ----

#[test]
fn ports_are_matched_by_name_and_protocol() {
    let svc = service("kube-system", "dns", "10.96.0.53")
        .port("dns", "UDP", 53)
        .port("dns-tcp", "TCP", 53);
    let slices = vec![
        slice("kube-system", "dns-a", "dns", "IPv4")
            .port("dns", "UDP", 5353)
            .port("dns-tcp", "TCP", 5354)
            .endpoint(ep("10.1.0.1", NODE)),
        // Same names, other protocols: these match no Service port.
        slice("kube-system", "dns-b", "dns", "IPv4")
            .port("dns", "TCP", 5355)
            .port("dns-tcp", "UDP", 5356)
            .endpoint(ep("10.1.0.2", NODE)),
    ];
    let out = compute(vec![svc], slices);
    assert_eq!(out.errors, vec![]);
    let udp = port(
        &out,
        IpFamily::V4,
        "kube-system",
        "dns",
        "dns",
        Protocol::Udp,
    );
    let tcp = port(
        &out,
        IpFamily::V4,
        "kube-system",
        "dns",
        "dns-tcp",
        Protocol::Tcp,
    );
    assert_eq!((udp.port, tcp.port), (53, 53));
    // The endpoint port is the slice's (the targetPort), never the Service's.
    assert_eq!(addrs(&udp.cluster_endpoints), ["10.1.0.1:5353"]);
    assert_eq!(addrs(&tcp.cluster_endpoints), ["10.1.0.1:5354"]);
    assert_eq!(out.ipv4.ports.len(), 2);
}

#[test]
fn unnamed_port_matches_unnamed_slice_port() {
    let svc = service("shop", "one", "10.96.0.11").port("", "TCP", 80);
    let mut unnamed = slice("shop", "one-a", "one", "IPv4").endpoint(ep("10.1.0.1", NODE));
    unnamed.0.ports = Some(vec![k8s_openapi::api::discovery::v1::EndpointPort {
        name: None,
        port: Some(8080),
        protocol: None,
        app_protocol: None,
    }]);
    let named = slice("shop", "one-b", "one", "IPv4")
        .port("http", "TCP", 8081)
        .endpoint(ep("10.1.0.2", NODE));
    let out = compute(vec![svc], vec![unnamed, named]);
    assert_eq!(out.errors, vec![]);
    let view = port(&out, IpFamily::V4, "shop", "one", "", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);
    assert_eq!(view.label(), "shop/one:80");
}

// ---- Dual stack and IPv6 ----

fn dual() -> Svc {
    service("shop", "dual", "10.96.0.30")
        .cluster_ips(&["fd00:96::30", "10.96.0.30"])
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30030)
        .external_ips(&["203.0.113.30", "2001:db8:ff::30"])
        .lb_ingress("198.51.100.30", None)
        .lb_ingress("2001:db8:fe::30", None)
        .etp_local()
        .health_check_node_port(32030)
}

fn dual_slices() -> Vec<Slice> {
    vec![
        slice("shop", "dual-v4", "dual", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.1", NODE))
            .endpoint(ep("10.2.0.1", OTHER_NODE)),
        slice("shop", "dual-v6", "dual", "IPv6")
            .port("http", "TCP", 8080)
            .endpoint(ep("fd00:10::2", OTHER_NODE)),
    ]
}

#[test]
fn dual_stack_slices_land_in_their_families() {
    let out = compute(vec![dual()], dual_slices());
    assert_eq!(out.errors, vec![]);
    let v4 = port(&out, IpFamily::V4, "shop", "dual", "http", Protocol::Tcp);
    let v6 = port(&out, IpFamily::V6, "shop", "dual", "http", Protocol::Tcp);
    assert_eq!(v4.family, IpFamily::V4);
    assert_eq!(v6.family, IpFamily::V6);
    assert_eq!(v4.cluster_ip, "10.96.0.30".parse::<IpAddr>().expect("ip"));
    assert_eq!(v6.cluster_ip, "fd00:96::30".parse::<IpAddr>().expect("ip"));
    assert_eq!(
        addrs(&v4.cluster_endpoints),
        ["10.1.0.1:8080", "10.2.0.1:8080"]
    );
    assert_eq!(addrs(&v4.local_endpoints), ["10.1.0.1:8080"]);
    assert_eq!(addrs(&v6.cluster_endpoints), ["[fd00:10::2]:8080"]);
    assert_eq!(v6.local_endpoints, vec![]);
    let strings = |ips: &[IpAddr]| ips.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(strings(&v4.external_ips), ["203.0.113.30"]);
    assert_eq!(strings(&v6.external_ips), ["2001:db8:ff::30"]);
    assert_eq!(strings(&v4.load_balancer_ips), ["198.51.100.30"]);
    assert_eq!(strings(&v6.load_balancer_ips), ["2001:db8:fe::30"]);
    // Each family decides on its own: IPv4 has a local endpoint, IPv6 drops outside clients.
    assert_eq!(
        v4.verdict(EntryPoint::NodePort, Source::External),
        Some(local(false))
    );
    assert_eq!(
        v6.verdict(EntryPoint::NodePort, Source::External),
        Some(DROP)
    );
    assert_eq!(
        v6.verdict(EntryPoint::LoadBalancer, Source::Pod),
        Some(cluster(false))
    );
}

#[test]
fn single_stack_service_has_no_view_in_the_other_family() {
    let mut svc = dual();
    svc = svc.cluster_ips(&["10.96.0.30"]);
    let out = compute(vec![svc], dual_slices());
    assert_eq!(out.errors, vec![]);
    assert!(out.ipv6.ports.is_empty());
    assert!(out.ipv6.health_checks.is_empty());
    let v4 = port(&out, IpFamily::V4, "shop", "dual", "http", Protocol::Tcp);
    // The IPv6 endpoints, externalIP and LB IP go nowhere.
    assert!(v4.cluster_endpoints.iter().all(|e| e.ip.is_ipv4()));
    assert!(v4
        .external_ips
        .iter()
        .chain(&v4.load_balancer_ips)
        .all(IpAddr::is_ipv4));

    // An IPv6-only Service on the same objects: only an IPv6 view.
    let out = compute(vec![dual().cluster_ips(&["fd00:96::30"])], dual_slices());
    assert!(out.ipv4.ports.is_empty());
    let v6 = port(&out, IpFamily::V6, "shop", "dual", "http", Protocol::Tcp);
    assert_eq!(addrs(&v6.cluster_endpoints), ["[fd00:10::2]:8080"]);
}

#[test]
fn ipv6_node_ips_from_the_node_object() {
    let mut config = node_config();
    config.node_ips.clear();
    let nodes = vec![node(
        NODE,
        &["::1", "2001:db8::2", "192.168.0.2", "2001:db8::3"],
        None,
    )];
    let out = compute_with(&config, vec![dual()], dual_slices(), nodes.clone());
    assert_eq!(out.errors, vec![]);
    let ips = |v: &[IpAddr]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        ips(&out.ipv6.node_ips),
        ["::1", "2001:db8::2", "2001:db8::3"]
    );
    assert_eq!(ips(&out.ipv4.node_ips), ["192.168.0.2"]);
    // The primary address takes NodePorts; loopback never does.
    assert_eq!(ips(&out.ipv6.node_port_ips), ["2001:db8::2"]);
    assert_eq!(ips(&out.ipv4.node_port_ips), ["192.168.0.2"]);

    config.node_port_addresses = NodePortAddresses::Cidrs(vec![
        "2001:db8::/64".parse().expect("cidr"),
        "::1/128".parse().expect("cidr"),
    ]);
    let out = compute_with(&config, vec![dual()], dual_slices(), nodes);
    assert_eq!(ips(&out.ipv6.node_port_ips), ["2001:db8::2", "2001:db8::3"]);
    assert!(out.ipv4.node_port_ips.is_empty());
}

#[test]
fn ipv6_only_node_and_service() {
    let mut config = node_config();
    config.node_ips = vec!["2001:db8::2".parse().expect("ip")];
    let svc = service("shop", "six", "fd00:96::60")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 30060)
        .itp_local();
    let slices = vec![slice("shop", "six-a", "six", "IPv6")
        .port("http", "TCP", 8080)
        .endpoint(ep("fd00:10::1", NODE))
        .endpoint(ep("fd00:10::2", OTHER_NODE))];
    let out = compute_with(&config, vec![svc], slices, Vec::new());
    assert_eq!(out.errors, vec![]);
    assert!(out.ipv4.node_ips.is_empty());
    assert!(out.ipv4.ports.is_empty());
    let v6 = port(&out, IpFamily::V6, "shop", "six", "http", Protocol::Tcp);
    assert_eq!(addrs(&v6.local_endpoints), ["[fd00:10::1]:8080"]);
    assert_verdicts(v6, |entry, source| match entry {
        EntryPoint::ClusterIp => Some(local(source != Source::Pod)),
        EntryPoint::NodePort => Some(cluster(true)),
        _ => None,
    });
}

#[test]
fn an_address_of_the_wrong_family_for_the_slice_is_not_used() {
    let out = compute(
        vec![web()],
        vec![web_slice(
            "web-abc",
            vec![ep("fd00:10::1", NODE), ep("10.1.0.1", NODE)],
        )],
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
}
