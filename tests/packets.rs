//! Real packets through the rendered ruleset: a node namespace with the rules loaded, pods and an
//! external client in their own namespaces ([`testbed::TestCluster`]), echo servers in the pods
//! that say which address they were reached on and which client address they saw.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use model::fixtures::{ep, node, service, slice};
use model::{node_view, ClusterView, NodeConfig};
use testbed::cluster::{gateway_ipv4, CLIENT_IPV4, NODE_IPV4};
use testbed::{connect, ConnectError, EchoServer, Pod, Proto, Reply, TestCluster};

const NODE_A: &str = "node-a";
const NODE_B: &str = "node-b";
/// The port every echo server listens on (the endpoints' target port).
const ECHO_PORT: u16 = 8080;
/// Socket timeout when an answer is expected.
const ANSWER: Duration = Duration::from_secs(2);
/// Socket timeout when the packets are expected to be dropped.
const DROPPED: Duration = Duration::from_secs(1);

/// This node: `node-a` at 192.0.2.1 / 2001:db8:1::1, pods in 10.244.0.0/16 and fd00:10:244::/56.
fn node_config() -> NodeConfig {
    NodeConfig {
        node_name: NODE_A.into(),
        node_ips: vec![
            "192.0.2.1".parse().expect("ip"),
            "2001:db8:1::1".parse().expect("ip"),
        ],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().expect("cidr"),
            "fd00:10:244::/56".parse().expect("cidr"),
        ],
        ..NodeConfig::default()
    }
}

/// Pods `client` (10.244.1.2), `a1`, `a2` (10.244.1.10, .11, this node) and `b1`, `b2`
/// (10.244.2.10, .11, "node-b").
fn cluster() -> TestCluster {
    TestCluster::builder()
        .local_pod("client", 2)
        .local_pod("a1", 10)
        .local_pod("a2", 11)
        .remote_pod("b1", 10)
        .remote_pod("b2", 11)
        .build()
        .unwrap_or_else(|e| panic!("building the test cluster: {e}"))
}

/// Computes node-a's ruleset for these objects and loads it into the node namespace; returns
/// the rendered text (for failure messages).
fn load(cluster: &TestCluster, services: Vec<Service>, slices: Vec<EndpointSlice>) -> String {
    let nodes = [
        node(NODE_A, &["192.0.2.1"], None),
        node(NODE_B, &["192.0.2.2"], None),
    ];
    let view = ClusterView::from_objects(services, slices, nodes, NODE_A);
    let services = node_view(&view, &node_config());
    assert!(
        services.errors.is_empty(),
        "model errors: {:?}",
        services.errors
    );
    let rules = ruleset::desired(&services, &ruleset::Options::default());
    let text = ruleset::render(&rules);
    cluster
        .node()
        .nft_load(&text)
        .unwrap_or_else(|e| panic!("the kernel refused the ruleset: {e}\n{text}"));
    text
}

/// Echo servers (TCP and UDP on [`ECHO_PORT`]) in the named pods; killed when dropped.
fn serve(cluster: &TestCluster, pods: &[&str]) -> Vec<EchoServer> {
    pods.iter()
        .map(|name| {
            EchoServer::start(cluster.pod(name).ns(), ECHO_PORT)
                .unwrap_or_else(|e| panic!("echo server in {name}: {e}"))
        })
        .collect()
}

/// `n` connections, each of which must be answered.
fn answers(
    from: &testbed::NetNs,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    n: usize,
    rules: &str,
) -> Vec<Reply> {
    (0..n)
        .map(|i| {
            connect(from, proto, addr, port, ANSWER).unwrap_or_else(|e| {
                panic!(
                    "{proto} connection {i} from {} to {addr} port {port}: {e}\nruleset:\n{rules}",
                    from.name()
                )
            })
        })
        .collect()
}

fn servers(replies: &[Reply]) -> BTreeSet<IpAddr> {
    replies.iter().map(|r| r.server).collect()
}

fn ips(pods: &[&Pod], v6: bool) -> BTreeSet<IpAddr> {
    pods.iter().map(|p| p.ip(v6)).collect()
}

/// How a connection is expected to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fails {
    /// Rejected: ECONNREFUSED (TCP RST or ICMP port unreachable).
    Refused,
    /// Dropped: no answer within the timeout.
    TimedOut,
}

/// Asserts that a connection fails as `expected` instead of being answered.
fn assert_fails(
    from: &testbed::NetNs,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    expected: Fails,
    rules: &str,
) {
    // A refusal can take one SYN retransmission (1 s): over IPv6, an ICMP error that arrives
    // while connect() still holds the socket (the node answers synchronously over the veth)
    // is only recorded as a soft error (TcpExtLockDroppedIcmps) and TCP waits for the retry.
    let timeout = match expected {
        Fails::Refused => ANSWER,
        Fails::TimedOut => DROPPED,
    };
    let result = connect(from, proto, addr, port, timeout);
    let got = match result {
        Err(ConnectError::Refused) => Some(Fails::Refused),
        Err(ConnectError::TimedOut) => Some(Fails::TimedOut),
        _ => None,
    };
    assert_eq!(
        got,
        Some(expected),
        "{proto} to {addr} port {port} from {}: expected {expected:?}, got {result:?}\nruleset:\n{rules}",
        from.name()
    );
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("ip")
}

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
