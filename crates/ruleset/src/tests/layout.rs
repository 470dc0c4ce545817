//! What `desired` lays out for specific cases (DESIGN.md §2.3, §2.4, §2.6, §3), asserted by the
//! rules' rendered text.

use super::{compute, planned, port_view, rules, table_id};
use crate::names::{affinity_set_name, endpoint_chain_name, endpoint_tag};
use crate::{
    chain_name, desired, render_table, ChainKind, ElemKey, ElemValue, Family, KeyPart, KeyType, Op,
    Options, Ruleset, SetSpec, Verdict,
};
use model::fixtures::{ep, node_config, service, slice, Slice, Svc};
use model::{IpFamily, NodeConfig, NodeServices, Protocol, ServicePortView};
use std::net::IpAddr;

/// The node view and desired ruleset of these objects.
#[track_caller]
fn build(
    config: &NodeConfig,
    options: &Options,
    services: &[Svc],
    slices: &[Slice],
) -> (NodeServices, Ruleset) {
    let out = compute(config, services, slices);
    let rs = desired(&out, options);
    (out, rs)
}

/// The fixture node without cluster CIDRs.
fn no_cidrs() -> NodeConfig {
    NodeConfig {
        cluster_cidrs: Vec::new(),
        ..node_config()
    }
}

/// shop/lb: LoadBalancer 10.96.0.30:443 (NodePort 30443, ingress 198.51.100.1) → 8443.
fn lb() -> Svc {
    service("shop", "lb", "10.96.0.30")
        .type_("LoadBalancer")
        .node_port("https", "TCP", 443, 30443)
        .lb_ingress("198.51.100.1", None)
}

/// shop/lb's slice with these `(ip, node)` endpoints.
fn lb_slice(endpoints: &[(&str, &str)]) -> Slice {
    endpoints.iter().fold(
        slice("shop", "lb-1", "lb", "IPv4").port("https", "TCP", 8443),
        |s, (ip, node)| s.endpoint(ep(ip, node)),
    )
}

fn lb_view(out: &NodeServices) -> &ServicePortView {
    port_view(out, IpFamily::V4, "shop", "lb", "https", Protocol::Tcp)
}

#[test]
fn etp_local_external_chain_short_circuits_pods_then_the_node_then_goes_local() {
    let services = [lb().etp_local().health_check_node_port(32000)];
    let slices = [lb_slice(&[("10.1.3.1", "node-a"), ("10.1.3.2", "node-b")])];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = lb_view(&out);
    let svc = chain_name(ChainKind::Service, view);
    let loc = chain_name(ChainKind::Local, view);
    let ext = chain_name(ChainKind::External, view);
    assert_eq!(
        rules(&rs, Family::Ip, &ext),
        [
            format!("ip saddr 10.0.0.0/8 goto {svc} comment \"short-circuit pod traffic\""),
            "fib saddr type local meta mark set meta mark | 0x00004000 comment \"masquerade local traffic\"".into(),
            format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""),
            format!("goto {loc}"),
        ]
    );
    assert_eq!(
        rules(&rs, Family::Ip, &loc),
        ["meta l4proto tcp dnat to 10.1.3.1:8443"]
    );
    assert_eq!(
        rules(&rs, Family::Ip, &svc),
        [dnat_from_map(ChainKind::Service, view, 2)]
    );
    assert_eq!(
        endpoint_elements(&rs, Family::Ip, ChainKind::Service, view),
        ["0 : 10.1.3.1 . 8443", "1 : 10.1.3.2 . 8443"]
    );
    // The local chain has one endpoint: a plain DNAT, no elements.
    assert!(endpoint_elements(&rs, Family::Ip, ChainKind::Local, view).is_empty());
    // External entry points go to the external chain; the ClusterIP (iTP Cluster) to the
    // service chain.
    let t = &rs.tables[&table_id(Family::Ip)];
    let target =
        |set: &str, key: Vec<KeyPart>| t.sets[set].elements[&ElemKey::new(key)].verdict().cloned();
    let ip = |s: &str| KeyPart::Ip(s.parse().expect("ip"));
    let tcp = KeyPart::Proto(Protocol::Tcp);
    assert_eq!(
        target(
            "service-ips",
            vec![ip("198.51.100.1"), tcp, KeyPart::Port(443)]
        ),
        Some(Verdict::Goto(ext.as_str().into()))
    );
    assert_eq!(
        target("service-nodeports", vec![tcp, KeyPart::Port(30443)]),
        Some(Verdict::Goto(ext.into()))
    );
    assert_eq!(
        target(
            "service-ips",
            vec![ip("10.96.0.30"), tcp, KeyPart::Port(443)]
        ),
        Some(Verdict::Goto(svc.into()))
    );
    assert!(t.sets["no-endpoint-services"].elements.is_empty());
    assert!(t.sets["no-endpoint-nodeports"].elements.is_empty());
}

#[test]
fn etp_local_without_cluster_cidrs_has_no_pod_short_circuit() {
    let services = [lb().etp_local().health_check_node_port(32000)];
    let slices = [lb_slice(&[("10.1.3.1", "node-a")])];
    let (out, rs) = build(&no_cidrs(), &Options::default(), &services, &slices);
    let view = lb_view(&out);
    let svc = chain_name(ChainKind::Service, view);
    let loc = chain_name(ChainKind::Local, view);
    assert_eq!(
        rules(&rs, Family::Ip, &chain_name(ChainKind::External, view)),
        [
            "fib saddr type local meta mark set meta mark | 0x00004000 comment \"masquerade local traffic\"".to_owned(),
            format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""),
            format!("goto {loc}"),
        ]
    );
}

#[test]
fn etp_local_without_local_endpoints_drops_external_traffic_at_the_filter_stage() {
    let services = [lb().etp_local().health_check_node_port(32000)];
    let slices = [lb_slice(&[("10.1.3.2", "node-b")])];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = lb_view(&out);
    let svc = chain_name(ChainKind::Service, view);
    let ext = chain_name(ChainKind::External, view);
    let t = &rs.tables[&table_id(Family::Ip)];
    assert!(!t.chains.contains_key(&chain_name(ChainKind::Local, view)));
    assert_eq!(
        rules(&rs, Family::Ip, &ext),
        [
            format!("ip saddr 10.0.0.0/8 goto {svc} comment \"short-circuit pod traffic\""),
            "fib saddr type local meta mark set meta mark | 0x00004000 comment \"masquerade local traffic\"".into(),
            format!("fib saddr type local goto {svc} comment \"short-circuit local traffic\""),
        ]
    );
    let drop = |set: &str, key: Vec<KeyPart>| {
        assert_eq!(
            t.sets[set]
                .elements
                .get(&ElemKey::new(key))
                .and_then(|v| v.verdict().cloned()),
            Some(Verdict::Drop),
            "{set}"
        );
    };
    let tcp = KeyPart::Proto(Protocol::Tcp);
    drop(
        "no-endpoint-services",
        vec![
            KeyPart::Ip("198.51.100.1".parse().expect("ip")),
            tcp,
            KeyPart::Port(443),
        ],
    );
    drop("no-endpoint-nodeports", vec![tcp, KeyPart::Port(30443)]);
}

#[test]
fn etp_cluster_external_chain_marks_then_goes_to_the_service_chain() {
    let services = [lb()];
    let slices = [lb_slice(&[("10.1.3.2", "node-b")])];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = lb_view(&out);
    let svc = chain_name(ChainKind::Service, view);
    let ext = chain_name(ChainKind::External, view);
    assert_eq!(
        rules(&rs, Family::Ip, &ext),
        [
            "meta mark set meta mark | 0x00004000 comment \"masquerade\"".to_owned(),
            format!("goto {svc}"),
        ]
    );
    // The mark follows the masquerade bit.
    let options = Options {
        masquerade_bit: 0,
        ..Options::default()
    };
    let (_, rs) = build(&node_config(), &options, &services, &slices);
    assert_eq!(
        rules(&rs, Family::Ip, &ext)[0],
        "meta mark set meta mark | 0x00000001 comment \"masquerade\""
    );
}

#[test]
fn one_endpoint_is_a_plain_dnat() {
    let services = [service("kube-system", "dns", "10.96.0.53").port("dns", "UDP", 53)];
    let slices = [slice("kube-system", "dns-1", "dns", "IPv4")
        .port("dns", "UDP", 5353)
        .endpoint(ep("10.1.0.1", "node-b"))];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = port_view(
        &out,
        IpFamily::V4,
        "kube-system",
        "dns",
        "dns",
        Protocol::Udp,
    );
    assert_eq!(
        rules(&rs, Family::Ip, &chain_name(ChainKind::Service, view)),
        ["meta l4proto udp dnat to 10.1.0.1:5353"]
    );
}

#[test]
fn several_endpoints_are_endpoint_map_elements_in_endpoint_order() {
    let services = [service("default", "web", "10.96.0.10").port("http", "TCP", 80)];
    let slices = [slice("default", "web-1", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.3", "node-b"))
        .endpoint(ep("10.1.0.1", "node-a"))
        .endpoint(ep("10.1.0.9", "node-b").not_ready())
        .endpoint(ep("10.1.0.2", "node-b"))];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = port_view(&out, IpFamily::V4, "default", "web", "http", Protocol::Tcp);
    let svc = chain_name(ChainKind::Service, view);
    assert_eq!(
        rules(&rs, Family::Ip, &svc),
        [dnat_from_map(ChainKind::Service, view, 3)]
    );
    assert_eq!(
        endpoint_elements(&rs, Family::Ip, ChainKind::Service, view),
        [
            "0 : 10.1.0.1 . 8080",
            "1 : 10.1.0.2 . 8080",
            "2 : 10.1.0.3 . 8080"
        ]
    );
    let slot = endpoint_tag(ChainKind::Service, view);
    let map = &rs.tables[&table_id(Family::Ip)].sets[&slot.map];
    assert_eq!(map.spec.key, [KeyType::Integer; 3]);
    assert_eq!(map.spec.data, [KeyType::Ipv4Addr, KeyType::InetService]);
    assert!(!map.spec.verdict_map);
    // Each element names its Service.
    assert!(map
        .elements
        .values()
        .all(|v| v.comment.as_deref() == Some("default/web:http")));
    // The local endpoint has a hairpin element; the others do not.
    let hairpin = &rs.tables[&table_id(Family::Ip)].sets["hairpin-connections"];
    let keys: Vec<String> = hairpin.elements.keys().map(ToString::to_string).collect();
    assert_eq!(keys, ["10.1.0.1 . 10.1.0.1 . tcp . 8080"]);
}

#[test]
fn affinity_uses_per_endpoint_sets_and_chains() {
    let services = [service("default", "sticky", "10.96.0.11")
        .port("http", "TCP", 80)
        .affinity(Some(90))];
    let slices = [slice("default", "sticky-1", "sticky", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.2", "node-b"))
        .endpoint(ep("10.1.0.1", "node-b"))];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = port_view(
        &out,
        IpFamily::V4,
        "default",
        "sticky",
        "http",
        Protocol::Tcp,
    );
    let id = table_id(Family::Ip);
    let table = &rs.tables[&id];
    let ips: [IpAddr; 2] = [
        "10.1.0.1".parse().expect("ip"),
        "10.1.0.2".parse().expect("ip"),
    ];
    let sets = ips.map(|ip| affinity_set_name(view, &ip, 8080));
    let chains = ips.map(|ip| endpoint_chain_name(view, &ip, 8080));
    for (i, ip) in ips.iter().enumerate() {
        let set = &table.sets[&sets[i]];
        assert_eq!(
            set.spec,
            SetSpec {
                key: vec![KeyType::Ipv4Addr],
                verdict_map: false,
                data: Default::default(),
                port_protocol: None,
                dynamic_timeout: Some(90),
                size: Some(65_535),
                comment: None,
            }
        );
        assert!(set.elements.is_empty());
        assert_eq!(
            rules(&rs, Family::Ip, &chains[i]),
            [
                format!("update @{} {{ ip saddr }}", sets[i]),
                format!("meta l4proto tcp dnat to {ip}:8080"),
            ]
        );
    }
    assert_eq!(
        rules(&rs, Family::Ip, &chain_name(ChainKind::Service, view)),
        [
            format!("ip saddr @{} goto {}", sets[0], chains[0]),
            format!("ip saddr @{} goto {}", sets[1], chains[1]),
            format!(
                "numgen random mod 2 vmap {{ 0 : goto {}, 1 : goto {} }}",
                chains[0], chains[1]
            ),
        ]
    );
    let text = render_table(&id, table);
    let declaration = format!(
        "\tset {} {{\n\t\ttype ipv4_addr\n\t\tsize 65535\n\t\tflags dynamic,timeout\n\t\ttimeout 1m30s\n\t}}\n",
        sets[0]
    );
    assert!(text.contains(&declaration), "{text}");

    // Without a timeout in the Service: the API default, 3 hours.
    let services = [service("default", "sticky", "10.96.0.11")
        .port("http", "TCP", 80)
        .affinity(None)];
    let (_, rs) = build(&node_config(), &Options::default(), &services, &slices);
    assert_eq!(
        rs.tables[&id].sets[&sets[0]].spec.dynamic_timeout,
        Some(10_800)
    );
}

#[test]
fn firewall_chain_drops_sources_outside_the_ranges() {
    let cases: [(&[&str], &str); 3] = [
        // A range contains the node's address: the LB IP itself is allowed too.
        (
            &["203.0.113.0/24", "192.168.0.0/16"],
            "ip saddr != { 192.168.0.0/16, 198.51.100.1, 203.0.113.0/24 } drop",
        ),
        (&["203.0.113.0/24"], "ip saddr != 203.0.113.0/24 drop"),
        // Only ranges of the other family: nothing is allowed.
        (&["2001:db8:ffff::/48"], "drop"),
    ];
    for (ranges, want) in cases {
        let services = [lb().source_ranges(ranges)];
        let slices = [lb_slice(&[("10.1.3.2", "node-b")])];
        let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
        let fw = chain_name(ChainKind::Firewall, lb_view(&out));
        assert_eq!(rules(&rs, Family::Ip, &fw), [want], "{ranges:?}");
        let elements = &rs.tables[&table_id(Family::Ip)].sets["firewall-ips"].elements;
        let key = ElemKey::new(vec![
            KeyPart::Ip("198.51.100.1".parse().expect("ip")),
            KeyPart::Proto(Protocol::Tcp),
            KeyPart::Port(443),
        ]);
        assert_eq!(
            elements.iter().collect::<Vec<_>>(),
            [(
                &key,
                &ElemValue::verdict_of(Verdict::Goto(fw.into()), Some("shop/lb:https".into()))
            )]
        );
    }
    // Checked before DNAT, for new connections.
    let (_, rs) = build(&node_config(), &Options::default(), &[lb()], &[]);
    assert_eq!(
        rules(&rs, Family::Ip, "filter-prerouting-pre-dnat"),
        ["ct state new jump firewall-check"]
    );
    assert_eq!(
        rules(&rs, Family::Ip, "firewall-check"),
        ["ip daddr . meta l4proto . th dport vmap @firewall-ips"]
    );
}

#[test]
fn services_chain_masquerades_by_source_or_all() {
    let vmaps = [
        "ip daddr . meta l4proto . th dport vmap @service-ips",
        "ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
    ];
    let with = |config: &NodeConfig, options: &Options| {
        let (_, rs) = build(config, options, &[], &[]);
        rules(&rs, Family::Ip, "services")
    };
    let default = Options::default();
    let mut want = vec!["ip daddr @cluster-ips ip saddr != 10.0.0.0/8 meta mark set meta mark | 0x00004000 comment \"masquerade ClusterIP traffic from outside the cluster\""];
    want.extend(vmaps);
    assert_eq!(with(&node_config(), &default), want);

    let all = NodeConfig {
        masquerade_all: true,
        ..node_config()
    };
    let mut want = vec!["ip daddr @cluster-ips meta mark set meta mark | 0x00004000 comment \"masquerade all ClusterIP traffic\""];
    want.extend(vmaps);
    assert_eq!(with(&all, &default), want);
    let all_no_cidrs = NodeConfig {
        masquerade_all: true,
        ..no_cidrs()
    };
    assert_eq!(with(&all_no_cidrs, &default), want);

    // Without cluster CIDRs a pod cannot be told apart: nothing is masqueraded by source.
    assert_eq!(with(&no_cidrs(), &default), vmaps);

    let (_, rs) = build(&node_config(), &default, &[], &[]);
    assert_eq!(
        rules(&rs, Family::Ip, "masquerading"),
        [
            "meta mark & 0x00004000 != 0x00000000 meta mark set meta mark ^ 0x00004000 masquerade fully-random",
            "ct status dnat ip saddr . ip daddr . meta l4proto . th dport @hairpin-connections masquerade fully-random comment \"hairpin: a pod reaching itself through a service\"",
        ]
    );
}

#[test]
fn ipv6_table_uses_ip6_and_ipv6_addresses() {
    let services = [
        service("default", "web", "10.96.0.10")
            .cluster_ips(&["10.96.0.10", "fd00:96::10"])
            .port("http", "TCP", 80)
            .affinity(Some(60)),
        service("default", "one", "fd00:96::11").port("http", "TCP", 80),
        service("default", "v4only", "10.96.0.12").port("http", "TCP", 80),
    ];
    let slices = [
        slice("default", "web-6", "web", "IPv6")
            .port("http", "TCP", 8080)
            .endpoint(ep("fd00:10::2", "node-b"))
            .endpoint(ep("fd00:10::1", "node-a")),
        slice("default", "one-6", "one", "IPv6")
            .port("http", "TCP", 8080)
            .endpoint(ep("fd00:10::3", "node-b")),
        slice("default", "v4only-4", "v4only", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.1.0.1", "node-b")),
    ];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let id = table_id(Family::Ip6);
    let table = &rs.tables[&id];
    assert_eq!(rs.tables.len(), 2);
    assert!(render_table(&id, table).starts_with("table ip6 kube-nftproxy {\n"));
    assert_eq!(table.sets["cluster-ips"].spec.key, [KeyType::Ipv6Addr]);
    assert_eq!(
        table.sets["service-ips"].spec.key,
        [KeyType::Ipv6Addr, KeyType::InetProto, KeyType::InetService]
    );
    assert_eq!(
        table.sets["hairpin-connections"].spec.key,
        [
            KeyType::Ipv6Addr,
            KeyType::Ipv6Addr,
            KeyType::InetProto,
            KeyType::InetService
        ]
    );
    let v6 = |s: &str| KeyPart::Ip(s.parse().expect("ip"));
    let cluster_ips: Vec<&ElemKey> = table.sets["cluster-ips"].elements.keys().collect();
    assert_eq!(
        cluster_ips,
        [
            &ElemKey::new(vec![v6("fd00:96::10")]),
            &ElemKey::new(vec![v6("fd00:96::11")])
        ]
    );
    let nodeport_ips: Vec<&ElemKey> = table.sets["nodeport-ips"].elements.keys().collect();
    assert_eq!(nodeport_ips, [&ElemKey::new(vec![v6("2001:db8::2")])]);
    assert_eq!(
        rules(&rs, Family::Ip6, "services"),
        [
            "ip6 daddr @cluster-ips ip6 saddr != fd00:10::/64 meta mark set meta mark | 0x00004000 comment \"masquerade ClusterIP traffic from outside the cluster\"",
            "ip6 daddr . meta l4proto . th dport vmap @service-ips",
            "ip6 daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports",
        ]
    );
    let one = port_view(&out, IpFamily::V6, "default", "one", "http", Protocol::Tcp);
    assert_eq!(
        rules(&rs, Family::Ip6, &chain_name(ChainKind::Service, one)),
        ["meta l4proto tcp dnat to [fd00:10::3]:8080"]
    );
    let web = port_view(&out, IpFamily::V6, "default", "web", "http", Protocol::Tcp);
    let first: IpAddr = "fd00:10::1".parse().expect("ip");
    let set = affinity_set_name(web, &first, 8080);
    assert_eq!(table.sets[&set].spec.key, [KeyType::Ipv6Addr]);
    assert_eq!(
        rules(&rs, Family::Ip6, &endpoint_chain_name(web, &first, 8080)),
        [
            format!("update @{set} {{ ip6 saddr }}"),
            "meta l4proto tcp dnat to [fd00:10::1]:8080".into(),
        ]
    );
    assert!(
        rules(&rs, Family::Ip6, &chain_name(ChainKind::Service, web))[0]
            .starts_with(&format!("ip6 saddr @{set} goto "))
    );
    // The IPv4-only Service is not in the IPv6 table, and the IPv4 table keeps IPv4 keys.
    assert!(!table.chains.keys().any(|c| c.contains("/v4only/")));
    assert_eq!(
        rs.tables[&table_id(Family::Ip)].sets["service-ips"]
            .spec
            .key,
        [KeyType::Ipv4Addr, KeyType::InetProto, KeyType::InetService]
    );

    // Without affinity, several IPv6 endpoints are an `ip6` numgen map.
    let services = [service("default", "web", "fd00:96::10").port("http", "TCP", 80)];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices[..1]);
    let web = port_view(&out, IpFamily::V6, "default", "web", "http", Protocol::Tcp);
    let svc = chain_name(ChainKind::Service, web);
    assert_eq!(
        rules(&rs, Family::Ip6, &svc),
        [dnat_from_map(ChainKind::Service, web, 2).replace("dnat ip ", "dnat ip6 ")]
    );
    assert_eq!(
        endpoint_elements(&rs, Family::Ip6, ChainKind::Service, web),
        ["0 : fd00:10::1 . 8080", "1 : fd00:10::2 . 8080"]
    );
    let map = endpoint_tag(ChainKind::Service, web).map;
    assert_eq!(
        rs.tables[&table_id(Family::Ip6)].sets[&map].spec.data,
        [KeyType::Ipv6Addr, KeyType::InetService]
    );
}

/// Two dual-stack LoadBalancer Services with 63-character namespaces and names that differ only
/// in their last character, eTP Local, affinity, source ranges, a 15-character SCTP port name and
/// long IPv6 endpoints (one local, one not): every kind of per-service chain and set.
fn long_names() -> (Vec<Svc>, Vec<Slice>, [(String, String); 2]) {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    let mut refs = Vec::new();
    for i in 1..=2 {
        let ns = format!("{}{i}", "n".repeat(62));
        let name = format!("{}{i}", "s".repeat(62));
        services.push(
            service(&ns, &name, &format!("10.96.0.{i}"))
                .cluster_ips(&[&format!("10.96.0.{i}"), &format!("fd00:96::{i}")])
                .type_("LoadBalancer")
                .node_port("a-long-portname", "SCTP", 80, 30000 + i)
                .etp_local()
                .health_check_node_port(32000 + i)
                .affinity(Some(60))
                .lb_ingress(&format!("198.51.100.{i}"), None)
                .lb_ingress(&format!("2001:db8:1b::{i}"), None)
                .source_ranges(&["203.0.113.0/24", "2001:db8:ffff::/48"]),
        );
        slices.push(
            slice(&ns, &format!("{name}-6"), &name, "IPv6")
                .port("a-long-portname", "SCTP", 8080)
                .endpoint(ep(
                    &format!("fd00:10:ffff:ffff:ffff:ffff:ffff:fff{i}"),
                    "node-a",
                ))
                .endpoint(ep(
                    &format!("fd00:10:ffff:ffff:ffff:ffff:ffff:ffe{i}"),
                    "node-b",
                )),
        );
        slices.push(
            slice(&ns, &format!("{name}-4"), &name, "IPv4")
                .port("a-long-portname", "SCTP", 8080)
                .endpoint(ep(&format!("10.1.{i}.255"), "node-a"))
                .endpoint(ep(&format!("10.1.{i}.254"), "node-b")),
        );
        refs.push((ns, name));
    }
    let refs = [refs[0].clone(), refs[1].clone()];
    (services, slices, refs)
}

#[test]
fn per_service_names_are_short_enough_and_distinct() {
    let (services, slices, _) = long_names();
    let (_, rs) = build(&node_config(), &Options::default(), &services, &slices);
    for (id, table) in &rs.tables {
        let chains: Vec<&String> = table.chains.keys().filter(|n| n.contains('/')).collect();
        let sets: Vec<&String> = table.sets.keys().filter(|n| n.contains('/')).collect();
        // Per Service: service, local, external, firewall chains, and per endpoint an endpoint
        // chain and an affinity set. Keys of a map: a collision would lose one.
        assert_eq!(chains.len(), 2 * (4 + 2), "{id}: {chains:#?}");
        assert_eq!(sets.len(), 2 * 2, "{id}: {sets:#?}");
        for name in chains.iter().chain(&sets) {
            assert!(name.len() <= 240, "{} bytes: {name}", name.len());
            assert!(!name.ends_with("..."), "cut although it fits: {name}");
        }
    }
    let longest = rs.tables[&table_id(Family::Ip6)]
        .sets
        .keys()
        .map(String::len)
        .max();
    assert!(longest > Some(200), "{longest:?}");
}

#[test]
fn overlong_names_are_cut_to_240_bytes_and_stay_distinct() {
    let services = [service("default", "web", "10.96.0.10").port("http", "TCP", 80)];
    let (out, _) = build(&node_config(), &Options::default(), &services, &[]);
    let base = port_view(&out, IpFamily::V4, "default", "web", "http", Protocol::Tcp);
    let named = |name: String| {
        let mut view = base.clone();
        view.name.service.name = name;
        view
    };
    // Beyond what Kubernetes allows: the readable part is cut, the hash keeps them apart.
    let a = named(format!("{}a", "x".repeat(300)));
    let b = named(format!("{}b", "x".repeat(300)));
    for kind in [
        ChainKind::Service,
        ChainKind::Local,
        ChainKind::External,
        ChainKind::Firewall,
    ] {
        let (na, nb) = (chain_name(kind, &a), chain_name(kind, &b));
        assert_eq!(na.len(), 240, "{na}");
        assert!(na.ends_with("..."), "{na}");
        assert_ne!(na, nb);
    }
    let ip: IpAddr = "fd00:10::1".parse().expect("ip");
    assert_ne!(
        endpoint_chain_name(&a, &ip, 80),
        endpoint_chain_name(&b, &ip, 80)
    );
    assert_ne!(
        affinity_set_name(&a, &ip, 80),
        affinity_set_name(&b, &ip, 80)
    );
}

#[test]
fn endpoint_names_of_distinct_ipv6_endpoints_are_distinct() {
    let services = [service("default", "web", "fd00:96::10")
        .port("http", "TCP", 80)
        .affinity(Some(60))];
    let slices = [slice("default", "web-6", "web", "IPv6")
        .port("http", "TCP", 8080)
        .endpoint(ep("::ffff:1.2.3.4", "node-b"))
        .endpoint(ep("::ffff:1:2:3:4", "node-b"))];
    let (out, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let view = port_view(&out, IpFamily::V6, "default", "web", "http", Protocol::Tcp);
    assert_eq!(view.cluster_endpoints.len(), 2);
    let table = &rs.tables[&table_id(Family::Ip6)];
    let endpoint_chains = table.chains.keys().filter(|c| c.starts_with("endpoint-"));
    assert_eq!(endpoint_chains.count(), 2, "{:#?}", table.chains.keys());
    assert_eq!(
        table
            .sets
            .keys()
            .filter(|s| s.starts_with("affinity-"))
            .count(),
        2
    );
}

#[test]
fn op_service_maps_chain_set_and_element_ops_to_the_service() {
    let (mut services, mut slices, refs) = long_names();
    services.push(service("kube-system", "my-dns", "10.96.0.53").port("dns", "UDP", 53));
    slices.push(
        slice("kube-system", "my-dns-1", "my-dns", "IPv4")
            .port("dns", "UDP", 5353)
            .endpoint(ep("10.1.9.1", "node-b")),
    );
    let (_, rs) = build(&node_config(), &Options::default(), &services, &slices);
    let txn = planned(&Ruleset::default(), &rs);
    let mut want: Vec<String> = refs.iter().map(|(ns, n)| format!("{ns}/{n}")).collect();
    want.push("kube-system/my-dns".into());
    want.sort();
    assert_eq!(txn.services(), want);
    let mut named = 0;
    for op in &txn.ops {
        let got = op.service();
        let expected = match op {
            Op::AddChain { chain: n, .. }
            | Op::AddRule { chain: n, .. }
            | Op::AddSet { set: n, .. }
                if n.contains('/') =>
            {
                want.iter().find(|s| n.contains(&format!("-{s}/"))).cloned()
            }
            Op::AddElement { value, .. } => value.comment.as_ref().and_then(|c| {
                want.iter()
                    .find(|s| c.starts_with(&format!("{s}:")))
                    .cloned()
            }),
            _ => None,
        };
        assert_eq!(got, expected, "{}", op.render());
        named += usize::from(got.is_some());
    }
    assert!(named > 40, "{named}");

    // Deletions and flushes too.
    let back = planned(
        &rs,
        &desired(&compute(&node_config(), &[], &[]), &Options::default()),
    );
    assert_eq!(back.services(), want);
    for op in &back.ops {
        match op {
            Op::FlushChain { chain, .. } | Op::DeleteChain { chain, .. } => {
                assert!(op.service().is_some(), "{}", op.render());
                assert!(chain.contains(&format!("-{}/", op.service().unwrap_or_default())));
            }
            Op::DeleteSet { set, .. } => {
                assert!(set.contains(&format!("-{}/", op.service().unwrap_or_default())));
            }
            Op::DeleteElement { value, .. } if value.comment.is_some() => {
                assert!(op.service().is_some(), "{}", op.render());
            }
            _ => assert_eq!(op.service(), None, "{}", op.render()),
        }
    }
    // The fixed chains and tables belong to no Service.
    let fixed = Op::FlushChain {
        table: table_id(Family::Ip),
        chain: "filter-prerouting-pre-dnat".into(),
    };
    assert_eq!(fixed.service(), None);
}

/// The rule of a chain whose several endpoints are in an endpoint map (IPv4 spelling).
fn dnat_from_map(kind: ChainKind, view: &ServicePortView, n: u32) -> String {
    let slot = endpoint_tag(kind, view);
    let [t0, t1] = slot.tag;
    format!(
        "meta l4proto tcp dnat ip to numgen random mod 1 offset {t0} . numgen random mod 1 \
         offset {t1} . numgen random mod {n} map @{}",
        slot.map
    )
}

/// The endpoints of one chain in its endpoint map, as `i : addr . port`, in key order.
fn endpoint_elements(
    rs: &Ruleset,
    family: Family,
    kind: ChainKind,
    view: &ServicePortView,
) -> Vec<String> {
    let slot = endpoint_tag(kind, view);
    let prefix = crate::Parts::from([KeyPart::Index(slot.tag[0]), KeyPart::Index(slot.tag[1])]);
    rs.tables[&table_id(family)].sets[&slot.map]
        .elements
        .iter()
        .filter(|(k, _)| k.0.starts_with(&prefix))
        .map(|(k, v)| {
            let data: Vec<String> = v.data_parts().map(|p| p.to_string()).collect();
            let index = k.0.get(2).map(|p| p.to_string()).unwrap_or_default();
            format!("{index} : {}", data.join(" . "))
        })
        .collect()
}

#[test]
fn endpoint_tags_are_stable_distinct_per_chain_and_spread_over_the_maps() {
    use crate::names::endpoint_maps;
    let names: Vec<String> = (0..400).map(|i| format!("svc-{i}")).collect();
    let services: Vec<Svc> = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            service("default", n, &format!("10.96.{}.{}", i / 200, i % 200 + 1))
                .port("http", "TCP", 80)
        })
        .collect();
    let out = compute(&node_config(), &services, &[]);
    let mut tags = std::collections::BTreeSet::new();
    let mut maps = std::collections::BTreeSet::new();
    for n in &names {
        let view = port_view(&out, IpFamily::V4, "default", n, "http", Protocol::Tcp);
        for kind in [ChainKind::Service, ChainKind::Local] {
            let slot = endpoint_tag(kind, view);
            // The same identity gives the same slot (a restart finds its elements again).
            assert_eq!(slot, endpoint_tag(kind, view));
            assert!(
                tags.insert(slot.tag),
                "{n} {kind:?}: tag {:?} taken",
                slot.tag
            );
            maps.insert(slot.map);
        }
    }
    // 800 TCP chains over the 32 TCP maps: every map gets some.
    assert_eq!(
        maps.len(),
        endpoint_maps(Protocol::Tcp) as usize,
        "{maps:?}"
    );
    assert_eq!(maps.first().map(String::as_str), Some("endpoints-tcp-00"));
    assert_eq!(maps.last().map(String::as_str), Some("endpoints-tcp-31"));
}
