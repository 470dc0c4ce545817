//! A one-node "cluster" of network namespaces for tests with real packets.
//!
//! ```text
//!                         ┌──────────────── node ────────────────┐
//!  client 192.0.2.100 ────┤ ext0 192.0.2.1/24, 2001:db8:1::1/64  │
//!         2001:db8:1::100 │                                      │
//!                         │ podN 10.244.S.1/32, fd00:10:244:S::1 ├──── pod 10.244.S.H/32
//!                         └──────────────────────────────────────┘         fd00:10:244:S::H/128
//! ```
//!
//! * `node`: where the ruleset is loaded. IPv4 and IPv6 forwarding are on; nothing else is
//!   changed (`route_localnet` keeps its default). Its default routes point at the client, like
//!   a real node's default gateway, so the node's own connections to ClusterIPs have a route
//!   before DNAT.
//! * pods: one namespace each, connected to the node by a veth pair (`eth0` in the pod, `podN`
//!   on the node). Each pod has a host address (`/32`, `/128`) in subnet `10.244.S.0/24` /
//!   `fd00:10:244:S::/64` and default routes via the node side `10.244.S.1` /
//!   `fd00:10:244:S::1` (the same gateway address on every node-side veth of a subnet; the node
//!   routes each pod address to its veth). No two pods share a link, so all pod-to-pod traffic
//!   is routed through the node and its netfilter hooks.
//! * Subnet [`LOCAL_SUBNET`] (1) holds this node's pods, [`REMOTE_SUBNET`] (2) "another node's"
//!   pods: physically behind the same node namespace, remote only as far as the EndpointSlices'
//!   `nodeName` says.
//! * `client`: an external machine on `192.0.2.0/24` / `2001:db8:1::/64`; the node's side of
//!   that link (`192.0.2.1`, `2001:db8:1::1`) is the node's primary IP.
//!
//! Every namespace is a [`NetNs`], deleted on drop (veth pairs go with their namespaces).
//! Nothing is done in the root namespace.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::{NetNs, TestbedError};

/// The subnet number of this node's pods (`10.244.1.0/24`).
pub const LOCAL_SUBNET: u8 = 1;
/// The subnet number of the "remote node's" pods (`10.244.2.0/24`).
pub const REMOTE_SUBNET: u8 = 2;

/// The node's primary IPv4 address (its side of the client link).
pub const NODE_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
/// The node's primary IPv6 address.
pub const NODE_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 1);
/// The external client's IPv4 address.
pub const CLIENT_IPV4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 100);
/// The external client's IPv6 address.
pub const CLIENT_IPV6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 1, 0, 0, 0, 0, 0x100);

/// IPv4 address `10.244.<subnet>.<host>`.
pub fn pod_ipv4(subnet: u8, host: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 244, subnet, host)
}

/// IPv6 address `fd00:10:244:<subnet>::<host>`, with `subnet` and `host` written with the same
/// digits as in the IPv4 address: host 10 of subnet 1 is `fd00:10:244:1::10`.
pub fn pod_ipv6(subnet: u8, host: u8) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x10,
        0x244,
        same_digits(subnet),
        0,
        0,
        0,
        same_digits(host),
    )
}

/// The hex number written with the decimal digits of `n` (10 → 0x10).
fn same_digits(n: u8) -> u16 {
    let (h, t, o) = (
        u16::from(n / 100),
        u16::from(n / 10 % 10),
        u16::from(n % 10),
    );
    h << 8 | t << 4 | o
}

/// The node-side (gateway) IPv4 address of a pod subnet, `10.244.<subnet>.1`.
pub fn gateway_ipv4(subnet: u8) -> Ipv4Addr {
    pod_ipv4(subnet, 1)
}

/// The node-side (gateway) IPv6 address of a pod subnet, `fd00:10:244:<subnet>::1`.
pub fn gateway_ipv6(subnet: u8) -> Ipv6Addr {
    pod_ipv6(subnet, 1)
}

/// A pod: a namespace with one address per family.
#[derive(Debug)]
pub struct Pod {
    name: String,
    subnet: u8,
    host: u8,
    ns: NetNs,
}

impl Pod {
    /// The name given to the builder.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The pod's namespace.
    pub fn ns(&self) -> &NetNs {
        &self.ns
    }
    /// The subnet number ([`LOCAL_SUBNET`], [`REMOTE_SUBNET`], …).
    pub fn subnet(&self) -> u8 {
        self.subnet
    }
    /// Whether the pod is in [`LOCAL_SUBNET`].
    pub fn is_local(&self) -> bool {
        self.subnet == LOCAL_SUBNET
    }
    /// `10.244.<subnet>.<host>`.
    pub fn ipv4(&self) -> Ipv4Addr {
        pod_ipv4(self.subnet, self.host)
    }
    /// `fd00:10:244:<subnet>::<host>` (same digits as the IPv4 address).
    pub fn ipv6(&self) -> Ipv6Addr {
        pod_ipv6(self.subnet, self.host)
    }
    /// The address of the given family (`v6` false: IPv4).
    pub fn ip(&self, v6: bool) -> IpAddr {
        if v6 {
            self.ipv6().into()
        } else {
            self.ipv4().into()
        }
    }
}

/// Builds a [`TestCluster`].
#[derive(Debug, Default, Clone)]
pub struct TestClusterBuilder {
    pods: Vec<(String, u8, u8)>,
}

impl TestClusterBuilder {
    /// Adds a pod `10.244.<subnet>.<host>` / `fd00:10:244:<subnet>::<host>`.
    ///
    /// Panics if the name or the address is taken, `subnet` is 0, or `host` is not in
    /// `2..=254` (`1` is the node's gateway address).
    pub fn pod(mut self, name: &str, subnet: u8, host: u8) -> Self {
        assert!(subnet > 0, "pod {name}: subnet 0 is not a pod subnet");
        assert!(
            (2..=254).contains(&host),
            "pod {name}: host {host} must be in 2..=254"
        );
        assert!(
            self.pods.iter().all(|(n, _, _)| n != name),
            "pod name {name} used twice"
        );
        assert!(
            self.pods.iter().all(|&(_, s, h)| (s, h) != (subnet, host)),
            "pod {name}: address 10.244.{subnet}.{host} used twice"
        );
        self.pods.push((name.to_owned(), subnet, host));
        self
    }

    /// Adds a pod on this node ([`LOCAL_SUBNET`]).
    pub fn local_pod(self, name: &str, host: u8) -> Self {
        self.pod(name, LOCAL_SUBNET, host)
    }

    /// Adds a pod "on another node" ([`REMOTE_SUBNET`]).
    pub fn remote_pod(self, name: &str, host: u8) -> Self {
        self.pod(name, REMOTE_SUBNET, host)
    }

    /// Creates the namespaces and links. On error, whatever was created is deleted again.
    pub fn build(self) -> Result<TestCluster, TestbedError> {
        let node = NetNs::new("node")?;
        no_dad(&node)?;
        node.run(
            "sysctl",
            &[
                "-q",
                "-w",
                "net.ipv4.ip_forward=1",
                "net.ipv6.conf.all.forwarding=1",
            ],
        )?;

        let client = NetNs::new("client")?;
        no_dad(&client)?;
        veth(&node, "ext0", &client)?;
        let node_v4 = format!("{NODE_IPV4}/24");
        let node_v6 = format!("{NODE_IPV6}/64");
        let client_v4 = format!("{CLIENT_IPV4}/24");
        let client_v6 = format!("{CLIENT_IPV6}/64");
        ip(&node, &["addr", "add", &node_v4, "dev", "ext0"])?;
        ip(
            &node,
            &["-6", "addr", "add", &node_v6, "dev", "ext0", "nodad"],
        )?;
        ip(&node, &["link", "set", "ext0", "up"])?;
        ip(&client, &["addr", "add", &client_v4, "dev", "eth0"])?;
        ip(
            &client,
            &["-6", "addr", "add", &client_v6, "dev", "eth0", "nodad"],
        )?;
        ip(&client, &["link", "set", "eth0", "up"])?;
        let gw4 = CLIENT_IPV4.to_string();
        let gw6 = CLIENT_IPV6.to_string();
        ip(
            &node,
            &["route", "add", "default", "via", &gw4, "dev", "ext0"],
        )?;
        ip(
            &node,
            &["-6", "route", "add", "default", "via", &gw6, "dev", "ext0"],
        )?;

        let mut cluster = TestCluster {
            pods: Vec::new(),
            client,
            node,
        };
        for (i, (name, subnet, host)) in self.pods.into_iter().enumerate() {
            let ns = NetNs::new("pod")?;
            let pod = Pod {
                name,
                subnet,
                host,
                ns,
            };
            // Owned by the cluster before configuring, so a failure deletes it too.
            cluster.pods.push(pod);
            if let Some(pod) = cluster.pods.last() {
                attach_pod(&cluster.node, &format!("pod{i}"), pod)?;
            }
        }
        Ok(cluster)
    }
}

/// Turns off duplicate address detection for interfaces created later in `ns`, so IPv6
/// addresses are usable at once.
fn no_dad(ns: &NetNs) -> Result<(), TestbedError> {
    ns.run(
        "sysctl",
        &[
            "-q",
            "-w",
            "net.ipv6.conf.all.accept_dad=0",
            "net.ipv6.conf.default.accept_dad=0",
        ],
    )
    .map(drop)
}

fn ip(ns: &NetNs, args: &[&str]) -> Result<(), TestbedError> {
    ns.run("ip", args).map(drop)
}

/// Creates a veth pair inside `node` (named `node_if`) whose peer is `eth0` inside `other`.
fn veth(node: &NetNs, node_if: &str, other: &NetNs) -> Result<(), TestbedError> {
    ip(
        node,
        &[
            "link",
            "add",
            node_if,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            other.name(),
        ],
    )
}

fn attach_pod(node: &NetNs, node_if: &str, pod: &Pod) -> Result<(), TestbedError> {
    let ns = pod.ns();
    no_dad(ns)?;
    veth(node, node_if, ns)?;
    let gw4 = gateway_ipv4(pod.subnet).to_string();
    let gw6 = gateway_ipv6(pod.subnet).to_string();
    let pod4 = pod.ipv4().to_string();
    let pod6 = pod.ipv6().to_string();
    // Node side: the subnet's gateway address, and a host route to the pod.
    ip(node, &["addr", "add", &format!("{gw4}/32"), "dev", node_if])?;
    ip(
        node,
        &[
            "-6",
            "addr",
            "add",
            &format!("{gw6}/128"),
            "dev",
            node_if,
            "nodad",
        ],
    )?;
    ip(node, &["link", "set", node_if, "up"])?;
    ip(
        node,
        &["route", "add", &format!("{pod4}/32"), "dev", node_if],
    )?;
    ip(
        node,
        &["-6", "route", "add", &format!("{pod6}/128"), "dev", node_if],
    )?;
    // Pod side: its host address, the gateway on-link, default via the gateway.
    ip(ns, &["addr", "add", &format!("{pod4}/32"), "dev", "eth0"])?;
    ip(
        ns,
        &[
            "-6",
            "addr",
            "add",
            &format!("{pod6}/128"),
            "dev",
            "eth0",
            "nodad",
        ],
    )?;
    ip(ns, &["link", "set", "eth0", "up"])?;
    ip(ns, &["route", "add", &format!("{gw4}/32"), "dev", "eth0"])?;
    ip(ns, &["route", "add", "default", "via", &gw4, "dev", "eth0"])?;
    ip(
        ns,
        &["-6", "route", "add", &format!("{gw6}/128"), "dev", "eth0"],
    )?;
    ip(
        ns,
        &["-6", "route", "add", "default", "via", &gw6, "dev", "eth0"],
    )
}

/// The node, its pods and an external client, each in its own namespace (see the module
/// documentation). Dropping it deletes every namespace.
#[derive(Debug)]
pub struct TestCluster {
    // Dropped in this order: pods, client, node.
    pods: Vec<Pod>,
    client: NetNs,
    node: NetNs,
}

impl TestCluster {
    /// A builder without pods.
    pub fn builder() -> TestClusterBuilder {
        TestClusterBuilder::default()
    }

    /// The node's namespace (load the ruleset here).
    pub fn node(&self) -> &NetNs {
        &self.node
    }

    /// The external client's namespace.
    pub fn client(&self) -> &NetNs {
        &self.client
    }

    /// The pod named `name`. Panics if there is none.
    pub fn pod(&self, name: &str) -> &Pod {
        self.pods
            .iter()
            .find(|p| p.name == name)
            .unwrap_or_else(|| panic!("no pod named {name} in the test cluster"))
    }

    /// All pods, in the order they were added.
    pub fn pods(&self) -> &[Pod] {
        &self.pods
    }

    /// The node's primary address of a family ([`NODE_IPV4`], [`NODE_IPV6`]).
    pub fn node_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            NODE_IPV6.into()
        } else {
            NODE_IPV4.into()
        }
    }

    /// The external client's address of a family ([`CLIENT_IPV4`], [`CLIENT_IPV6`]).
    pub fn client_ip(&self, v6: bool) -> IpAddr {
        if v6 {
            CLIENT_IPV6.into()
        } else {
            CLIENT_IPV4.into()
        }
    }

    /// Every address of the node namespace outside `lo`: the primary IPs and the gateway of
    /// each pod subnet in use. A masqueraded connection arrives from one of these.
    pub fn node_addresses(&self) -> BTreeSet<IpAddr> {
        let mut out = BTreeSet::from([NODE_IPV4.into(), NODE_IPV6.into()]);
        for pod in &self.pods {
            out.insert(gateway_ipv4(pod.subnet).into());
            out.insert(gateway_ipv6(pod.subnet).into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::echo::{connect, ConnectError, EchoServer, Proto};
    use std::time::Duration;

    #[test]
    fn addresses() {
        assert_eq!(pod_ipv6(1, 10).to_string(), "fd00:10:244:1::10");
        assert_eq!(pod_ipv6(2, 254).to_string(), "fd00:10:244:2::254");
        assert_eq!(gateway_ipv4(2).to_string(), "10.244.2.1");
    }

    /// Without any ruleset: pods, node and client reach each other directly, the echo server
    /// reports both ends, and a closed port is refused (TCP RST, ICMP port unreachable).
    #[test]
    fn plain_routing_and_echo() {
        if !crate::require_kernel() {
            return;
        }
        let cluster = TestCluster::builder()
            .local_pod("a", 2)
            .remote_pod("b", 3)
            .build()
            .expect("cluster");
        let (a, b) = (cluster.pod("a"), cluster.pod("b"));
        let _server = EchoServer::start(b.ns(), 7000).expect("echo server");
        let t = Duration::from_secs(2);
        for v6 in [false, true] {
            for proto in [Proto::Tcp, Proto::Udp] {
                let r = connect(a.ns(), proto, b.ip(v6), 7000, t).expect("pod to pod");
                assert_eq!((r.server, r.peer), (b.ip(v6), a.ip(v6)), "{proto}");
                let r = connect(cluster.node(), proto, b.ip(v6), 7000, t).expect("node to pod");
                let gateway: IpAddr = if v6 {
                    gateway_ipv6(REMOTE_SUBNET).into()
                } else {
                    gateway_ipv4(REMOTE_SUBNET).into()
                };
                assert_eq!((r.server, r.peer), (b.ip(v6), gateway), "{proto}");
                assert!(cluster.node_addresses().contains(&r.peer));
                let refused = connect(a.ns(), proto, b.ip(v6), 7001, t);
                assert!(
                    matches!(refused, Err(ConnectError::Refused)),
                    "{proto} v6={v6}: {refused:?}"
                );
            }
        }
        // The client reaches the node's primary IPs only (nothing listens there).
        for v6 in [false, true] {
            let refused = connect(cluster.client(), Proto::Tcp, cluster.node_ip(v6), 7000, t);
            assert!(matches!(refused, Err(ConnectError::Refused)), "{refused:?}");
        }
    }
}
