//! DESIGN.md §2.1 and §2.6: which objects are read and which are skipped, LoadBalancer ingress,
//! `loadBalancerSourceRanges`, session affinity, and incremental updates of the view.

use super::*;
use crate::fixtures::{ep, node, node_config, service, slice, NODE};
use crate::ViewDiff;
use ipnet::IpNet;
use std::net::IpAddr;

fn web() -> Svc {
    service("shop", "web", "10.96.0.10").port("http", "TCP", 80)
}

fn web_slice() -> Slice {
    slice("shop", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.1", NODE))
}

fn nets(list: &[&str]) -> Vec<IpNet> {
    list.iter().map(|n| n.parse().expect("cidr")).collect()
}

fn ips(list: &[IpAddr]) -> Vec<String> {
    list.iter().map(ToString::to_string).collect()
}

/// The service-ports of both families, as strings.
fn programmed(out: &NodeServices) -> Vec<String> {
    IpFamily::ALL
        .iter()
        .flat_map(|f| {
            out.family(*f)
                .ports
                .values()
                .map(|v| format!("{} {}", v.family, v.name))
        })
        .collect()
}

// ---- Skipped Services and slices ----

#[test]
fn headless_services_are_skipped_silently() {
    let mut only_cluster_ip = service("shop", "h1", "None").port("http", "TCP", 80);
    only_cluster_ip.0.spec.as_mut().expect("spec").cluster_ips = None;
    let both = service("shop", "h2", "None").port("http", "TCP", 80);
    let out = compute(vec![only_cluster_ip, both, web()], vec![web_slice()]);
    assert_eq!(out.errors, vec![]);
    assert_eq!(programmed(&out), ["IPv4 shop/web:http/TCP"]);
}

#[test]
fn external_name_services_are_skipped_silently() {
    let mut svc = service("shop", "ext", "").type_("ExternalName");
    let spec = svc.0.spec.as_mut().expect("spec");
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    spec.external_name = Some("example.com".into());
    // Even one that (wrongly) carries a cluster IP and ports.
    let with_ip = service("shop", "ext2", "10.96.0.99")
        .type_("ExternalName")
        .port("http", "TCP", 80);
    let out = compute(vec![svc, with_ip, web()], vec![web_slice()]);
    assert_eq!(out.errors, vec![]);
    assert_eq!(programmed(&out), ["IPv4 shop/web:http/TCP"]);
}

#[test]
fn services_of_another_proxy_are_skipped_silently() {
    let other = service("shop", "other", "10.96.0.20")
        .port("http", "TCP", 80)
        .label(
            "service.kubernetes.io/service-proxy-name",
            "some-other-proxy",
        );
    let out = compute(vec![other, web()], vec![web_slice()]);
    assert_eq!(out.errors, vec![]);
    assert_eq!(programmed(&out), ["IPv4 shop/web:http/TCP"]);
}

#[test]
fn slices_labelled_headless_or_service_proxy_name_are_ignored() {
    for label in [
        "service.kubernetes.io/headless",
        "service.kubernetes.io/service-proxy-name",
    ] {
        let ignored = slice("shop", "web-x", "web", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.9", NODE))
            .label(label, "");
        let out = compute(vec![web()], vec![web_slice(), ignored.clone()]);
        assert_eq!(out.errors, vec![]);
        let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
        assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"], "{label}");

        // Labelling a slice later removes its endpoints; the owner is reported as changed.
        let mut cluster = ClusterView::new();
        cluster.upsert_service(web().build());
        let unlabelled = slice("shop", "web-x", "web", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.9", NODE));
        assert_eq!(
            cluster.upsert_slice(unlabelled.build()),
            [ServiceRef::new("shop", "web")]
        );
        assert_eq!(
            cluster.upsert_slice(ignored.build()),
            [ServiceRef::new("shop", "web")]
        );
        let out = node_view(&cluster, &node_config());
        let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
        assert_eq!(view.cluster_endpoints, vec![], "{label}");
    }
}

#[test]
fn fqdn_slices_are_ignored() {
    let fqdn = slice("shop", "web-f", "web", "FQDN")
        .port("http", "TCP", 8080)
        .endpoint(ep("example.com", NODE));
    let out = compute(vec![web()], vec![web_slice(), fqdn]);
    assert_eq!(out.errors, vec![]);
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);
}

#[test]
fn slices_join_their_service_by_label_within_the_namespace() {
    let other_ns = slice("other", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.7", NODE));
    let other_svc = slice("shop", "api-abc", "api", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.8", NODE));
    let out = compute(vec![web()], vec![web_slice(), other_ns, other_svc]);
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.1:8080"]);
}

// ---- LoadBalancer ingress ----

#[test]
fn ip_mode_proxy_ingress_is_ignored() {
    let mut svc = service("shop", "lb", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.1", Some("Proxy"))
        .lb_ingress("198.51.100.2", Some("VIP"))
        .lb_ingress("198.51.100.3", None);
    // A hostname-only ingress has no address to program.
    let lb = svc
        .0
        .status
        .as_mut()
        .and_then(|s| s.load_balancer.as_mut())
        .expect("lb");
    lb.ingress
        .as_mut()
        .expect("ingress")
        .push(k8s_openapi::api::core::v1::LoadBalancerIngress {
            hostname: Some("lb.example.com".into()),
            ..Default::default()
        });
    let out = compute(vec![svc], Vec::new());
    assert_eq!(out.errors, vec![]);
    let view = port(&out, IpFamily::V4, "shop", "lb", "http", Protocol::Tcp);
    assert_eq!(
        ips(&view.load_balancer_ips),
        ["198.51.100.2", "198.51.100.3"]
    );

    // Only Proxy ingress: no LoadBalancer entry point.
    let svc = service("shop", "lb", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.1", Some("Proxy"));
    let out = compute(vec![svc], Vec::new());
    let view = port(&out, IpFamily::V4, "shop", "lb", "http", Protocol::Tcp);
    assert!(view.load_balancer_ips.is_empty());
    assert_eq!(
        view.verdict(EntryPoint::LoadBalancer, Source::External),
        None
    );
}

#[test]
fn lb_ingress_only_counts_for_type_load_balancer() {
    let svc = service("shop", "np", "10.96.0.10")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.1", None);
    let out = compute(vec![svc], Vec::new());
    let view = port(&out, IpFamily::V4, "shop", "np", "http", Protocol::Tcp);
    assert!(view.load_balancer_ips.is_empty());
}

// ---- loadBalancerSourceRanges ----

fn fw_lb(ranges: &[&str]) -> Svc {
    service("shop", "lb", "10.96.0.10")
        .cluster_ips(&["10.96.0.10", "fd00:96::10"])
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.9", None)
        .lb_ingress("2001:db8:fe::9", None)
        .source_ranges(ranges)
}

fn firewall(out: &NodeServices, family: IpFamily) -> Option<Vec<IpNet>> {
    port(out, family, "shop", "lb", "http", Protocol::Tcp)
        .firewall
        .clone()
}

#[test]
fn source_ranges_apply_only_with_lb_ips() {
    // NodePort Service with ranges: nothing to filter (NodePorts are never filtered).
    let np = service("shop", "lb", "10.96.0.10")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 30080)
        .source_ranges(&["203.0.113.0/24"]);
    let out = compute(vec![np], Vec::new());
    assert_eq!(firewall(&out, IpFamily::V4), None);

    // No ranges: no restriction.
    let out = compute(vec![fw_lb(&[])], Vec::new());
    assert_eq!(firewall(&out, IpFamily::V4), None);
    assert_eq!(firewall(&out, IpFamily::V6), None);

    // Ranges are split by family, trimmed and truncated to their network.
    let out = compute(
        vec![fw_lb(&[" 203.0.113.5/24 ", "2001:db8:aa::/48"])],
        Vec::new(),
    );
    assert_eq!(out.errors, vec![]);
    assert_eq!(
        firewall(&out, IpFamily::V4),
        Some(nets(&["203.0.113.0/24"]))
    );
    assert_eq!(
        firewall(&out, IpFamily::V6),
        Some(nets(&["2001:db8:aa::/48"]))
    );
}

#[test]
fn source_range_containing_a_node_ip_also_allows_the_lb_ip() {
    let out = compute(
        vec![fw_lb(&[
            "192.168.0.0/16",
            "203.0.113.0/24",
            "2001:db8:aa::/48",
        ])],
        Vec::new(),
    );
    assert_eq!(
        firewall(&out, IpFamily::V4),
        Some(nets(&[
            "192.168.0.0/16",
            "203.0.113.0/24",
            "198.51.100.9/32"
        ]))
    );
    // The IPv6 ranges do not contain the IPv6 node address: no extra source.
    assert_eq!(
        firewall(&out, IpFamily::V6),
        Some(nets(&["2001:db8:aa::/48"]))
    );

    let out = compute(vec![fw_lb(&["2001:db8::/64"])], Vec::new());
    assert_eq!(
        firewall(&out, IpFamily::V6),
        Some(nets(&["2001:db8::/64", "2001:db8:fe::9/128"]))
    );
}

#[test]
fn only_the_primary_node_ip_lets_the_lb_ip_in() {
    // A secondary node address inside the ranges does not add the LB IP (upstream checks the
    // primary address only).
    let mut config = node_config();
    config.node_ips = vec![
        "192.168.0.2".parse().expect("ip"),
        "203.0.113.7".parse().expect("ip"),
    ];
    let out = compute_with(
        &config,
        vec![fw_lb(&["203.0.113.0/24"])],
        Vec::new(),
        Vec::new(),
    );
    assert_eq!(
        firewall(&out, IpFamily::V4),
        Some(nets(&["203.0.113.0/24"]))
    );
}

#[test]
fn unknown_ip_mode_ingress_is_ignored_like_proxy() {
    let svc = service("shop", "lb", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.1", Some("Tunnel"))
        .lb_ingress("198.51.100.2", Some("VIP"));
    let out = compute(vec![svc], Vec::new());
    let view = port(&out, IpFamily::V4, "shop", "lb", "http", Protocol::Tcp);
    assert_eq!(ips(&view.load_balancer_ips), ["198.51.100.2"]);
}

/// A deliberate difference from upstream (docs/architecture.md): upstream leaves the other
/// family unfiltered; we refuse every source there, because restricting sources must not leave
/// the other family wide open.
#[test]
fn source_ranges_of_only_the_other_family_refuse_every_source_of_this_family() {
    let out = compute(vec![fw_lb(&["203.0.113.0/24"])], Vec::new());
    assert_eq!(
        firewall(&out, IpFamily::V4),
        Some(nets(&["203.0.113.0/24"]))
    );
    assert_eq!(firewall(&out, IpFamily::V6), Some(vec![]));
}

// ---- Session affinity ----

#[test]
fn client_ip_affinity_timeout() {
    let out = compute(
        vec![
            web(),
            service("shop", "sticky", "10.96.0.11")
                .port("http", "TCP", 80)
                .affinity(None),
            service("shop", "short", "10.96.0.12")
                .port("http", "TCP", 80)
                .affinity(Some(60)),
        ],
        Vec::new(),
    );
    assert_eq!(out.errors, vec![]);
    let timeout =
        |name| port(&out, IpFamily::V4, "shop", name, "http", Protocol::Tcp).affinity_timeout;
    assert_eq!(timeout("web"), None);
    assert_eq!(timeout("sticky"), Some(10_800));
    assert_eq!(timeout("short"), Some(60));
}

// ---- Node addresses ----

#[test]
fn configured_node_ips_win_over_the_node_object() {
    let nodes = vec![node(NODE, &["192.168.9.9"], Some("zone-a"))];
    let out = compute_with(&node_config(), vec![web()], Vec::new(), nodes.clone());
    assert_eq!(ips(&out.ipv4.node_ips), ["192.168.0.2"]);
    let mut config = node_config();
    config.node_ips.clear();
    let out = compute_with(&config, vec![web()], Vec::new(), nodes);
    assert_eq!(ips(&out.ipv4.node_ips), ["192.168.9.9"]);
    assert!(out.ipv6.node_ips.is_empty());
    // Another node's object is not this node's.
    let out = compute_with(
        &config,
        vec![web()],
        Vec::new(),
        vec![node("node-b", &["192.168.9.8"], None)],
    );
    assert!(out.ipv4.node_ips.is_empty());
}

// ---- Incremental updates ----

#[test]
fn incremental_updates_give_the_same_view_as_a_fresh_one() {
    let api = || service("shop", "api", "10.96.0.20").port("http", "TCP", 80);
    let api_slice = || {
        slice("shop", "api-abc", "api", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.2", NODE))
    };
    let fresh = node_view(
        &ClusterView::from_objects(
            [web().build(), api().build()],
            [web_slice().build(), api_slice().build()],
            [node(NODE, &["192.168.0.2"], None)],
            NODE,
        ),
        &node_config(),
    );

    let mut view = ClusterView::new();
    // Slices may come before their Service; a slice may move to another Service and back.
    let moved = slice("shop", "web-abc", "api", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.1", NODE));
    assert_eq!(
        view.upsert_slice(moved.build()),
        [ServiceRef::new("shop", "api")]
    );
    assert_eq!(
        view.upsert_slice(web_slice().build()),
        [
            ServiceRef::new("shop", "api"),
            ServiceRef::new("shop", "web")
        ]
    );
    view.upsert_slice(api_slice().build());
    view.upsert_service(web().build());
    view.upsert_service(
        service("shop", "gone", "10.96.0.30")
            .port("http", "TCP", 80)
            .build(),
    );
    view.remove_service(&ServiceRef::new("shop", "gone"));
    view.upsert_service(api().build());
    assert_eq!(
        view.upsert_slice(web_slice().without_labels().build()),
        [ServiceRef::new("shop", "web")]
    );
    assert_eq!(
        view.remove_slice("shop", "web-abc"),
        Vec::<ServiceRef>::new()
    );
    view.upsert_slice(web_slice().build());
    view.set_node(Some(node(NODE, &["192.168.0.2"], None)));
    assert_eq!(view.service_count(), 2);
    assert_eq!(node_view(&view, &node_config()), fresh);
}

#[test]
fn diff_names_exactly_the_services_whose_objects_differ() {
    let api = || service("shop", "api", "10.96.0.20").port("http", "TCP", 80);
    let db = || service("shop", "db", "10.96.0.30").port("sql", "TCP", 5432);
    let api_slice = |ip: &str| {
        slice("shop", "api-abc", "api", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep(ip, NODE))
    };
    let this_node = |zone| node(NODE, &["192.168.0.2"], zone);
    let before = ClusterView::from_objects(
        [web().build(), api().build(), db().build()],
        [web_slice().build(), api_slice("10.1.0.2").build()],
        [this_node(None)],
        NODE,
    );
    let same = ClusterView::from_objects(
        [db().build(), api().build(), web().build()],
        [api_slice("10.1.0.2").build(), web_slice().build()],
        [this_node(None)],
        NODE,
    );
    assert_eq!(before.diff(&same), ViewDiff::default());
    assert!(before.diff(&same).is_empty());
    assert!(before.diff(&before.clone()).is_empty());

    // web's Service changed, db is gone, api's slice has a new endpoint, a new Service "new"
    // has a slice but no Service object yet, and a slice joins nothing.
    let after = ClusterView::from_objects(
        [web().port("https", "TCP", 443).build(), api().build()],
        [
            web_slice().build(),
            api_slice("10.1.0.3").build(),
            slice("shop", "new-1", "new", "IPv4").build(),
            slice("shop", "lost", "x", "IPv4").without_labels().build(),
        ],
        [this_node(None)],
        NODE,
    );
    let diff = before.diff(&after);
    let names: Vec<String> = diff.services.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["shop/api", "shop/db", "shop/new", "shop/web"]);
    assert!(!diff.node);
    assert!(diff.unjoinable);
    assert_eq!(after.slice_count(), 4);
    // The other way round, the same Services.
    assert_eq!(after.diff(&before).services, diff.services);

    // A slice that moved to another Service concerns both; a Node with another zone concerns
    // every Service, which the diff says once.
    let moved = ClusterView::from_objects(
        [web().build(), api().build(), db().build()],
        [
            slice("shop", "web-abc", "db", "IPv4")
                .port("http", "TCP", 8080)
                .endpoint(ep("10.1.0.1", NODE))
                .build(),
            api_slice("10.1.0.2").build(),
        ],
        [this_node(Some("z1"))],
        NODE,
    );
    let diff = before.diff(&moved);
    let names: Vec<String> = diff.services.iter().map(ToString::to_string).collect();
    assert_eq!(names, ["shop/db", "shop/web"]);
    assert!(diff.node);
    assert!(!diff.unjoinable);
}
