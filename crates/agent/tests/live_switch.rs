//! The live switch between kube-proxy and kube-nftproxy, with real packets, in a test-bed
//! cluster of network namespaces (`docs/architecture.md`, "Beside kube-proxy: the live switch").
//!
//! kube-proxy's side is a fixture: an `ip kube-proxy` table in the layout of its nftables mode
//! (and a stub `ip6` one), plus `KUBE-*` chains made with iptables-nft as its iptables mode
//! leaves them, and rules of others in the same tables. Both send the Service `default/web`
//! (ClusterIP 10.96.0.10:80, NodePort 30080) to pod `a1`; our manifests send it to pod `a2`, so
//! each echo server's answer says whose rules chose the endpoint of that connection. Clients
//! keep opening connections (one request each) to the ClusterIP from a pod and to the NodePort
//! from outside while the rules change; connections opened before the switch stay open and are
//! used after each step.

use std::net::IpAddr;
use std::time::Duration;

use testbed::cluster::gateway_ipv4;
use testbed::{
    installed, require_kernel, EchoServer, NetNs, Outcome, ScratchDir, Session, TestCluster,
    TrafficLoop,
};

const BIN: &str = env!("CARGO_BIN_EXE_kube-nftproxy");
const CLUSTER_IP: &str = "10.96.0.10";
const PORT: u16 = 80;
const NODE_PORT: u16 = 30080;
const ECHO_PORT: u16 = 8080;
/// kube-proxy's endpoint for `default/web`.
const THEIRS: &str = "10.244.1.10";
/// Ours.
const OURS: &str = "10.244.1.11";
/// Connections each client makes between two steps of a switch.
const PER_STEP: usize = 25;
/// The longest wait for them.
const STEP_LIMIT: Duration = Duration::from_secs(60);

/// kube-proxy's nftables mode for `default/web` on node-a (192.0.2.1), as v1.35 lays it out:
/// filter chains for source ranges and no-endpoint checks, DNAT from the `services` chain,
/// masquerading by mark 0x4000 in srcnat.
const KUBE_PROXY_NFT: &str = r#"
table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		comment "Active ClusterIPs"
		elements = { 10.96.0.10 }
	}
	set nodeport-ips {
		type ipv4_addr
		comment "IPs that accept NodePort traffic"
		elements = { 192.0.2.1 }
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to services with no endpoints"
	}
	map no-endpoint-nodeports {
		type inet_proto . inet_service : verdict
		comment "vmap to drop or reject packets to service nodeports with no endpoints"
	}
	map firewall-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "destinations that are subject to LoadBalancerSourceRanges"
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
	chain masquerading {
		meta mark & 0x00004000 == 0x00000000 return
		meta mark set meta mark ^ 0x00004000
		masquerade fully-random
	}
	chain endpoint-5OJB2KTY-default/web/tcp/http__10.244.1.10/8080 {
		ip saddr 10.244.1.10 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.244.1.10:8080
	}
	chain service-ULMVA6XW-default/web/tcp/http {
		ip daddr 10.96.0.10 ip saddr != 10.244.0.0/16 jump mark-for-masquerade
		numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-default/web/tcp/http__10.244.1.10/8080 }
	}
	chain external-ULMVA6XW-default/web/tcp/http {
		jump mark-for-masquerade
		goto service-ULMVA6XW-default/web/tcp/http
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		comment "ClusterIP, ExternalIP and LoadBalancer IP traffic"
		elements = { 10.96.0.10 . tcp . 80 : goto service-ULMVA6XW-default/web/tcp/http }
	}
	map service-nodeports {
		type inet_proto . inet_service : verdict
		comment "NodePort traffic"
		elements = { tcp . 30080 : goto external-ULMVA6XW-default/web/tcp/http }
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
		ip daddr @nodeport-ips meta l4proto . th dport vmap @service-nodeports
	}
	chain firewall-check {
		ip daddr . meta l4proto . th dport vmap @firewall-ips
	}
	chain service-endpoints-check {
		ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
	chain nodeport-endpoints-check {
		ip daddr @nodeport-ips meta l4proto . th dport vmap @no-endpoint-nodeports
	}
	chain cluster-ips-check {
		ip daddr @cluster-ips reject comment "Reject traffic to invalid ports of ClusterIPs"
	}
	chain filter-prerouting-pre-dnat {
		type filter hook prerouting priority dstnat - 10; policy accept;
		ct state new jump firewall-check
	}
	chain filter-output-pre-dnat {
		type filter hook output priority -110; policy accept;
		ct state new jump firewall-check
	}
	chain filter-input {
		type filter hook input priority filter; policy accept;
		ct state new jump nodeport-endpoints-check
		ct state new jump service-endpoints-check
	}
	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}
	chain filter-output {
		type filter hook output priority filter; policy accept;
		ct state new jump service-endpoints-check
		ct state new jump cluster-ips-check
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain nat-output {
		type nat hook output priority -100; policy accept;
		jump services
	}
	chain nat-postrouting {
		type nat hook postrouting priority srcnat; policy accept;
		jump masquerading
	}
}
table ip6 kube-proxy {
	comment "rules for kube-proxy"
	chain services {
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
}
"#;

/// A table of someone else's, which every step must leave alone.
const FOREIGN_NFT: &str = r#"
table inet someone-else {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept
	}
}
"#;

/// kube-proxy's iptables mode for the same Service (DNAT to the same pod, masquerade by the
/// same mark), through iptables-nft, next to rules of others and kubelet's `KUBE-FIREWALL`
/// (which is kubelet's, so it stays).
const KUBE_PROXY_IPTABLES: &str = r#"*filter
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:MY-CHAIN - [0:0]
-A INPUT -j KUBE-FIREWALL
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A INPUT -s 10.1.0.0/16 -j MY-CHAIN
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "kubernetes forwarding rules" -j ACCEPT
-A MY-CHAIN -j ACCEPT
COMMIT
*nat
:KUBE-EXT-WEB - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SEP-WEB1 - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-WEB - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.99.0.0/16 ! -d 10.99.0.0/16 -j MASQUERADE
-A KUBE-EXT-WEB -j KUBE-MARK-MASQ
-A KUBE-EXT-WEB -j KUBE-SVC-WEB
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-NODEPORTS -p tcp -m comment --comment "default/web:http" -m tcp --dport 30080 -j KUBE-EXT-WEB
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-WEB1 -s 10.244.1.10/32 -m comment --comment "default/web:http" -j KUBE-MARK-MASQ
-A KUBE-SEP-WEB1 -p tcp -m comment --comment "default/web:http" -m tcp -j DNAT --to-destination 10.244.1.10:8080
-A KUBE-SERVICES -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-SVC-WEB
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-WEB ! -s 10.244.0.0/16 -d 10.96.0.10/32 -p tcp -m comment --comment "default/web:http cluster IP" -m tcp --dport 80 -j KUBE-MARK-MASQ
-A KUBE-SVC-WEB -m comment --comment "default/web:http -> 10.244.1.10:8080" -j KUBE-SEP-WEB1
COMMIT
"#;

/// The rules of others in iptables-nft's dump that must survive every step.
const FOREIGN_IPTABLES: [&str; 5] = [
    "-A INPUT -j KUBE-FIREWALL",
    ":MY-CHAIN - [0:0]",
    "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT",
    "-A INPUT -s 10.1.0.0/16 -j MY-CHAIN",
    "-A POSTROUTING -s 10.99.0.0/16 ! -d 10.99.0.0/16 -j MASQUERADE",
];

/// Our side: node-a at 192.0.2.1 (the test bed's node address) and `default/web` with one
/// ready endpoint, pod `a2`.
const MANIFESTS: &str = r#"
apiVersion: v1
kind: Node
metadata:
  name: node-a
spec:
  podCIDRs: [10.244.1.0/24]
status:
  addresses:
  - {type: InternalIP, address: 192.0.2.1}
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  type: NodePort
  clusterIP: 10.96.0.10
  clusterIPs: [10.96.0.10]
  ipFamilies: [IPv4]
  externalTrafficPolicy: Cluster
  ports:
  - {name: http, protocol: TCP, port: 80, targetPort: 8080, nodePort: 30080}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-x1
  namespace: default
  labels:
    kubernetes.io/service-name: web
    endpointslice.kubernetes.io/managed-by: endpointslice-controller.k8s.io
addressType: IPv4
endpoints:
- addresses: [10.244.1.11]
  conditions: {ready: true, serving: true, terminating: false}
  nodeName: node-a
ports:
- {name: http, protocol: TCP, port: 8080}
"#;

const CONFIG: &str = r#"
node_name = "node-a"
cluster_cidrs = ["10.244.0.0/16"]
"#;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
}

/// Runs `program args` in `ns`; returns stdout, panicking with stderr when it fails.
fn run(ns: &NetNs, program: &str, args: &[&str]) -> String {
    ns.run(program, args)
        .unwrap_or_else(|e| panic!("{program} {args:?} in {}: {e}", ns.name()))
}

/// The test bed: the node, pods `client`, `a1` (kube-proxy's endpoint) and `a2` (ours) on it,
/// echo servers in `a1` and `a2`, and the files of our side.
struct Bed {
    cluster: TestCluster,
    _servers: Vec<EchoServer>,
    scratch: ScratchDir,
}

impl Bed {
    fn new() -> Bed {
        let cluster = TestCluster::builder()
            .local_pod("client", 2)
            .local_pod("a1", 10)
            .local_pod("a2", 11)
            .build()
            .unwrap_or_else(|e| panic!("building the test cluster: {e}"));
        let servers = ["a1", "a2"]
            .iter()
            .map(|name| {
                EchoServer::start(cluster.pod(name).ns(), ECHO_PORT)
                    .unwrap_or_else(|e| panic!("echo server in {name}: {e}"))
            })
            .collect();
        let scratch =
            ScratchDir::new("live-switch").unwrap_or_else(|e| panic!("scratch directory: {e}"));
        Bed {
            cluster,
            _servers: servers,
            scratch,
        }
    }

    fn node(&self) -> &NetNs {
        self.cluster.node()
    }

    /// Writes a file for the programs the test runs; returns its path.
    fn file(&self, name: &str, text: &str) -> String {
        self.scratch
            .file(name, text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    /// Loads the table of someone else's that every step must leave alone.
    fn load_foreign(&self) {
        self.node()
            .nft_load(FOREIGN_NFT)
            .unwrap_or_else(|e| panic!("loading the foreign table: {e}"));
    }

    /// Loads kube-proxy's rules as kube-proxy (re)starting would.
    fn load_kube_proxy(&self) {
        self.node()
            .nft_load(KUBE_PROXY_NFT)
            .unwrap_or_else(|e| panic!("loading kube-proxy's nftables fixture: {e}"));
        let path = self.file("iptables", KUBE_PROXY_IPTABLES);
        run(self.node(), "iptables-nft-restore", &["--noflush", &path]);
    }

    /// Starts our agent over whatever is in the kernel: its first sync, the one a start does.
    fn start_ours(&self) -> String {
        let manifests = self.file("cluster.yaml", MANIFESTS);
        let config = self.file("config.toml", CONFIG);
        let args = [
            "run",
            "--manifests",
            &manifests,
            "--config",
            &config,
            "--node",
            "node-a",
            "--once",
        ];
        run(self.node(), BIN, &args)
    }

    /// Clients: to the ClusterIP from pod `client`, to the NodePort from the external client.
    fn clients(&self) -> [TrafficLoop; 2] {
        let start = |ns: &NetNs, target: (IpAddr, u16)| {
            TrafficLoop::start(
                ns,
                &[target],
                Duration::from_secs(2),
                Duration::from_millis(10),
                5_000,
            )
            .unwrap_or_else(|e| panic!("starting a client in {}: {e}", ns.name()))
        };
        [
            start(self.cluster.pod("client").ns(), (ip(CLUSTER_IP), PORT)),
            start(
                self.cluster.client(),
                (self.cluster.node_ip(false), NODE_PORT),
            ),
        ]
    }

    /// Long-lived connections: to the ClusterIP from pod `client`, to the NodePort from the
    /// external client; each with the endpoint its greeting came from.
    fn sessions(&self) -> Vec<(Session, IpAddr)> {
        [
            (self.cluster.pod("client").ns(), ip(CLUSTER_IP), PORT),
            (
                self.cluster.client(),
                self.cluster.node_ip(false),
                NODE_PORT,
            ),
        ]
        .into_iter()
        .map(|(ns, addr, port)| {
            let (session, greeting) = Session::open(ns, addr, port, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("opening a connection to {addr}:{port}: {e:?}"));
            (session, greeting.server)
        })
        .collect()
    }

    fn tables(&self) -> String {
        run(self.node(), "nft", &["list", "tables"])
    }

    fn iptables(&self) -> String {
        run(self.node(), "iptables-nft-save", &[])
    }
}

/// How many connections each client has made so far.
fn marks(clients: &[TrafficLoop; 2]) -> [usize; 2] {
    [clients[0].count(), clients[1].count()]
}

/// Waits until each client has made [`PER_STEP`] more connections; returns where each stood.
fn step(clients: &[TrafficLoop; 2]) -> [usize; 2] {
    let marks = marks(clients);
    for (client, mark) in clients.iter().zip(marks) {
        assert!(
            client.wait_for(mark + PER_STEP, STEP_LIMIT),
            "a client made no progress: {} connections after {STEP_LIMIT:?}",
            client.count()
        );
    }
    self::marks(clients)
}

/// Each long-lived connection answers again, from the endpoint it started with.
#[track_caller]
fn still_open(sessions: &mut [(Session, IpAddr)], when: &str) {
    for (session, endpoint) in sessions.iter_mut() {
        let reply = session
            .exchange()
            .unwrap_or_else(|e| panic!("{when}: a connection opened before lost its flow: {e:?}"));
        assert_eq!(reply.server, *endpoint, "{when}: the connection moved");
    }
}

/// Every connection of every client was answered, none failed.
#[track_caller]
fn none_failed(outcomes: &[Vec<Outcome>; 2]) {
    for (name, list) in ["ClusterIP", "NodePort"].iter().zip(outcomes) {
        let failed: Vec<_> = list.iter().filter(|o| o.result.is_err()).collect();
        assert!(
            failed.is_empty(),
            "{name}: {} of {} connections failed: {failed:?}",
            failed.len(),
            list.len()
        );
    }
}

/// The endpoints that answered each client's connections in `from..to`, `from` taken right
/// after a step returned; the first after it is skipped (it may have been set up while the
/// step was being committed).
fn endpoints_between(
    outcomes: &[Vec<Outcome>; 2],
    from: [usize; 2],
    to: [usize; 2],
) -> Vec<Vec<IpAddr>> {
    outcomes
        .iter()
        .zip(from.iter().zip(to))
        .map(|(list, (&from, to))| {
            let mut seen: Vec<IpAddr> = list[(from + 1).min(to)..to]
                .iter()
                .filter_map(|o| o.result.as_ref().ok().map(|r| r.server))
                .collect();
            seen.sort();
            seen.dedup();
            seen
        })
        .collect()
}

/// The NodePort connections from outside were masqueraded to the node's address on the pods'
/// subnet, whoever's rules set them up.
#[track_caller]
fn masqueraded(outcomes: &[Vec<Outcome>; 2]) {
    let node_side: IpAddr = gateway_ipv4(1).into();
    for o in &outcomes[1] {
        if let Ok(reply) = &o.result {
            assert_eq!(reply.peer, node_side, "NodePort connection not masqueraded");
        }
    }
}

fn prerequisites() -> bool {
    if !require_kernel() {
        return false;
    }
    assert!(
        installed("iptables-nft-restore") && installed("iptables-nft-save"),
        "iptables is not installed (apt-get install -y iptables)"
    );
    true
}

/// A named step of a switch: what it does to the node's rules.
type Step<'a> = (&'a str, &'a dyn Fn(&Bed));

/// One switch, as the module describes: with the first rules in place, long-lived connections
/// are opened and the clients start; each of `steps` runs, then every client makes
/// [`PER_STEP`] more connections and every long-lived connection answers again. `endpoints`
/// names the pod that must answer the new connections before the steps and after each one.
/// No connection or request may fail, and the NodePort's are masqueraded throughout.
fn switch(bed: &Bed, steps: [Step<'_>; 2], endpoints: [&str; 3]) {
    let mut sessions = bed.sessions();
    for (_, endpoint) in &sessions {
        assert_eq!(endpoint, &ip(endpoints[0]), "before the steps");
    }
    let clients = bed.clients();
    let mut phases = vec![([0, 0], step(&clients))];
    for (name, action) in steps {
        action(bed);
        let done = marks(&clients);
        phases.push((done, step(&clients)));
        still_open(&mut sessions, &format!("after {name}"));
    }
    let [a, b] = clients;
    let outcomes = [a.stop(STEP_LIMIT), b.stop(STEP_LIMIT)];
    none_failed(&outcomes);
    masqueraded(&outcomes);
    let names = [
        "before the steps",
        "after the first step",
        "after the second step",
    ];
    for (((from, to), expected), when) in phases.into_iter().zip(endpoints).zip(names) {
        let expected = vec![ip(expected)];
        assert_eq!(
            endpoints_between(&outcomes, from, to),
            [expected.clone(), expected],
            "new connections {when} ({:?})",
            steps.map(|(name, _)| name)
        );
    }
}

/// The tables left in the node, and whether kube-proxy's iptables chains are: `present` must
/// all be there, `absent` not, and every foreign rule must have survived.
#[track_caller]
fn left(bed: &Bed, present: &[&str], absent: &str, kube_proxy_chains: bool) {
    let tables = bed.tables();
    assert!(!tables.contains(absent), "{absent} left:\n{tables}");
    for table in present.iter().chain(&["table inet someone-else"]) {
        assert!(tables.contains(table), "{table} missing:\n{tables}");
    }
    let iptables = bed.iptables();
    // kubelet's KUBE-FIREWALL is not kube-proxy's: it stays.
    let kube: Vec<&str> = iptables
        .lines()
        .filter(|l| l.contains("KUBE-") && !l.contains("KUBE-FIREWALL"))
        .collect();
    assert_eq!(!kube.is_empty(), kube_proxy_chains, "{iptables}");
    for line in FOREIGN_IPTABLES {
        assert!(iptables.contains(line), "{line} missing:\n{iptables}");
    }
}

/// From kube-proxy to kube-nftproxy: start ours over kube-proxy's rules, then delete them.
#[test]
fn switching_from_kube_proxy_loses_no_connection() {
    if !prerequisites() {
        return;
    }
    let bed = Bed::new();
    bed.load_foreign();
    bed.load_kube_proxy();
    let start_ours = |bed: &Bed| {
        let summary = bed.start_ours();
        assert!(summary.starts_with("applied "), "{summary}");
    };
    let cleanup_kube_proxy = |bed: &Bed| {
        let removed = run(bed.node(), BIN, &["cleanup", "--kube-proxy"]);
        for expected in [
            "table ip kube-proxy",
            "table ip6 kube-proxy",
            "KUBE-SERVICES",
            "KUBE-POSTROUTING",
        ] {
            assert!(
                removed.contains(expected),
                "{expected} not removed:\n{removed}"
            );
        }
    };
    switch(
        &bed,
        [
            ("our start", &start_ours),
            ("cleanup --kube-proxy", &cleanup_kube_proxy),
        ],
        [THEIRS, OURS, OURS],
    );
    left(
        &bed,
        &["table ip kube-nftproxy", "table ip6 kube-nftproxy"],
        "kube-proxy\n",
        false,
    );
}

/// From kube-nftproxy back to kube-proxy: kube-proxy starts over our rules (ours still decide),
/// then `kube-nftproxy cleanup` deletes ours and kube-proxy's take the new connections.
#[test]
fn rolling_back_to_kube_proxy_loses_no_connection() {
    if !prerequisites() {
        return;
    }
    let bed = Bed::new();
    bed.load_foreign();
    let summary = bed.start_ours();
    assert!(summary.starts_with("applied "), "{summary}");
    let start_kube_proxy = |bed: &Bed| bed.load_kube_proxy();
    let cleanup_ours = |bed: &Bed| {
        let removed = run(bed.node(), BIN, &["cleanup"]);
        assert_eq!(
            removed.trim(),
            "deleted table ip kube-nftproxy, table ip6 kube-nftproxy"
        );
    };
    switch(
        &bed,
        [
            ("kube-proxy's start", &start_kube_proxy),
            ("cleanup", &cleanup_ours),
        ],
        [OURS, OURS, THEIRS],
    );
    left(
        &bed,
        &["table ip kube-proxy", "table ip6 kube-proxy"],
        "kube-nftproxy",
        true,
    );
}
