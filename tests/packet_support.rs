//! Helpers for the tests with real packets (`packets.rs`, `packets_policies.rs`): the node
//! configuration and test cluster they share, the one place where a ruleset gets into the node
//! namespace ([`load`]), echo servers, and assertions on where connections land or how they fail.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use model::{node_view, ClusterView, NodeConfig};
use ruleset::{Ruleset, Transaction};
use testbed::cluster::{gateway_ipv4, gateway_ipv6};
use testbed::{connect, ConnectError, EchoServer, NetNs, Pod, Proto, Reply, TestCluster};

/// This node's name (its pods are in subnet 1, `10.244.1.0/24`).
pub const NODE_A: &str = "node-a";
/// The "other" node's name (its pods are in subnet 2, `10.244.2.0/24`).
pub const NODE_B: &str = "node-b";
/// The port every echo server listens on (the endpoints' target port).
pub const ECHO_PORT: u16 = 8080;
/// Socket timeout when an answer is expected.
pub const ANSWER: Duration = Duration::from_secs(2);
/// Socket timeout when the packets are expected to be dropped.
pub const DROPPED: Duration = Duration::from_secs(1);

/// This node: `node-a` at 192.0.2.1 / 2001:db8:1::1, pods in 10.244.0.0/16 and fd00:10:244::/56.
pub fn node_config() -> NodeConfig {
    NodeConfig {
        node_name: NODE_A.into(),
        node_ips: vec![ip("192.0.2.1"), ip("2001:db8:1::1")],
        cluster_cidrs: vec![
            "10.244.0.0/16".parse().expect("cidr"),
            "fd00:10:244::/56".parse().expect("cidr"),
        ],
        ..NodeConfig::default()
    }
}

/// Pods `client` (10.244.1.2), `a1`, `a2` (10.244.1.10, .11, this node) and `b1`, `b2`
/// (10.244.2.10, .11, "node-b").
pub fn cluster() -> TestCluster {
    TestCluster::builder()
        .local_pod("client", 2)
        .local_pod("a1", 10)
        .local_pod("a2", 11)
        .remote_pod("b1", 10)
        .remote_pod("b2", 11)
        .build()
        .unwrap_or_else(|e| panic!("building the test cluster: {e}"))
}

/// A Node object with one InternalIP.
fn k8s_node(name: &str, address: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: address.into(),
            }]),
            ..NodeStatus::default()
        }),
    }
}

/// Node-a's desired ruleset for these objects (asserting the model found no errors).
pub fn desired(services: Vec<Service>, slices: Vec<EndpointSlice>) -> Ruleset {
    let nodes = [k8s_node(NODE_A, "192.0.2.1"), k8s_node(NODE_B, "192.0.2.2")];
    let view = ClusterView::from_objects(services, slices, nodes, NODE_A);
    let services = node_view(&view, &node_config());
    assert!(
        services.errors.is_empty(),
        "model errors: {:?}",
        services.errors
    );
    ruleset::desired(&services, &ruleset::Options::default())
}

/// Brings the node namespace to `rules` the way the agent does: reads our tables back over
/// netlink, plans the smallest transaction, and applies it with the netlink backend. Returns
/// the transaction applied.
pub fn sync(ns: &NetNs, rules: &Ruleset) -> Result<Transaction, nft::ApplyError> {
    let path = PathBuf::from("/var/run/netns").join(ns.name());
    let rules = rules.clone();
    nft::in_netns(&path, move || {
        let current = nft::read_tables(&ruleset::Options::default().table_name, None)
            .unwrap_or_else(|e| panic!("reading the node's tables: {e}"));
        let txn = ruleset::plan(&current, &rules);
        nft::Backend::apply(&nft::Netlink, &txn).map(|()| txn)
    })
    .unwrap_or_else(|e| panic!("entering {}: {e}", ns.name()))
}

/// Computes node-a's ruleset for these objects and programs it into the node namespace with
/// the netlink backend ([`sync`]); returns the rendered text (for failure messages).
///
/// This is the only place where the packet tests' rules get into the node namespace.
pub fn load(cluster: &TestCluster, services: Vec<Service>, slices: Vec<EndpointSlice>) -> String {
    let rules = desired(services, slices);
    let text = ruleset::render(&rules);
    sync(cluster.node(), &rules)
        .unwrap_or_else(|e| panic!("the kernel refused the ruleset: {e}\n{text}"));
    text
}

/// Echo servers (TCP and UDP on [`ECHO_PORT`]) in the named pods; killed when dropped.
pub fn serve(cluster: &TestCluster, pods: &[&str]) -> Vec<EchoServer> {
    pods.iter()
        .map(|name| {
            EchoServer::start(cluster.pod(name).ns(), ECHO_PORT)
                .unwrap_or_else(|e| panic!("echo server in {name}: {e}"))
        })
        .collect()
}

/// `n` connections from `from` to `addr:port`, each of which must be answered; `rules` (the
/// loaded ruleset) is shown when one is not.
pub fn answers(
    from: &NetNs,
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

/// The endpoint addresses that answered.
pub fn servers(replies: &[Reply]) -> BTreeSet<IpAddr> {
    replies.iter().map(|r| r.server).collect()
}

/// The pods' addresses of one family (`v6` false: IPv4).
pub fn ips(pods: &[&Pod], v6: bool) -> BTreeSet<IpAddr> {
    pods.iter().map(|p| p.ip(v6)).collect()
}

/// The address a connection masqueraded by the node arrives from at the endpoint that sent
/// `reply`: the node's (gateway) address on the endpoint's subnet, of the endpoint's family.
/// Panics if no pod of `cluster` has the endpoint's address.
pub fn masqueraded_source(cluster: &TestCluster, reply: &Reply) -> IpAddr {
    let v6 = reply.server.is_ipv6();
    let pod = cluster
        .pods()
        .iter()
        .find(|p| p.ip(v6) == reply.server)
        .unwrap_or_else(|| panic!("no pod has the address of the endpoint in {reply:?}"));
    if v6 {
        gateway_ipv6(pod.subnet()).into()
    } else {
        gateway_ipv4(pod.subnet()).into()
    }
}

/// How a connection is expected to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fails {
    /// Rejected: ECONNREFUSED (TCP RST or ICMP port unreachable).
    Refused,
    /// Dropped: no answer within the timeout.
    TimedOut,
}

/// Asserts that a connection fails as `expected` instead of being answered.
#[track_caller]
pub fn assert_fails(
    from: &NetNs,
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

/// Parses an IP address literal (panics on a typo).
pub fn ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} is not an IP address: {e}"))
}
