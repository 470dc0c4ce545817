//! Builders of Services, EndpointSlices and Nodes for tests (feature `fixtures`).
//!
//! Defaults follow upstream's proxier tests: node `node-a` at 192.168.0.2 / 2001:db8::2, pod CIDRs
//! 10.0.0.0/8 and fd00:10::/64.

#![allow(missing_docs)]

use crate::config::NodeConfig;
use crate::objects::{IpFamily, Protocol, ServicePortName, ServiceRef};
use crate::view::{NodeServices, ServicePortView};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeSpec,
    NodeStatus, Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as K8sEndpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice,
    ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;

/// The node the fixtures compute for.
pub const NODE: &str = "node-a";

/// A node configuration for [`NODE`] with both pod CIDRs.
pub fn node_config() -> NodeConfig {
    NodeConfig {
        node_name: NODE.into(),
        node_ips: vec![
            "192.168.0.2".parse().expect("ip"),
            "2001:db8::2".parse().expect("ip"),
        ],
        cluster_cidrs: vec![
            "10.0.0.0/8".parse().expect("cidr"),
            "fd00:10::/64".parse().expect("cidr"),
        ],
        ..NodeConfig::default()
    }
}

fn meta(namespace: &str, name: &str) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        ..ObjectMeta::default()
    }
}

/// Builds a Service.
#[derive(Debug, Clone)]
pub struct Svc(pub Service);

/// A ClusterIP Service with one cluster IP and no ports.
pub fn service(namespace: &str, name: &str, cluster_ip: &str) -> Svc {
    Svc(Service {
        metadata: meta(namespace, name),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".into()),
            cluster_ip: Some(cluster_ip.into()),
            cluster_ips: Some(vec![cluster_ip.into()]),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

impl Svc {
    fn spec(&mut self) -> &mut ServiceSpec {
        self.0.spec.get_or_insert_with(ServiceSpec::default)
    }
    pub fn cluster_ips(mut self, ips: &[&str]) -> Self {
        let spec = self.spec();
        spec.cluster_ip = ips.first().map(|s| s.to_string());
        spec.cluster_ips = Some(ips.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn type_(mut self, t: &str) -> Self {
        self.spec().type_ = Some(t.into());
        self
    }
    pub fn port(self, name: &str, protocol: &str, port: i32) -> Self {
        self.port_with(name, protocol, port, None)
    }
    pub fn node_port(self, name: &str, protocol: &str, port: i32, node_port: i32) -> Self {
        self.port_with(name, protocol, port, Some(node_port))
    }
    fn port_with(mut self, name: &str, protocol: &str, port: i32, node_port: Option<i32>) -> Self {
        self.spec()
            .ports
            .get_or_insert_with(Vec::new)
            .push(ServicePort {
                name: (!name.is_empty()).then(|| name.into()),
                protocol: Some(protocol.into()),
                port,
                node_port,
                ..ServicePort::default()
            });
        self
    }
    pub fn itp_local(mut self) -> Self {
        self.spec().internal_traffic_policy = Some("Local".into());
        self
    }
    pub fn etp_local(mut self) -> Self {
        self.spec().external_traffic_policy = Some("Local".into());
        self
    }
    pub fn external_ips(mut self, ips: &[&str]) -> Self {
        self.spec().external_ips = Some(ips.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn source_ranges(mut self, ranges: &[&str]) -> Self {
        self.spec().load_balancer_source_ranges =
            Some(ranges.iter().map(|s| s.to_string()).collect());
        self
    }
    pub fn health_check_node_port(mut self, port: i32) -> Self {
        self.spec().health_check_node_port = Some(port);
        self
    }
    pub fn affinity(mut self, timeout: Option<i32>) -> Self {
        let spec = self.spec();
        spec.session_affinity = Some("ClientIP".into());
        spec.session_affinity_config = timeout.map(|t| SessionAffinityConfig {
            client_ip: Some(ClientIPConfig {
                timeout_seconds: Some(t),
            }),
        });
        self
    }
    pub fn lb_ingress(mut self, ip: &str, ip_mode: Option<&str>) -> Self {
        let status = self.0.status.get_or_insert_with(ServiceStatus::default);
        let lb = status
            .load_balancer
            .get_or_insert_with(LoadBalancerStatus::default);
        lb.ingress
            .get_or_insert_with(Vec::new)
            .push(LoadBalancerIngress {
                ip: Some(ip.into()),
                ip_mode: ip_mode.map(Into::into),
                ..LoadBalancerIngress::default()
            });
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }
    pub fn build(self) -> Service {
        self.0
    }
}

/// An endpoint's state and placement.
#[derive(Debug, Clone)]
pub struct Ep(pub K8sEndpoint);

/// A ready endpoint on `node`.
pub fn ep(ip: &str, node: &str) -> Ep {
    Ep(K8sEndpoint {
        addresses: vec![ip.into()],
        node_name: (!node.is_empty()).then(|| node.into()),
        conditions: Some(EndpointConditions {
            ready: Some(true),
            serving: Some(true),
            terminating: Some(false),
        }),
        ..K8sEndpoint::default()
    })
}

impl Ep {
    /// Terminating but still serving (the graceful-drain state).
    pub fn serving_terminating(mut self) -> Self {
        self.0.conditions = Some(EndpointConditions {
            ready: Some(false),
            serving: Some(true),
            terminating: Some(true),
        });
        self
    }
    /// Terminating and no longer serving.
    pub fn terminated(mut self) -> Self {
        self.0.conditions = Some(EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(true),
        });
        self
    }
    /// Not ready, not terminating (starting up or failing its probe).
    pub fn not_ready(mut self) -> Self {
        self.0.conditions = Some(EndpointConditions {
            ready: Some(false),
            serving: Some(false),
            terminating: Some(false),
        });
        self
    }
    pub fn zone_hints(mut self, zones: &[&str]) -> Self {
        let hints = self.0.hints.get_or_insert_with(EndpointHints::default);
        hints.for_zones = Some(
            zones
                .iter()
                .map(|z| ForZone {
                    name: z.to_string(),
                })
                .collect(),
        );
        self
    }
    pub fn node_hints(mut self, nodes: &[&str]) -> Self {
        let hints = self.0.hints.get_or_insert_with(EndpointHints::default);
        hints.for_nodes = Some(
            nodes
                .iter()
                .map(|n| ForNode {
                    name: n.to_string(),
                })
                .collect(),
        );
        self
    }
}

/// Builds an EndpointSlice.
#[derive(Debug, Clone)]
pub struct Slice(pub EndpointSlice);

/// A slice of `service` with the given address type (`IPv4`, `IPv6`).
pub fn slice(namespace: &str, name: &str, service: &str, address_type: &str) -> Slice {
    let mut metadata = meta(namespace, name);
    metadata.labels = Some(BTreeMap::from([(
        "kubernetes.io/service-name".to_owned(),
        service.to_owned(),
    )]));
    Slice(EndpointSlice {
        metadata,
        address_type: address_type.into(),
        endpoints: Vec::new(),
        ports: Some(Vec::new()),
    })
}

impl Slice {
    pub fn port(mut self, name: &str, protocol: &str, port: i32) -> Self {
        self.0
            .ports
            .get_or_insert_with(Vec::new)
            .push(EndpointPort {
                name: Some(name.into()),
                protocol: Some(protocol.into()),
                port: Some(port),
                ..EndpointPort::default()
            });
        self
    }
    pub fn endpoint(mut self, ep: Ep) -> Self {
        self.0.endpoints.push(ep.0);
        self
    }
    pub fn without_labels(mut self) -> Self {
        self.0.metadata.labels = None;
        self
    }
    pub fn label(mut self, key: &str, value: &str) -> Self {
        self.0
            .metadata
            .labels
            .get_or_insert_with(BTreeMap::new)
            .insert(key.into(), value.into());
        self
    }
    pub fn build(self) -> EndpointSlice {
        self.0
    }
}

/// A Node with InternalIP addresses and an optional zone label.
pub fn node(name: &str, ips: &[&str], zone: Option<&str>) -> Node {
    let mut metadata = ObjectMeta {
        name: Some(name.into()),
        ..ObjectMeta::default()
    };
    if let Some(zone) = zone {
        metadata.labels = Some(BTreeMap::from([(
            "topology.kubernetes.io/zone".to_owned(),
            zone.to_owned(),
        )]));
    }
    Node {
        metadata,
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            addresses: Some(
                ips.iter()
                    .map(|ip| NodeAddress {
                        type_: "InternalIP".into(),
                        address: ip.to_string(),
                    })
                    .collect(),
            ),
            ..NodeStatus::default()
        }),
    }
}

/// One service-port view of a computed node; panics listing what exists (and the errors) when
/// it is missing.
#[track_caller]
pub fn port_view<'a>(
    out: &'a NodeServices,
    family: IpFamily,
    namespace: &str,
    name: &str,
    port_name: &str,
    protocol: Protocol,
) -> &'a ServicePortView {
    let key = ServicePortName {
        service: ServiceRef::new(namespace, name),
        port_name: port_name.into(),
        protocol,
    };
    let fam = out.family(family);
    fam.ports.get(&key).unwrap_or_else(|| {
        panic!(
            "no {family} view for {key}; have {:?}; errors {:?}",
            fam.ports
                .keys()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            out.errors
        )
    })
}
