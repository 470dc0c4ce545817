//! Real packets through the rendered ruleset, for the traffic policies and the other
//! Service semantics of DESIGN.md §2: externalTrafficPolicy on LoadBalancer IPs,
//! terminating endpoints, session affinity, loadBalancerSourceRanges, externalIPs and IPv6
//! NodePorts. Same test bed as `packets.rs` ([`integration::packet_support`]).
//!
//! LoadBalancer ingress IPs and externalIPs are not addresses of the node: as a cloud load
//! balancer or a router would, the external client sends them to the node through a host route
//! that each test adds in the client's namespace ([`route_via_node`]).

use std::net::IpAddr;

use integration::packet_support::{
    answers, assert_fails, cluster, ip, ips, load, masqueraded_source, serve, servers, Fails,
    NODE_A, NODE_B,
};
use model::fixtures::{ep, service, slice};
use testbed::cluster::{CLIENT_IPV4, CLIENT_IPV6, NODE_IPV4, NODE_IPV6};
use testbed::{Proto, Reply, TestCluster};

/// Routes `addr` (an LB ingress IP or an externalIP) from the external client to the node, as
/// the network in front of a real node would.
fn route_via_node(cluster: &TestCluster, addr: IpAddr) {
    let (family, prefix, gateway) = match addr {
        IpAddr::V4(_) => ("-4", 32, IpAddr::from(NODE_IPV4)),
        IpAddr::V6(_) => ("-6", 128, IpAddr::from(NODE_IPV6)),
    };
    let dest = format!("{addr}/{prefix}");
    let via = gateway.to_string();
    cluster
        .client()
        .run("ip", &[family, "route", "add", &dest, "via", &via])
        .unwrap_or_else(|e| panic!("route to {addr} via the node in the client: {e}"));
}

/// Asserts that every reply saw `peer` as the client address.
fn assert_peer(replies: &[Reply], peer: IpAddr, what: &str) {
    for r in replies {
        assert_eq!(
            r.peer, peer,
            "{what}: the endpoint saw the wrong source: {r:?}"
        );
    }
}

/// Asserts that every reply saw the node's address on the endpoint's subnet (masqueraded).
fn assert_masqueraded(cluster: &TestCluster, replies: &[Reply], what: &str) {
    for r in replies {
        assert_eq!(
            r.peer,
            masqueraded_source(cluster, r),
            "{what}: the source must be masqueraded to the node: {r:?}"
        );
    }
}

#[test]
fn external_traffic_policy_local_on_a_load_balancer_ip() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, pod) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    let rules = load(
        &cluster,
        vec![
            service("default", "local", "10.96.1.10")
                .type_("LoadBalancer")
                .node_port("http", "TCP", 80, 30100)
                .node_port("dns", "UDP", 53, 30101)
                .etp_local()
                .health_check_node_port(32100)
                .lb_ingress("203.0.113.10", None)
                .build(),
            service("default", "local-elsewhere", "10.96.1.11")
                .type_("LoadBalancer")
                .node_port("http", "TCP", 80, 30102)
                .node_port("dns", "UDP", 53, 30103)
                .etp_local()
                .health_check_node_port(32101)
                .lb_ingress("203.0.113.11", None)
                .build(),
        ],
        vec![
            slice("default", "local-1", "local", "IPv4")
                .port("http", "TCP", 8080)
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.1.10", NODE_A))
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
            slice("default", "local-elsewhere-1", "local-elsewhere", "IPv4")
                .port("http", "TCP", 8080)
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
        ],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let (lb, lb_elsewhere) = (ip("203.0.113.10"), ip("203.0.113.11"));
    route_via_node(&cluster, lb);
    route_via_node(&cluster, lb_elsewhere);
    let client = cluster.client();

    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
        // From outside: the local endpoint only, and it sees the client's own address.
        let replies = answers(client, proto, lb, port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1], false),
            "{proto}: eTP Local on an LB IP uses the local endpoints only"
        );
        assert_peer(&replies, CLIENT_IPV4.into(), &format!("{proto} eTP Local"));

        // From outside, no local endpoint: dropped.
        assert_fails(client, proto, lb_elsewhere, port, Fails::TimedOut, &rules);

        // From a pod: short-circuited to the cluster-wide endpoints, not masqueraded.
        let replies = answers(pod.ns(), proto, lb, port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: a pod reaching an eTP Local LB IP uses every endpoint"
        );
        assert_peer(&replies, pod.ip(false), &format!("{proto} short-circuit"));
        let replies = answers(pod.ns(), proto, lb_elsewhere, port, 3, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[b1], false),
            "{proto}: a pod reaches the remote-only eTP Local LB IP"
        );
        assert_peer(&replies, pod.ip(false), &format!("{proto} short-circuit"));
    }
}

#[test]
fn external_traffic_policy_cluster_on_a_load_balancer_ip() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let rules = load(
        &cluster,
        vec![service("default", "lb", "10.96.1.20")
            .type_("LoadBalancer")
            .node_port("http", "TCP", 80, 30110)
            .node_port("dns", "UDP", 53, 30111)
            .lb_ingress("203.0.113.20", None)
            .build()],
        vec![slice("default", "lb-1", "lb", "IPv4")
            .port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .endpoint(ep("10.244.2.10", NODE_B))
            .build()],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let lb = ip("203.0.113.20");
    route_via_node(&cluster, lb);
    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
        let replies = answers(cluster.client(), proto, lb, port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: eTP Cluster on an LB IP reaches local and remote endpoints"
        );
        assert_masqueraded(&cluster, &replies, &format!("{proto} eTP Cluster LB IP"));
    }
}

#[test]
fn serving_terminating_endpoints_get_traffic_and_not_serving_ones_do_not() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, pod) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    let ports = |s: model::fixtures::Slice| s.port("http", "TCP", 8080).port("dns", "UDP", 8080);
    let rules = load(
        &cluster,
        vec![
            service("default", "itp", "10.96.1.30")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .itp_local()
                .build(),
            service("default", "etp", "10.96.1.31")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30120)
                .node_port("dns", "UDP", 53, 30121)
                .etp_local()
                .build(),
            service("default", "draining", "10.96.1.32")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .build(),
            service("default", "mixed", "10.96.1.33")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .build(),
            service("default", "gone", "10.96.1.34")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .build(),
        ],
        vec![
            // Local set: no ready local endpoint, so the serving-and-terminating one (a1);
            // never the terminated one (a2), nor the remote ready one (b1).
            ports(slice("default", "itp-1", "itp", "IPv4"))
                .endpoint(ep("10.244.1.10", NODE_A).serving_terminating())
                .endpoint(ep("10.244.1.11", NODE_A).terminated())
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
            ports(slice("default", "etp-1", "etp", "IPv4"))
                .endpoint(ep("10.244.1.10", NODE_A).serving_terminating())
                .endpoint(ep("10.244.1.11", NODE_A).terminated())
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
            // Cluster set: no ready endpoint anywhere, so the serving-and-terminating ones.
            ports(slice("default", "draining-1", "draining", "IPv4"))
                .endpoint(ep("10.244.1.10", NODE_A).serving_terminating())
                .endpoint(ep("10.244.1.11", NODE_A).terminated())
                .endpoint(ep("10.244.2.10", NODE_B).serving_terminating())
                .build(),
            // Cluster set: the ready ones only (a1, b1).
            ports(slice("default", "mixed-1", "mixed", "IPv4"))
                .endpoint(ep("10.244.1.10", NODE_A))
                .endpoint(ep("10.244.1.11", NODE_A).terminated())
                .endpoint(ep("10.244.2.10", NODE_B))
                .endpoint(ep("10.244.2.11", NODE_B).serving_terminating())
                .build(),
            // Only a terminated endpoint: nothing usable.
            ports(slice("default", "gone-1", "gone", "IPv4"))
                .endpoint(ep("10.244.1.11", NODE_A).terminated())
                .build(),
        ],
    );
    // Every endpoint answers if it is sent anything, terminated or not.
    let _servers = serve(&cluster, &["a1", "a2", "b1", "b2"]);
    let client = cluster.client();
    let node_ip = IpAddr::from(NODE_IPV4);
    for (proto, port, node_port) in [(Proto::Tcp, 80, 30120), (Proto::Udp, 53, 30121)] {
        let replies = answers(pod.ns(), proto, ip("10.96.1.30"), port, 10, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1], false),
            "{proto}: iTP Local falls back to the local serving-and-terminating endpoint"
        );

        let replies = answers(client, proto, node_ip, node_port, 10, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1], false),
            "{proto}: eTP Local NodePort falls back to the local serving-and-terminating endpoint"
        );
        assert_peer(&replies, CLIENT_IPV4.into(), &format!("{proto} eTP Local"));

        let replies = answers(pod.ns(), proto, ip("10.96.1.32"), port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: without ready endpoints, the serving-and-terminating ones take traffic"
        );

        let replies = answers(pod.ns(), proto, ip("10.96.1.33"), port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: with ready endpoints, terminating ones get no traffic"
        );

        assert_fails(
            pod.ns(),
            proto,
            ip("10.96.1.34"),
            port,
            Fails::Refused,
            &rules,
        );
    }
}

#[test]
fn client_ip_session_affinity_sticks_per_client() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, a2, b1) = (cluster.pod("a1"), cluster.pod("a2"), cluster.pod("b1"));
    let rules = load(
        &cluster,
        vec![service("default", "sticky", "10.96.1.40")
            .type_("NodePort")
            .node_port("http", "TCP", 80, 30130)
            .node_port("dns", "UDP", 53, 30131)
            .affinity(Some(10800))
            .build()],
        vec![slice("default", "sticky-1", "sticky", "IPv4")
            .port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .endpoint(ep("10.244.1.11", NODE_A))
            .endpoint(ep("10.244.2.10", NODE_B))
            .build()],
    );
    let _servers = serve(&cluster, &["a1", "a2", "b1"]);
    let endpoints = ips(&[a1, a2, b1], false);
    let vip = ip("10.96.1.40");
    let node_ip = IpAddr::from(NODE_IPV4);
    // Without affinity, 10 connections over 3 endpoints land on one with probability 3⁻⁹.
    let sources = [
        (cluster.pod("client").ns(), vip, 80, 53),
        (cluster.pod("b2").ns(), vip, 80, 53),
        (cluster.client(), node_ip, 30130, 30131),
    ];
    for (from, addr, tcp_port, udp_port) in sources {
        for (proto, port) in [(Proto::Tcp, tcp_port), (Proto::Udp, udp_port)] {
            let got = servers(&answers(from, proto, addr, port, 10, &rules));
            assert_eq!(
                got.len(),
                1,
                "{proto} from {} to {addr} port {port}: ClientIP affinity must keep one \
                 endpoint, got {got:?}\nruleset:\n{rules}",
                from.name()
            );
            assert!(got.is_subset(&endpoints), "{got:?}");
        }
    }
}

#[test]
fn load_balancer_source_ranges_filter_the_lb_ip_only() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, pod) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    let ports = |s: model::fixtures::Slice| {
        s.port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .endpoint(ep("10.244.2.10", NODE_B))
            .build()
    };
    let rules = load(
        &cluster,
        vec![
            service("default", "fenced", "10.96.1.50")
                .type_("LoadBalancer")
                .node_port("http", "TCP", 80, 30140)
                .node_port("dns", "UDP", 53, 30141)
                .lb_ingress("203.0.113.50", None)
                .source_ranges(&["198.51.100.0/24"])
                .build(),
            service("default", "allowed", "10.96.1.51")
                .type_("LoadBalancer")
                .node_port("http", "TCP", 80, 30142)
                .node_port("dns", "UDP", 53, 30143)
                .lb_ingress("203.0.113.51", None)
                .source_ranges(&["192.0.2.100/32"])
                .build(),
        ],
        vec![
            ports(slice("default", "fenced-1", "fenced", "IPv4")),
            ports(slice("default", "allowed-1", "allowed", "IPv4")),
        ],
    );
    // What the ruleset does with sources outside the ranges: drop (before DNAT).
    for range in ["198.51.100.0/24", "192.0.2.100"] {
        let rule = format!("ip saddr != {range} drop");
        assert!(
            rules.contains(&rule),
            "expected a firewall rule {rule:?}\nruleset:\n{rules}"
        );
    }
    let _servers = serve(&cluster, &["a1", "b1"]);
    let (fenced, allowed) = (ip("203.0.113.50"), ip("203.0.113.51"));
    route_via_node(&cluster, fenced);
    route_via_node(&cluster, allowed);
    let client = cluster.client();
    let node_ip = IpAddr::from(NODE_IPV4);
    for (proto, port, fenced_node_port) in [(Proto::Tcp, 80, 30140), (Proto::Udp, 53, 30141)] {
        // The client is outside 198.51.100.0/24: its packets to the LB IP are dropped, and so
        // are a pod's.
        assert_fails(client, proto, fenced, port, Fails::TimedOut, &rules);
        assert_fails(pod.ns(), proto, fenced, port, Fails::TimedOut, &rules);

        // The same Service's NodePort is not filtered.
        let replies = answers(client, proto, node_ip, fenced_node_port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], false), "{proto}");
        assert_masqueraded(&cluster, &replies, &format!("{proto} NodePort"));

        // A range that includes the client: answered.
        let replies = answers(client, proto, allowed, port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], false), "{proto}");
        assert_masqueraded(&cluster, &replies, &format!("{proto} allowed LB IP"));
    }
}

#[test]
fn external_ips_reach_the_service() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let ports = |s: model::fixtures::Slice| {
        s.port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .endpoint(ep("10.244.2.10", NODE_B))
            .build()
    };
    let rules = load(
        &cluster,
        vec![
            service("default", "ext", "10.96.1.60")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .external_ips(&["192.0.2.50"])
                .build(),
            service("default", "ext-local", "10.96.1.61")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .external_ips(&["192.0.2.51"])
                .etp_local()
                .build(),
        ],
        vec![
            ports(slice("default", "ext-1", "ext", "IPv4")),
            ports(slice("default", "ext-local-1", "ext-local", "IPv4")),
        ],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let (ext, ext_local) = (ip("192.0.2.50"), ip("192.0.2.51"));
    // On the client's own subnet, but not an address of the node: routed to it.
    route_via_node(&cluster, ext);
    route_via_node(&cluster, ext_local);
    let client = cluster.client();
    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
        let replies = answers(client, proto, ext, port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: eTP Cluster externalIP"
        );
        assert_masqueraded(
            &cluster,
            &replies,
            &format!("{proto} eTP Cluster externalIP"),
        );

        let replies = answers(client, proto, ext_local, port, 10, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1], false),
            "{proto}: eTP Local externalIP"
        );
        assert_peer(
            &replies,
            CLIENT_IPV4.into(),
            &format!("{proto} eTP Local externalIP"),
        );
    }
}

#[test]
fn ipv6_node_port_from_the_external_client() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let ports = |s: model::fixtures::Slice, a: &str, b: &str| {
        s.port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep(a, NODE_A))
            .endpoint(ep(b, NODE_B))
            .build()
    };
    let rules = load(
        &cluster,
        vec![
            service("default", "dual", "10.96.1.70")
                .cluster_ips(&["10.96.1.70", "fd00:10:96::70"])
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30150)
                .node_port("dns", "UDP", 53, 30151)
                .build(),
            service("default", "v6-local", "fd00:10:96::71")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30152)
                .node_port("dns", "UDP", 53, 30153)
                .etp_local()
                .build(),
        ],
        vec![
            ports(
                slice("default", "dual-4", "dual", "IPv4"),
                "10.244.1.10",
                "10.244.2.10",
            ),
            ports(
                slice("default", "dual-6", "dual", "IPv6"),
                "fd00:10:244:1::10",
                "fd00:10:244:2::10",
            ),
            ports(
                slice("default", "v6-local-1", "v6-local", "IPv6"),
                "fd00:10:244:1::10",
                "fd00:10:244:2::10",
            ),
        ],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let client = cluster.client();
    let node6 = IpAddr::from(NODE_IPV6);
    for (proto, cluster_port, local_port) in
        [(Proto::Tcp, 30150, 30152), (Proto::Udp, 30151, 30153)]
    {
        // eTP Cluster: both IPv6 endpoints, masqueraded to the node's IPv6 address.
        let replies = answers(client, proto, node6, cluster_port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], true), "{proto}");
        assert_masqueraded(&cluster, &replies, &format!("{proto} IPv6 eTP Cluster"));

        // The same NodePort over IPv4 reaches the IPv4 endpoints.
        let replies = answers(client, proto, NODE_IPV4.into(), cluster_port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], false), "{proto}");

        // eTP Local: the local endpoint, which sees the client's IPv6 address.
        let replies = answers(client, proto, node6, local_port, 10, &rules);
        assert_eq!(servers(&replies), ips(&[a1], true), "{proto}");
        assert_peer(
            &replies,
            CLIENT_IPV6.into(),
            &format!("{proto} IPv6 eTP Local"),
        );
    }
}
