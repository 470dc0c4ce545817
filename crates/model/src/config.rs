//! Who this node is: the part of the agent's configuration that the semantics depend on.

use crate::error::{ModelError, Problem};
use crate::objects::{ObjectKind, ObjectRef};
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use std::net::IpAddr;

/// Which node addresses accept NodePort traffic (and serve health-check node ports).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NodePortAddresses {
    /// The node's primary address of each family (kube-proxy nftables mode's default).
    #[default]
    Primary,
    /// Every node address inside one of these CIDRs.
    Cidrs(Vec<IpNet>),
}

/// This node, as the model needs it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeConfig {
    /// The node's name, as in `EndpointSlice` `nodeName` (compared exactly).
    pub node_name: String,
    /// The node's addresses, primary first per family. Empty means: take them from the Node
    /// object's `status.addresses` (InternalIP first, then ExternalIP).
    pub node_ips: Vec<IpAddr>,
    /// Pod CIDRs of the cluster: traffic from inside them is "from a pod". Empty means the source
    /// of traffic cannot be told apart, so nothing is masqueraded or short-circuited on that basis
    /// (as kube-proxy without a local-traffic detector). Unused when `pod_cidrs_from_node`.
    pub cluster_cidrs: Vec<IpNet>,
    /// Tell pod traffic by this Node's `spec.podCIDRs` instead of `cluster_cidrs` (kube-proxy's
    /// `detectLocalMode: NodeCIDR`): only this node's pods count as pods. Without a Node object,
    /// or a pod CIDR of a family, pod traffic of that family cannot be told apart.
    pub pod_cidrs_from_node: bool,
    /// Which node addresses take NodePort traffic.
    pub node_port_addresses: NodePortAddresses,
    /// Masquerade all ClusterIP traffic, whatever its source.
    pub masquerade_all: bool,
}

impl NodeConfig {
    /// The CIDRs whose sources are pods: `cluster_cidrs`, or with `pod_cidrs_from_node` the
    /// Node's `spec.podCIDRs` (`spec.podCIDR` when that list is empty). A pod CIDR that does not
    /// parse is reported as a problem of the Node and left out.
    pub fn pod_cidrs(&self, node: Option<&Node>, errors: &mut Vec<ModelError>) -> Vec<IpNet> {
        if !self.pod_cidrs_from_node {
            return self.cluster_cidrs.clone();
        }
        let Some(node) = node else {
            return Vec::new();
        };
        let spec = node.spec.as_ref();
        let (field, values): (&str, Vec<&String>) = match spec
            .and_then(|s| s.pod_cidrs.as_ref())
            .filter(|v| !v.is_empty())
        {
            Some(list) => ("spec.podCIDRs", list.iter().collect()),
            None => (
                "spec.podCIDR",
                spec.and_then(|s| s.pod_cidr.as_ref()).into_iter().collect(),
            ),
        };
        let mut cidrs = Vec::new();
        for (i, value) in values.into_iter().enumerate() {
            match value.trim().parse::<IpNet>() {
                Ok(net) => cidrs.push(net),
                Err(_) => errors.push(ModelError {
                    object: ObjectRef::new(
                        ObjectKind::Node,
                        "",
                        node.metadata.name.as_deref().unwrap_or(""),
                    ),
                    problem: Problem::InvalidCidr {
                        field: if field == "spec.podCIDRs" {
                            format!("{field}[{i}]")
                        } else {
                            field.to_owned()
                        },
                        value: value.clone(),
                    },
                }),
            }
        }
        cidrs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::NodeSpec;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    fn node(pod_cidr: Option<&str>, pod_cidrs: &[&str]) -> Node {
        Node {
            metadata: ObjectMeta {
                name: Some("node-a".into()),
                ..ObjectMeta::default()
            },
            spec: Some(NodeSpec {
                pod_cidr: pod_cidr.map(Into::into),
                pod_cidrs: Some(pod_cidrs.iter().map(|s| s.to_string()).collect()),
                ..NodeSpec::default()
            }),
            status: None,
        }
    }

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|s| s.parse().expect("cidr")).collect()
    }

    #[test]
    fn cluster_cidrs_unless_taken_from_the_node() {
        let mut config = NodeConfig {
            cluster_cidrs: nets(&["10.0.0.0/8"]),
            ..NodeConfig::default()
        };
        let n = node(Some("10.244.1.0/24"), &["10.244.1.0/24", "fd00:1::/64"]);
        let mut errors = Vec::new();
        assert_eq!(
            config.pod_cidrs(Some(&n), &mut errors),
            nets(&["10.0.0.0/8"])
        );
        config.pod_cidrs_from_node = true;
        assert_eq!(
            config.pod_cidrs(Some(&n), &mut errors),
            nets(&["10.244.1.0/24", "fd00:1::/64"])
        );
        assert_eq!(config.pod_cidrs(None, &mut errors), vec![]);
        // Older Nodes: only the singular field.
        let old = node(Some("10.244.7.0/24"), &[]);
        assert_eq!(
            config.pod_cidrs(Some(&old), &mut errors),
            nets(&["10.244.7.0/24"])
        );
        assert!(errors.is_empty(), "{errors:?}");
    }

    #[test]
    fn a_bad_pod_cidr_is_reported_and_left_out() {
        let config = NodeConfig {
            pod_cidrs_from_node: true,
            ..NodeConfig::default()
        };
        let n = node(None, &["10.244.1.0/33", "fd00:1::/64"]);
        let mut errors = Vec::new();
        assert_eq!(
            config.pod_cidrs(Some(&n), &mut errors),
            nets(&["fd00:1::/64"])
        );
        assert_eq!(errors.len(), 1);
        assert_eq!(
            errors[0].to_string(),
            "Node node-a: spec.podCIDRs[0]: invalid CIDR \"10.244.1.0/33\""
        );
    }

    #[test]
    fn node_view_takes_pod_cidrs_per_family_from_the_node() {
        use crate::fixtures::{ep, node_config, service, slice, NODE};
        use crate::{node_view, ClusterView};
        let mut this = crate::fixtures::node(NODE, &["192.168.0.2", "2001:db8::2"], None);
        this.spec = node(None, &["10.244.1.0/24"]).spec;
        let svc = service("ns", "web", "172.30.0.1").port("http", "TCP", 80);
        let eps = slice("ns", "web-1", "web", "IPv4")
            .endpoint(ep("10.244.1.5", NODE))
            .port("http", "TCP", 8080);
        let view = ClusterView::from_objects([svc.0], [eps.0], [this.clone()], NODE);
        let mut config = node_config();
        config.pod_cidrs_from_node = true;
        let out = node_view(&view, &config);
        assert_eq!(out.ipv4.cluster_cidrs, nets(&["10.244.1.0/24"]));
        assert_eq!(
            out.ipv6.cluster_cidrs,
            vec![],
            "no IPv6 pod CIDR on the Node"
        );
        let port = out.ipv4.ports.values().next().expect("one service-port");
        assert!(port.pod_sources_known);
        // The configured cluster CIDRs are not used.
        assert!(!out
            .ipv4
            .cluster_cidrs
            .contains(&"10.0.0.0/8".parse().expect("cidr")));
        // Without the Node object: pod sources cannot be told apart.
        let view = ClusterView::from_objects(Vec::new(), Vec::new(), Vec::new(), NODE);
        assert_eq!(node_view(&view, &config).ipv4.cluster_cidrs, vec![]);
        // ClusterCIDR detection (the default) ignores the Node's pod CIDRs.
        let view = ClusterView::from_objects(Vec::new(), Vec::new(), [this], NODE);
        assert_eq!(
            node_view(&view, &node_config()).ipv4.cluster_cidrs,
            nets(&["10.0.0.0/8"])
        );
    }
}
