//! Traffic policies and verdicts: what happens to each kind of traffic (DESIGN.md §2.3, §2.4).
//!
//! The table of DESIGN.md §2.3, row by row, is [`ServicePortView::verdict`]; the ruleset is built
//! from the same [`ServicePortView::internal_action`] and [`ServicePortView::external_dispatch`],
//! so what the model says and what the kernel does cannot drift apart.

use crate::view::ServicePortView;

/// `spec.internalTrafficPolicy` / `spec.externalTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
pub enum TrafficPolicy {
    /// Any endpoint in the cluster.
    #[default]
    Cluster,
    /// Only endpoints on the node the traffic entered.
    Local,
}

/// How traffic reaches the service-port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EntryPoint {
    /// The Service's cluster IP.
    ClusterIp,
    /// A NodePort on one of the node-port addresses.
    NodePort,
    /// A LoadBalancer ingress IP (`ipMode` VIP).
    LoadBalancer,
    /// One of `spec.externalIPs`.
    ExternalIp,
}

/// Where the traffic comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Source {
    /// A pod of this cluster (an address inside the cluster CIDRs).
    Pod,
    /// A process on this node (host network).
    Node,
    /// Anything else: outside the cluster, or a non-pod address.
    External,
}

/// Which endpoint set traffic is spread over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum EndpointSet {
    /// The cluster set (ready endpoints anywhere, topology applied, terminating fallback).
    Cluster,
    /// The local set (endpoints on this node, terminating fallback).
    Local,
}

/// What happens to a new connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Action {
    /// DNAT to one endpoint of the set.
    Forward(EndpointSet),
    /// Silently dropped (a Local policy with no endpoint on this node).
    Drop,
    /// Refused with ICMP port unreachable (no usable endpoint anywhere).
    Reject,
}

/// An action and whether the source address is masqueraded (SNAT to the node).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    /// What happens.
    pub action: Action,
    /// True when the endpoint sees the node's address instead of the client's.
    pub masquerade: bool,
}

/// How external entry points (NodePort, LB IPs, externalIPs) of a service-port are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum ExternalDispatch {
    /// No usable endpoint anywhere: reject.
    Reject,
    /// `externalTrafficPolicy: Cluster`: cluster set, always masqueraded.
    Cluster,
    /// `externalTrafficPolicy: Local`: pods short-circuit to the cluster set, the node is
    /// masqueraded to the cluster set, everything else goes to the local set or is dropped.
    Local {
        /// True when the local set is not empty.
        has_local: bool,
    },
}

impl ServicePortView {
    /// True when some endpoint anywhere can take traffic (ready, or serving and terminating).
    pub fn has_endpoints(&self) -> bool {
        !self.cluster_endpoints.is_empty()
    }

    /// True when this service-port can be reached from outside through this family.
    pub fn externally_accessible(&self) -> bool {
        self.node_port.is_some()
            || !self.external_ips.is_empty()
            || !self.load_balancer_ips.is_empty()
    }

    /// What ClusterIP traffic gets, whatever its source.
    pub fn internal_action(&self) -> Action {
        if !self.has_endpoints() {
            Action::Reject
        } else if self.internal_policy == TrafficPolicy::Cluster {
            Action::Forward(EndpointSet::Cluster)
        } else if self.local_endpoints.is_empty() {
            Action::Drop
        } else {
            Action::Forward(EndpointSet::Local)
        }
    }

    /// How external entry points are handled; `None` when there are none in this family.
    pub fn external_dispatch(&self) -> Option<ExternalDispatch> {
        if !self.externally_accessible() {
            None
        } else if !self.has_endpoints() {
            Some(ExternalDispatch::Reject)
        } else if self.external_policy == TrafficPolicy::Cluster {
            Some(ExternalDispatch::Cluster)
        } else {
            Some(ExternalDispatch::Local {
                has_local: !self.local_endpoints.is_empty(),
            })
        }
    }

    /// True when this entry point exists for this service-port in this family.
    pub fn has_entry_point(&self, entry: EntryPoint) -> bool {
        match entry {
            EntryPoint::ClusterIp => true,
            EntryPoint::NodePort => self.node_port.is_some(),
            EntryPoint::LoadBalancer => !self.load_balancer_ips.is_empty(),
            EntryPoint::ExternalIp => !self.external_ips.is_empty(),
        }
    }

    /// The verdict for a new connection arriving through `entry` from `source`
    /// (DESIGN.md §2.3 and §2.4); `None` when the entry point does not exist. Source ranges of
    /// LoadBalancer IPs are a separate filter: see [`ServicePortView::firewall`].
    pub fn verdict(&self, entry: EntryPoint, source: Source) -> Option<Verdict> {
        if !self.has_entry_point(entry) {
            return None;
        }
        // Without cluster CIDRs a pod cannot be told from any other source.
        let source = match source {
            Source::Pod if !self.pod_sources_known => Source::External,
            other => other,
        };
        if entry == EntryPoint::ClusterIp {
            let action = self.internal_action();
            let masquerade = matches!(action, Action::Forward(_))
                && (self.masquerade_all || (self.pod_sources_known && source != Source::Pod));
            return Some(Verdict { action, masquerade });
        }
        let forward = |set, masquerade| Verdict {
            action: Action::Forward(set),
            masquerade,
        };
        Some(match self.external_dispatch()? {
            ExternalDispatch::Reject => Verdict {
                action: Action::Reject,
                masquerade: false,
            },
            ExternalDispatch::Cluster => forward(EndpointSet::Cluster, true),
            ExternalDispatch::Local { has_local } => match source {
                Source::Pod => forward(EndpointSet::Cluster, false),
                Source::Node => forward(EndpointSet::Cluster, true),
                Source::External if has_local => forward(EndpointSet::Local, false),
                Source::External => Verdict {
                    action: Action::Drop,
                    masquerade: false,
                },
            },
        })
    }
}
