//! Real packets through the rendered ruleset: a node namespace with the rules loaded, pods and an
//! external client in their own namespaces ([`testbed::TestCluster`]), echo servers in the pods
//! that say which address they were reached on and which client address they saw.

use std::net::IpAddr;

use integration::packet_support::{
    answers, assert_fails, cluster, ip, ips, load, serve, servers, Fails, NODE_A, NODE_B,
};
use model::fixtures::{ep, service, slice};
use testbed::cluster::{gateway_ipv4, CLIENT_IPV4, NODE_IPV4};
use testbed::Proto;

#[test]
fn cluster_ip_reaches_local_and_remote_endpoints_and_masquerades_only_node_traffic() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, client) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    let rules = load(
        &cluster,
        vec![service("default", "web", "10.96.0.10")
            .port("http", "TCP", 80)
            .port("stats", "UDP", 81)
            .build()],
        vec![slice("default", "web-1", "web", "IPv4")
            .port("http", "TCP", 8080)
            .port("stats", "UDP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .endpoint(ep("10.244.2.10", NODE_B))
            .build()],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let vip = ip("10.96.0.10");

    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 81)] {
        // From a pod: both endpoints, and they see the pod's own address.
        let replies = answers(client.ns(), proto, vip, port, 20, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1, b1], false),
            "{proto}: 20 connections should reach both endpoints"
        );
        for r in &replies {
            assert_eq!(
                r.peer,
                IpAddr::from(client.ipv4()),
                "{proto}: pod traffic must not be masqueraded: {r:?}"
            );
        }

        // From the node: masqueraded to the address of the interface towards the endpoint
        // (unmasqueraded, the endpoint would see 192.0.2.1, the source the route chose).
        let replies = answers(cluster.node(), proto, vip, port, 10, &rules);
        for r in &replies {
            let IpAddr::V4(server) = r.server else {
                panic!("IPv4 expected: {r:?}")
            };
            let gateway = gateway_ipv4(server.octets()[2]);
            assert_eq!(
                r.peer,
                IpAddr::from(gateway),
                "{proto}: node traffic must be masqueraded: {r:?}"
            );
        }
    }

    // A port the Service does not define: rejected (cluster-ips-check).
    assert_fails(client.ns(), Proto::Tcp, vip, 82, Fails::Refused, &rules);
}

#[test]
fn tcp_and_udp_on_the_same_port_reach_different_endpoints() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, client) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    // One Service with "dns-tcp" and "dns" on port 53, each port's endpoints in their own
    // slice; and two Services with only TCP, only UDP on port 99.
    let rules = load(
        &cluster,
        vec![
            service("kube-system", "dns", "10.96.0.53")
                .port("dns-tcp", "TCP", 53)
                .port("dns", "UDP", 53)
                .build(),
            service("default", "only-tcp", "10.96.0.60")
                .port("p", "TCP", 99)
                .build(),
            service("default", "only-udp", "10.96.0.61")
                .port("p", "UDP", 99)
                .build(),
        ],
        vec![
            slice("kube-system", "dns-tcp", "dns", "IPv4")
                .port("dns-tcp", "TCP", 8080)
                .endpoint(ep("10.244.1.10", NODE_A))
                .build(),
            slice("kube-system", "dns-udp", "dns", "IPv4")
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
            slice("default", "only-tcp", "only-tcp", "IPv4")
                .port("p", "TCP", 8080)
                .endpoint(ep("10.244.1.10", NODE_A))
                .build(),
            slice("default", "only-udp", "only-udp", "IPv4")
                .port("p", "UDP", 8080)
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
        ],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let dns = ip("10.96.0.53");
    let tcp = answers(client.ns(), Proto::Tcp, dns, 53, 6, &rules);
    let udp = answers(client.ns(), Proto::Udp, dns, 53, 6, &rules);
    assert_eq!(servers(&tcp), ips(&[a1], false), "TCP 53 goes to a1 only");
    assert_eq!(servers(&udp), ips(&[b1], false), "UDP 53 goes to b1 only");

    let tcp = answers(client.ns(), Proto::Tcp, ip("10.96.0.60"), 99, 3, &rules);
    let udp = answers(client.ns(), Proto::Udp, ip("10.96.0.61"), 99, 3, &rules);
    assert_eq!(servers(&tcp), ips(&[a1], false));
    assert_eq!(servers(&udp), ips(&[b1], false));
    // The other protocol on each ClusterIP is not defined: rejected.
    assert_fails(
        client.ns(),
        Proto::Udp,
        ip("10.96.0.60"),
        99,
        Fails::Refused,
        &rules,
    );
    assert_fails(
        client.ns(),
        Proto::Tcp,
        ip("10.96.0.61"),
        99,
        Fails::Refused,
        &rules,
    );
}

#[test]
fn internal_traffic_policy_local_and_services_without_endpoints() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, client) = (cluster.pod("a1"), cluster.pod("client"));
    let rules = load(
        &cluster,
        vec![
            service("default", "local", "10.96.0.20")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .itp_local()
                .build(),
            service("default", "local-elsewhere", "10.96.0.21")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .itp_local()
                .build(),
            service("default", "empty", "10.96.0.22")
                .port("http", "TCP", 80)
                .port("dns", "UDP", 53)
                .build(),
        ],
        vec![
            slice("default", "local-1", "local", "IPv4")
                .port("http", "TCP", 8080)
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.1.10", NODE_A))
                .endpoint(ep("10.244.2.10", NODE_B))
                .endpoint(ep("10.244.2.11", NODE_B))
                .build(),
            slice("default", "local-elsewhere-1", "local-elsewhere", "IPv4")
                .port("http", "TCP", 8080)
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
        ],
    );
    let _servers = serve(&cluster, &["a1", "b1", "b2"]);
    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
        let replies = answers(client.ns(), proto, ip("10.96.0.20"), port, 10, &rules);
        assert_eq!(
            servers(&replies),
            ips(&[a1], false),
            "{proto}: iTP Local answers from the local endpoint only"
        );
        assert_fails(
            client.ns(),
            proto,
            ip("10.96.0.21"),
            port,
            Fails::TimedOut,
            &rules,
        );
        assert_fails(
            client.ns(),
            proto,
            ip("10.96.0.22"),
            port,
            Fails::Refused,
            &rules,
        );
        // Also from the node itself.
        assert_fails(
            cluster.node(),
            proto,
            ip("10.96.0.22"),
            port,
            Fails::Refused,
            &rules,
        );
    }
}

#[test]
fn node_port_external_traffic_policy() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1) = (cluster.pod("a1"), cluster.pod("b1"));
    let rules = load(
        &cluster,
        vec![
            service("default", "cluster", "10.96.0.40")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30080)
                .node_port("dns", "UDP", 53, 30053)
                .build(),
            service("default", "local", "10.96.0.41")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30081)
                .node_port("dns", "UDP", 53, 30054)
                .etp_local()
                .build(),
            service("default", "local-elsewhere", "10.96.0.42")
                .type_("NodePort")
                .node_port("http", "TCP", 80, 30082)
                .node_port("dns", "UDP", 53, 30055)
                .etp_local()
                .build(),
        ],
        vec![
            slice("default", "cluster-1", "cluster", "IPv4")
                .port("http", "TCP", 8080)
                .port("dns", "UDP", 8080)
                .endpoint(ep("10.244.1.10", NODE_A))
                .endpoint(ep("10.244.2.10", NODE_B))
                .build(),
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
    let client = cluster.client();
    let node_ip = IpAddr::from(NODE_IPV4);
    for (proto, cluster_port, local_port, elsewhere_port) in [
        (Proto::Tcp, 30080, 30081, 30082),
        (Proto::Udp, 30053, 30054, 30055),
    ] {
        // eTP Cluster: any endpoint; the source is masqueraded to the node.
        let replies = answers(client, proto, node_ip, cluster_port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], false), "{proto}");
        for r in &replies {
            let IpAddr::V4(server) = r.server else {
                panic!("IPv4 expected: {r:?}")
            };
            assert_eq!(
                r.peer,
                IpAddr::from(gateway_ipv4(server.octets()[2])),
                "{proto} eTP Cluster must masquerade: {r:?}"
            );
        }

        // eTP Local: the local endpoint only, and it sees the client's own address.
        let replies = answers(client, proto, node_ip, local_port, 10, &rules);
        assert_eq!(servers(&replies), ips(&[a1], false), "{proto}");
        for r in &replies {
            assert_eq!(
                r.peer,
                IpAddr::from(CLIENT_IPV4),
                "{proto} eTP Local must keep the source: {r:?}"
            );
        }

        // eTP Local without a local endpoint: dropped.
        assert_fails(
            client,
            proto,
            node_ip,
            elsewhere_port,
            Fails::TimedOut,
            &rules,
        );
    }
}

#[test]
fn pod_reaching_itself_through_a_service_is_masqueraded() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let a1 = cluster.pod("a1");
    let rules = load(
        &cluster,
        vec![service("default", "self", "10.96.0.50")
            .port("http", "TCP", 80)
            .build()],
        vec![slice("default", "self-1", "self", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.244.1.10", NODE_A))
            .build()],
    );
    let _servers = serve(&cluster, &["a1"]);
    let replies = answers(a1.ns(), Proto::Tcp, ip("10.96.0.50"), 80, 3, &rules);
    for r in &replies {
        assert_eq!(r.server, IpAddr::from(a1.ipv4()));
        assert_eq!(
            r.peer,
            IpAddr::from(gateway_ipv4(1)),
            "hairpin traffic must be masqueraded: {r:?}"
        );
    }
}

#[test]
fn ipv6_cluster_ip_from_a_pod() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let (a1, b1, client) = (cluster.pod("a1"), cluster.pod("b1"), cluster.pod("client"));
    let rules = load(
        &cluster,
        vec![service("default", "web6", "fd00:10:96::10")
            .port("http", "TCP", 80)
            .port("dns", "UDP", 53)
            .build()],
        vec![slice("default", "web6-1", "web6", "IPv6")
            .port("http", "TCP", 8080)
            .port("dns", "UDP", 8080)
            .endpoint(ep("fd00:10:244:1::10", NODE_A))
            .endpoint(ep("fd00:10:244:2::10", NODE_B))
            .build()],
    );
    let _servers = serve(&cluster, &["a1", "b1"]);
    let vip = ip("fd00:10:96::10");
    for (proto, port) in [(Proto::Tcp, 80), (Proto::Udp, 53)] {
        let replies = answers(client.ns(), proto, vip, port, 20, &rules);
        assert_eq!(servers(&replies), ips(&[a1, b1], true), "{proto}");
        for r in &replies {
            assert_eq!(
                r.peer,
                client.ip(true),
                "{proto}: pod traffic keeps its source"
            );
        }
    }
    assert_fails(client.ns(), Proto::Tcp, vip, 81, Fails::Refused, &rules);
}
