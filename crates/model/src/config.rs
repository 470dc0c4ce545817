//! Who this node is: the part of the agent's configuration that the semantics depend on.

use ipnet::IpNet;
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
    /// (as kube-proxy without a local-traffic detector).
    pub cluster_cidrs: Vec<IpNet>,
    /// Which node addresses take NodePort traffic.
    pub node_port_addresses: NodePortAddresses,
    /// Masquerade all ClusterIP traffic, whatever its source.
    pub masquerade_all: bool,
}
