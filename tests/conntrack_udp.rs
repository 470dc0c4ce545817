//! Stale UDP flows with real packets. A UDP client that keeps one source port keeps one
//! conntrack entry, and NAT is only decided for an entry's first packet: a rules change alone
//! does not move such a flow. These tests show the flow stuck on the old path after a sync, then
//! moved by [`nft::delete_udp_flows`] with the matches [`nft::stale_udp_flows`] computes, run in
//! the node namespace:
//! - an endpoint removed from a Service: the flow stays on it until its entry is deleted
//!   (IPv4 and IPv6);
//! - many flows to a removed endpoint: all deleted, over several batches of deletions;
//! - a Service that appears with endpoints: flows sent to its ClusterIP and NodePort before it
//!   existed (forwarded to the default route, or refused by the node) stay blackholed until
//!   their entries are deleted.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use integration::packet_support::{
    cluster, desired, ip, node_config, serve, sync, ANSWER, DROPPED, ECHO_PORT, NODE_A,
};
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use model::fixtures::{ep, service, slice};
use model::{node_view, ClusterView, NodeServices};
use nft::UdpFlowMatch;
use testbed::cluster::NODE_IPV4;
use testbed::{NetNs, Pod, TestCluster};

/// The one source port the stuck flow keeps.
const FIXED_PORT: u16 = 40053;
/// Another source port: a fresh flow, which the current rules decide.
const FRESH_PORT: u16 = 40054;
/// Attempts when an answer is expected (the first datagram to a new neighbour may be slow).
const ATTEMPTS: usize = 3;

/// UDP client with a fixed source port. argv: address, port, source port, timeout in seconds.
/// Prints `REPLY <text>`, `REFUSED`, `TIMEOUT` or `ERROR <message>`. Every run binds the same
/// source port, so consecutive runs are one flow for conntrack.
const UDP_CLIENT: &str = r#"
import socket, sys
addr, port, sport, timeout = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("::" if fam == socket.AF_INET6 else "0.0.0.0", sport))
s.settimeout(timeout)
try:
    s.connect((addr, port))
    s.send(b"ping\n")
    print("REPLY " + s.recv(256).decode(errors="replace").strip())
except TimeoutError:
    print("TIMEOUT")
except ConnectionRefusedError:
    print("REFUSED")
except OSError as e:
    print("ERROR %s" % e)
"#;

/// Many flows at once. argv: address, port, first source port, count. Sends one datagram from
/// each source port, then waits for the answers; prints `ANSWERED <n> FROM <servers…>`.
const MANY_FLOWS: &str = r#"
import socket, sys
addr, port, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
# One flow at a time, each answered before the next is sent: a burst of 300 datagrams would
# overflow the echo server's receive buffer (about 256 small datagrams fit). The sockets stay
# open, so every flow stays in the conntrack table.
socks = []
servers = set()
answered = 0
for sport in range(first, first + count):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", sport))
    s.connect((addr, port))
    s.settimeout(2)
    s.send(b"ping\n")
    socks.append(s)
    try:
        servers.add(s.recv(256).decode().split()[0])
        answered += 1
    except OSError:
        pass
print("ANSWERED %d FROM %s" % (answered, " ".join(sorted(servers))))
"#;

/// What one datagram got.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    /// Answered by the echo server at this (endpoint) address.
    From(IpAddr),
    /// No answer in time.
    Timeout,
    /// ICMP port unreachable.
    Refused,
    /// Anything else.
    Other(String),
}

/// Sends one datagram from `ns`, source port `sport`, to `addr:port`.
fn send(ns: &NetNs, addr: IpAddr, port: u16, sport: u16, timeout: Duration) -> Answer {
    let args = [
        addr.to_string(),
        port.to_string(),
        sport.to_string(),
        format!("{:.3}", timeout.as_secs_f64()),
    ];
    let mut argv = vec!["-c", UDP_CLIENT];
    argv.extend(args.iter().map(String::as_str));
    let out = ns
        .exec("python3", &argv)
        .unwrap_or_else(|e| panic!("running the UDP client in {}: {e}", ns.name()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    match stdout.trim() {
        "TIMEOUT" => Answer::Timeout,
        "REFUSED" => Answer::Refused,
        text => match text
            .strip_prefix("REPLY ")
            .and_then(|t| t.split_whitespace().next())
            .and_then(|server| server.parse().ok())
        {
            Some(server) => Answer::From(server),
            None => Answer::Other(format!(
                "{text} (stderr: {})",
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        },
    }
}

/// Sends until answered, at most [`ATTEMPTS`] times (the same flow each time).
fn answered(ns: &NetNs, addr: IpAddr, port: u16, sport: u16) -> Answer {
    let mut last = Answer::Timeout;
    for _ in 0..ATTEMPTS {
        last = send(ns, addr, port, sport, ANSWER);
        if last != Answer::Timeout {
            break;
        }
    }
    last
}

/// The node's UDP conntrack entries (`conntrack -L`), for failure messages.
fn udp_entries(cluster: &TestCluster) -> String {
    match cluster.node().exec("conntrack", &["-L", "-p", "udp"]) {
        Ok(out) => String::from_utf8_lossy(&out.stdout).into_owned(),
        Err(e) => format!("(conntrack -L failed: {e})"),
    }
}

/// What node-a does for these objects (as [`desired`] computes it, before rendering).
fn node_services(services: &[Service], slices: &[EndpointSlice]) -> NodeServices {
    let view = ClusterView::from_objects(
        services.to_vec(),
        slices.to_vec(),
        std::iter::empty(),
        NODE_A,
    );
    let out = node_view(&view, &node_config());
    assert!(out.errors.is_empty(), "model errors: {:?}", out.errors);
    out
}

/// Programs the node for these objects and returns what it does.
fn program(cluster: &TestCluster, services: &[Service], slices: &[EndpointSlice]) -> NodeServices {
    let rules = desired(services.to_vec(), slices.to_vec());
    sync(cluster.node(), &rules).unwrap_or_else(|e| {
        panic!(
            "the kernel refused the ruleset: {e}\n{}",
            ruleset::render(&rules)
        )
    });
    node_services(services, slices)
}

/// Runs [`nft::delete_udp_flows`] in the node namespace.
fn delete_in_node(cluster: &TestCluster, stale: &[UdpFlowMatch]) -> usize {
    let path = PathBuf::from("/var/run/netns").join(cluster.node().name());
    let stale = stale.to_vec();
    nft::in_netns(&path, move || nft::delete_udp_flows(&stale))
        .unwrap_or_else(|e| panic!("entering the node namespace: {e}"))
        .unwrap_or_else(|e| panic!("deleting stale flows: {e}"))
}

/// `default/dns` on `vip` UDP 53 with these endpoints (pods, on node-a, port [`ECHO_PORT`]).
fn dns(vip: IpAddr, endpoints: &[&Pod]) -> (Vec<Service>, Vec<EndpointSlice>) {
    let v6 = vip.is_ipv6();
    let mut eps = slice("default", "dns-1", "dns", if v6 { "IPv6" } else { "IPv4" }).port(
        "dns",
        "UDP",
        i32::from(ECHO_PORT),
    );
    for pod in endpoints {
        eps = eps.endpoint(ep(&pod.ip(v6).to_string(), NODE_A));
    }
    (
        vec![service("default", "dns", &vip.to_string())
            .port("dns", "UDP", 53)
            .build()],
        vec![eps.build()],
    )
}

/// The flow from the client pod's fixed port lands on one endpoint and stays there; the
/// endpoint is removed and the rules synced: the flow still reaches it (its conntrack entry is
/// kept), while a fresh flow reaches the remaining endpoint. Deleting the stale flows moves it.
fn removed_endpoint(v6: bool) {
    let cluster = cluster();
    let _servers = serve(&cluster, &["a1", "a2"]);
    let (a1, a2) = (cluster.pod("a1"), cluster.pod("a2"));
    let client = cluster.pod("client").ns();
    let vip = if v6 {
        ip("fd00:10:96::53")
    } else {
        ip("10.96.0.53")
    };
    let (svcs, slices) = dns(vip, &[a1, a2]);
    let before = program(&cluster, &svcs, &slices);

    let gone = match answered(client, vip, 53, FIXED_PORT) {
        Answer::From(server) => server,
        other => panic!("the first datagram to {vip}: {other:?}"),
    };
    let (kept_pod, gone_pod) = if gone == a1.ip(v6) {
        (a2, a1)
    } else {
        (a1, a2)
    };
    assert_eq!(gone, gone_pod.ip(v6), "an endpoint of the Service answered");
    let kept = kept_pod.ip(v6);
    // One flow: every datagram from the fixed port reaches the same endpoint.
    for _ in 0..3 {
        assert_eq!(
            answered(client, vip, 53, FIXED_PORT),
            Answer::From(gone),
            "the flow must stay on its endpoint\n{}",
            udp_entries(&cluster)
        );
    }

    // Remove that endpoint. Without cleanup the flow is stuck on it.
    let (svcs, slices) = dns(vip, &[kept_pod]);
    let after = program(&cluster, &svcs, &slices);
    for _ in 0..3 {
        assert_eq!(
            answered(client, vip, 53, FIXED_PORT),
            Answer::From(gone),
            "without cleanup, the existing flow keeps its removed endpoint\n{}",
            udp_entries(&cluster)
        );
    }
    // The rules did change: a fresh flow reaches the remaining endpoint only.
    assert_eq!(answered(client, vip, 53, FRESH_PORT), Answer::From(kept));

    // Cleanup: entries DNATed to the removed endpoint.
    let stale = nft::stale_udp_flows(&before, &after);
    assert_eq!(
        stale,
        vec![UdpFlowMatch::ToEndpoint {
            ip: gone,
            port: ECHO_PORT
        }]
    );
    let listing = udp_entries(&cluster);
    let deleted = delete_in_node(&cluster, &stale);
    // Exactly the stuck flow: the fresh flow to the remaining endpoint is left alone.
    assert_eq!(
        deleted, 1,
        "the stuck flow's entry, and only it, must be deleted; entries were:\n{listing}"
    );
    // The next datagram from the same port is a new flow: the rules send it to what remains.
    assert_eq!(
        answered(client, vip, 53, FIXED_PORT),
        Answer::From(kept),
        "after cleanup\n{}",
        udp_entries(&cluster)
    );
    // Nothing else pointed at the removed endpoint, and the moved flow is not touched again.
    assert_eq!(
        delete_in_node(&cluster, &stale),
        0,
        "{}",
        udp_entries(&cluster)
    );
    assert_eq!(answered(client, vip, 53, FIXED_PORT), Answer::From(kept));
}

#[test]
fn a_udp_flow_leaves_a_removed_endpoint_only_after_cleanup_ipv4() {
    if !testbed::require_kernel() {
        return;
    }
    removed_endpoint(false);
}

#[test]
fn a_udp_flow_leaves_a_removed_endpoint_only_after_cleanup_ipv6() {
    if !testbed::require_kernel() {
        return;
    }
    removed_endpoint(true);
}

#[test]
fn udp_flows_sent_before_a_service_existed_reach_it_only_after_cleanup() {
    if !testbed::require_kernel() {
        return;
    }
    let cluster = cluster();
    let _servers = serve(&cluster, &["a1"]);
    let a1 = cluster.pod("a1");
    let pod_client = cluster.pod("client").ns();
    let external = cluster.client();
    let vip = ip("10.96.0.54");
    let node_ip = IpAddr::from(NODE_IPV4);
    let before = program(&cluster, &[], &[]);

    // No Service yet: the ClusterIP is just an address the node forwards to its default route
    // (nobody answers), and the NodePort is a closed port of the node (refused). Both flows
    // get conntrack entries without NAT.
    assert_eq!(
        send(pod_client, vip, 53, FIXED_PORT, DROPPED),
        Answer::Timeout
    );
    assert_eq!(
        answered(external, node_ip, 30053, FIXED_PORT),
        Answer::Refused
    );

    let svcs = vec![service("default", "dns", "10.96.0.54")
        .type_("NodePort")
        .node_port("dns", "UDP", 53, 30053)
        .build()];
    let slices = vec![slice("default", "dns-1", "dns", "IPv4")
        .port("dns", "UDP", i32::from(ECHO_PORT))
        .endpoint(ep(&a1.ipv4().to_string(), NODE_A))
        .build()];
    let after = program(&cluster, &svcs, &slices);

    // Without cleanup neither flow is served. The ClusterIP one is no longer forwarded but
    // refused: its entry never saw a reply, so its packets are still `ct state new`, and, not
    // DNATed (NAT is decided once per entry), they meet the check that rejects ClusterIP
    // traffic the services did not take. Either way it never reaches the endpoint.
    let stuck = send(pod_client, vip, 53, FIXED_PORT, DROPPED);
    assert!(
        matches!(stuck, Answer::Timeout | Answer::Refused),
        "without cleanup, the flow to the ClusterIP stays unserved, got {stuck:?}\n{}",
        udp_entries(&cluster)
    );
    assert_eq!(
        answered(external, node_ip, 30053, FIXED_PORT),
        Answer::Refused,
        "without cleanup, the flow to the NodePort stays refused\n{}",
        udp_entries(&cluster)
    );
    // Fresh flows are served.
    let served = Answer::From(a1.ip(false));
    assert_eq!(answered(pod_client, vip, 53, FRESH_PORT), served);
    assert_eq!(answered(external, node_ip, 30053, FRESH_PORT), served);

    let stale = nft::stale_udp_flows(&before, &after);
    assert_eq!(
        stale,
        vec![
            UdpFlowMatch::ToDestination { ip: vip, port: 53 },
            UdpFlowMatch::ToDestination {
                ip: node_ip,
                port: 30053
            },
        ]
    );
    let listing = udp_entries(&cluster);
    let deleted = delete_in_node(&cluster, &stale);
    // The two stuck flows, and the two fresh ones: same destinations, already DNATed. Deleting
    // those costs little (their next datagram is DNATed again), as upstream accepts too.
    assert_eq!(
        deleted, 4,
        "every flow to the two destinations must be deleted; entries were:\n{listing}"
    );
    assert_eq!(
        answered(pod_client, vip, 53, FIXED_PORT),
        served,
        "after cleanup\n{}",
        udp_entries(&cluster)
    );
    assert_eq!(
        answered(external, node_ip, 30053, FIXED_PORT),
        served,
        "after cleanup\n{}",
        udp_entries(&cluster)
    );
}

#[test]
fn many_stale_flows_are_deleted_in_batches() {
    if !testbed::require_kernel() {
        return;
    }
    // More flows than one batch of deletions holds, so several sendmsg calls are needed.
    const FLOWS: usize = 300;
    let cluster = cluster();
    let _servers = serve(&cluster, &["a1", "a2"]);
    let (a1, a2) = (cluster.pod("a1"), cluster.pod("a2"));
    let client = cluster.pod("client").ns();
    let vip = ip("10.96.0.55");
    let (svcs, slices) = dns(vip, &[a1]);
    let before = program(&cluster, &svcs, &slices);
    let count = FLOWS.to_string();
    let out = client
        .run(
            "python3",
            &["-c", MANY_FLOWS, &vip.to_string(), "53", "41000", &count],
        )
        .unwrap_or_else(|e| panic!("the many-flows client: {e}"));
    assert_eq!(
        out.trim(),
        format!("ANSWERED {FLOWS} FROM {}", a1.ipv4()),
        "every flow is answered by a1"
    );

    let (svcs, slices) = dns(vip, &[a2]);
    let after = program(&cluster, &svcs, &slices);
    let stale = nft::stale_udp_flows(&before, &after);
    assert_eq!(
        stale,
        vec![UdpFlowMatch::ToEndpoint {
            ip: a1.ip(false),
            port: ECHO_PORT
        }]
    );
    assert_eq!(delete_in_node(&cluster, &stale), FLOWS);
    assert_eq!(
        delete_in_node(&cluster, &stale),
        0,
        "{}",
        udp_entries(&cluster)
    );
    assert_eq!(
        answered(client, vip, 53, 41000),
        Answer::From(a2.ip(false)),
        "a flow of the deleted ones now reaches a2"
    );
}
