//! [`StoredService`]: what the view keeps of a `v1/Service`.
//!
//! A `k8s_openapi` Service is 824 bytes before any of its strings, most of it fields the proxy
//! never reads; the view holds one per Service (10 000s). It keeps the fields
//! [`crate::service`] reads, as written, so that a bad value is still reported with its field
//! when the Service is read; a change to any other field of the object is not a change for the
//! proxy.

use crate::service::SERVICE_PROXY_NAME_LABEL;
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, Service, ServicePort, SessionAffinityConfig,
};

/// What the view keeps of a Service. Its namespace and name are the view's key for it, not
/// kept twice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredService {
    /// The Service carries the label that gives it to another proxy.
    pub other_proxy: bool,
    /// What the proxy reads of `spec`.
    pub spec: Option<StoredSpec>,
    /// `status.loadBalancer.ingress`.
    pub load_balancer_ingress: Option<Vec<LoadBalancerIngress>>,
}

/// The fields of `spec` the proxy reads, named as in `ServiceSpec`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct StoredSpec {
    pub type_: Option<String>,
    pub cluster_ip: Option<String>,
    pub cluster_ips: Option<Vec<String>>,
    pub external_ips: Option<Vec<String>>,
    pub load_balancer_source_ranges: Option<Vec<String>>,
    pub internal_traffic_policy: Option<String>,
    pub external_traffic_policy: Option<String>,
    pub health_check_node_port: Option<i32>,
    pub session_affinity: Option<String>,
    pub session_affinity_config: Option<SessionAffinityConfig>,
    pub ports: Option<Vec<ServicePort>>,
}

impl StoredService {
    /// Keeps what the proxy reads of `svc`.
    pub(crate) fn new(svc: Service) -> StoredService {
        let other_proxy = svc
            .metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(SERVICE_PROXY_NAME_LABEL));
        let spec = svc.spec.map(|s| StoredSpec {
            type_: s.type_,
            cluster_ip: s.cluster_ip,
            cluster_ips: s.cluster_ips,
            external_ips: s.external_ips,
            load_balancer_source_ranges: s.load_balancer_source_ranges,
            internal_traffic_policy: s.internal_traffic_policy,
            external_traffic_policy: s.external_traffic_policy,
            health_check_node_port: s.health_check_node_port,
            session_affinity: s.session_affinity,
            session_affinity_config: s.session_affinity_config,
            ports: s.ports,
        });
        StoredService {
            other_proxy,
            spec,
            load_balancer_ingress: svc
                .status
                .and_then(|s| s.load_balancer)
                .and_then(|lb| lb.ingress),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn it_is_much_smaller_than_a_service() {
        let stored = std::mem::size_of::<StoredService>();
        assert!(stored <= 400, "{stored} bytes");
        assert!(stored * 2 < std::mem::size_of::<Service>());
    }
}
