//! The benchmark cluster: N Services with 10 endpoints each, in a mix of kinds, and the changes
//! made to it (one endpoint replaced by a new pod).
//!
//! Every Service has one TCP port (80 → 8080) and one EndpointSlice of 10 ready endpoints spread
//! over 10 nodes, one of them this node (`node-a`). Of the Services:
//! - 1 in 100 is a LoadBalancer with an LB IP (and a NodePort); half of those have
//!   `externalTrafficPolicy: Local` and a health-check node port;
//! - 1 in 10 is a NodePort;
//! - 1 in 20 has `internalTrafficPolicy: Local`;
//! - 1 in 100 has ClientIP session affinity (at most 100 Services);
//!
//! the rest are plain ClusterIP Services. NodePorts are capped at what the default range
//! (30000-32767) holds: beyond 2 000 NodePort and 250 LoadBalancer Services, the rest stay
//! ClusterIP. Affinity is capped because each of its endpoints has a dynamic set of size
//! 65 535, for which the kernel allocates a 1 MiB hash table: 500 such Services (1 % of
//! 50 000) would take 5 GiB of kernel memory in each namespace. Single-stack IPv4. Addresses: ClusterIPs from 172.16.0.0/12, endpoints from
//! 10.1.0.0 up (the cluster CIDR is 10.0.0.0/8), LB IPs from 198.18.0.0/15.

use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use model::fixtures::{ep, node, service, slice};
use model::{ClusterView, NodeConfig, ServiceRef};
use serde::Serialize;
use std::net::Ipv4Addr;

/// This node's name.
pub const NODE: &str = "node-a";
/// This node's address (the test bed's node address, so the data-plane cluster matches).
pub const NODE_IP: Ipv4Addr = testbed::cluster::NODE_IPV4;
/// Endpoints per Service.
pub const ENDPOINTS: usize = 10;
/// The nodes endpoints are spread over; the first is this node.
const NODES: [&str; 10] = [
    NODE, "node-b", "node-c", "node-d", "node-e", "node-f", "node-g", "node-h", "node-i", "node-j",
];
const MAX_NODEPORT: usize = 2_000;
const MAX_LB: usize = 250;
const MAX_AFFINITY: usize = 100;

/// How many Services of each kind a workload has.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Mix {
    /// Plain ClusterIP Services.
    pub cluster_ip: usize,
    /// NodePort Services.
    pub node_port: usize,
    /// LoadBalancer Services (each with one LB IP and a NodePort).
    pub load_balancer: usize,
    /// LoadBalancer Services with `externalTrafficPolicy: Local`.
    pub external_local: usize,
    /// Services with `internalTrafficPolicy: Local`.
    pub internal_local: usize,
    /// Services with ClientIP session affinity.
    pub affinity: usize,
}

/// The objects of one benchmark cluster.
#[derive(Debug, Clone)]
pub struct Workload {
    /// Number of Services.
    pub n: usize,
    /// The Services.
    pub services: Vec<Service>,
    /// One slice per Service, in the same order.
    pub slices: Vec<EndpointSlice>,
    /// This node's Node object.
    pub nodes: Vec<Node>,
    /// The kinds of Services.
    pub mix: Mix,
}

/// The node configuration the benchmarks compute for.
pub fn node_config() -> NodeConfig {
    NodeConfig {
        node_name: NODE.into(),
        node_ips: vec![NODE_IP.into()],
        cluster_cidrs: vec!["10.0.0.0/8".parse().expect("a CIDR")],
        ..NodeConfig::default()
    }
}

/// The agent configuration file for the same node.
pub fn config_toml() -> String {
    format!(
        "node_name = \"{NODE}\"\nnode_ips = [\"{NODE_IP}\"]\ncluster_cidrs = [\"10.0.0.0/8\"]\n"
    )
}

fn namespace(i: usize) -> String {
    format!("ns-{}", i % 50)
}

fn name(i: usize) -> String {
    format!("svc-{i}")
}

fn slice_name(i: usize) -> String {
    format!("svc-{i}-x7k2p")
}

/// The `i`-th address after `base`.
fn nth(base: Ipv4Addr, i: usize) -> Ipv4Addr {
    let offset = u32::try_from(i).expect("address offset fits 32 bits");
    Ipv4Addr::from(u32::from(base).wrapping_add(offset))
}

fn cluster_ip(i: usize) -> String {
    nth(Ipv4Addr::new(172, 16, 0, 0), i + 1).to_string()
}

fn endpoint_ip(i: usize, k: usize) -> String {
    nth(Ipv4Addr::new(10, 1, 0, 0), i * ENDPOINTS + k).to_string()
}

/// The endpoint of service `i` that changes: one on another node.
fn changed_endpoint(i: usize) -> usize {
    (ENDPOINTS + 5 - i % ENDPOINTS) % ENDPOINTS
}

/// An endpoint address outside every workload's range (10.128.0.0 and up), one per `serial`.
fn new_endpoint_ip(serial: usize) -> String {
    nth(Ipv4Addr::new(10, 128, 0, 0), serial).to_string()
}

/// A slice of `svc` (namespace, name) with `ips` as its endpoints, spread from `first_node`.
pub fn build_slice(
    namespace: &str,
    slice_name: &str,
    svc: &str,
    endpoints: &[(String, &str)],
) -> EndpointSlice {
    let mut s = slice(namespace, slice_name, svc, "IPv4").port("http", "TCP", 8080);
    for (ip, node) in endpoints {
        s = s.endpoint(ep(ip, node));
    }
    s.build()
}

impl Workload {
    /// The cluster of `n` Services.
    pub fn new(n: usize) -> Workload {
        let mut services = Vec::with_capacity(n);
        let mut slices = Vec::with_capacity(n);
        let mut mix = Mix::default();
        let mut next_node_port = 30_000;
        let mut next_health_port = 32_700;
        for i in 0..n {
            let (ns, svc_name) = (namespace(i), name(i));
            let mut svc = service(&ns, &svc_name, &cluster_ip(i));
            if i.is_multiple_of(100) && mix.load_balancer < MAX_LB {
                let lb_ip = nth(Ipv4Addr::new(198, 18, 0, 0), mix.load_balancer + 1).to_string();
                svc = svc
                    .type_("LoadBalancer")
                    .node_port("http", "TCP", 80, next_node_port)
                    .lb_ingress(&lb_ip, None);
                next_node_port += 1;
                mix.load_balancer += 1;
                if mix.load_balancer.is_multiple_of(2) {
                    svc = svc.etp_local().health_check_node_port(next_health_port);
                    next_health_port -= 1;
                    mix.external_local += 1;
                }
            } else if i % 10 == 5 && mix.node_port < MAX_NODEPORT {
                svc = svc
                    .type_("NodePort")
                    .node_port("http", "TCP", 80, next_node_port);
                next_node_port += 1;
                mix.node_port += 1;
            } else {
                svc = svc.port("http", "TCP", 80);
                mix.cluster_ip += 1;
            }
            if i % 20 == 3 {
                svc = svc.itp_local();
                mix.internal_local += 1;
            }
            if i % 100 == 37 && mix.affinity < MAX_AFFINITY {
                svc = svc.affinity(Some(10_800));
                mix.affinity += 1;
            }
            services.push(svc.build());
            let endpoints: Vec<(String, &str)> = (0..ENDPOINTS)
                .map(|k| (endpoint_ip(i, k), NODES[(i + k) % NODES.len()]))
                .collect();
            slices.push(build_slice(&ns, &slice_name(i), &svc_name, &endpoints));
        }
        Workload {
            n,
            services,
            slices,
            nodes: vec![node(NODE, &[&NODE_IP.to_string()], Some("zone-a"))],
            mix,
        }
    }

    /// The cluster view of these objects.
    pub fn view(&self) -> ClusterView {
        ClusterView::from_objects(
            self.services.iter().cloned(),
            self.slices.iter().cloned(),
            self.nodes.iter().cloned(),
            NODE,
        )
    }

    /// Every Service of the workload.
    pub fn service_refs(&self) -> Vec<ServiceRef> {
        (0..self.n)
            .map(|i| ServiceRef::new(&namespace(i), &name(i)))
            .collect()
    }

    /// Service `i`'s slice with one remote endpoint replaced by a new pod (`serial` picks its
    /// address; use a different one for each change).
    pub fn changed_slice(&self, i: usize, serial: usize) -> EndpointSlice {
        let mut s = self.slices[i].clone();
        let k = changed_endpoint(i);
        if let Some(endpoint) = s.endpoints.get_mut(k) {
            endpoint.addresses = vec![new_endpoint_ip(serial)];
        }
        s
    }

    /// `count` distinct Services spread over the workload, starting from `seed`.
    pub fn pick(&self, count: usize, seed: usize) -> Vec<usize> {
        let count = count.min(self.n);
        // A stride coprime with n visits every Service before repeating one.
        let mut stride = 7_919 % self.n.max(1);
        while stride == 0 || gcd(stride, self.n) != 1 {
            stride += 1;
        }
        (0..count).map(|c| (seed + c * stride) % self.n).collect()
    }

    /// The workload's objects as one multi-document YAML manifest (Node, Services, slices).
    pub fn manifest_yaml(&self) -> anyhow::Result<String> {
        let mut out = String::new();
        for doc in self.nodes.iter().map(serde_norway::to_string) {
            out.push_str("---\n");
            out.push_str(&doc?);
        }
        for doc in self.services.iter().map(serde_norway::to_string) {
            out.push_str("---\n");
            out.push_str(&doc?);
        }
        for doc in self.slices.iter().map(serde_norway::to_string) {
            out.push_str("---\n");
            out.push_str(&doc?);
        }
        Ok(out)
    }
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The data-plane target: a ClusterIP Service whose one endpoint is a real pod.
pub fn target(endpoint: Ipv4Addr) -> (Service, EndpointSlice) {
    let svc = service("bench", "target", &TARGET_IP.to_string())
        .port("http", "TCP", 80)
        .build();
    let slice = build_slice(
        "bench",
        "target-x7k2p",
        "target",
        &[(endpoint.to_string(), "node-b")],
    );
    (svc, slice)
}

/// The data-plane target's ClusterIP (outside the range the workload uses).
pub const TARGET_IP: Ipv4Addr = Ipv4Addr::new(172, 31, 255, 254);
/// Its port.
pub const TARGET_PORT: u16 = 80;
/// The port its endpoint listens on.
pub const TARGET_ENDPOINT_PORT: u16 = 8080;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_adds_up_and_picks_are_distinct() {
        let w = Workload::new(1_000);
        assert_eq!(w.services.len(), 1_000);
        assert_eq!(w.slices.len(), 1_000);
        assert_eq!(
            w.mix.cluster_ip + w.mix.node_port + w.mix.load_balancer,
            1_000
        );
        assert_eq!(w.mix.load_balancer, 10);
        let picks = w.pick(100, 3);
        let distinct: std::collections::BTreeSet<_> = picks.iter().collect();
        assert_eq!(distinct.len(), 100);
        let changed = w.changed_slice(5, 1);
        assert_ne!(changed, w.slices[5]);
        assert_eq!(changed.endpoints.len(), ENDPOINTS);
    }

    #[test]
    fn the_model_accepts_every_object() {
        let w = Workload::new(200);
        let services = model::node_view(&w.view(), &node_config());
        assert!(services.errors.is_empty(), "{:?}", services.errors);
        assert_eq!(services.ipv4.ports.len(), 200);
    }
}
