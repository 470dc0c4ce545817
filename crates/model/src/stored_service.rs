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
use std::borrow::Cow;

/// The values an enumerated field of a Service or slice usually holds (its type, a traffic
/// policy, an address type, a protocol): kept as these, not as a string of its own for each
/// of 10 000s of objects. Anything else is kept as written.
const KNOWN_VALUES: &[&str] = &[
    "ClusterIP",
    "NodePort",
    "LoadBalancer",
    "ExternalName",
    "Cluster",
    "Local",
    "None",
    "ClientIP",
    "TCP",
    "UDP",
    "SCTP",
    "IPv4",
    "IPv6",
    "FQDN",
];

/// `value` as one of [`KNOWN_VALUES`] when it is one, as written otherwise.
pub(crate) fn known_value(value: String) -> Cow<'static, str> {
    match KNOWN_VALUES.iter().find(|known| **known == value) {
        Some(known) => Cow::Borrowed(known),
        None => Cow::Owned(value),
    }
}

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
    pub type_: Option<Cow<'static, str>>,
    pub cluster_ip: Option<String>,
    pub cluster_ips: Option<Vec<String>>,
    pub external_ips: Option<Vec<String>>,
    pub load_balancer_source_ranges: Option<Vec<String>>,
    pub internal_traffic_policy: Option<Cow<'static, str>>,
    pub external_traffic_policy: Option<Cow<'static, str>>,
    pub health_check_node_port: Option<i32>,
    pub session_affinity: Option<Cow<'static, str>>,
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
            type_: s.type_.map(known_value),
            cluster_ip: s.cluster_ip,
            cluster_ips: s.cluster_ips,
            external_ips: s.external_ips,
            load_balancer_source_ranges: s.load_balancer_source_ranges,
            internal_traffic_policy: s.internal_traffic_policy.map(known_value),
            external_traffic_policy: s.external_traffic_policy.map(known_value),
            health_check_node_port: s.health_check_node_port,
            session_affinity: s.session_affinity.map(known_value),
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
    fn known_values_are_shared_and_others_kept_as_written() {
        for value in KNOWN_VALUES {
            assert!(matches!(known_value((*value).to_owned()), Cow::Borrowed(v) if v == *value));
        }
        for value in ["Magic", "tcp", "", "IPv5"] {
            assert!(matches!(known_value(value.to_owned()), Cow::Owned(v) if v == value));
        }
    }

    #[test]
    fn it_is_much_smaller_than_a_service() {
        let stored = std::mem::size_of::<StoredService>();
        assert!(stored <= 400, "{stored} bytes");
        assert!(stored * 2 < std::mem::size_of::<Service>());
    }
}
