//! Endpoint selection for one service-port and family (DESIGN.md §2.2).
//!
//! - Cluster set: ready endpoints, filtered by topology hints when they apply; if none, the
//!   serving-and-terminating ones (anywhere, no topology).
//! - Local set: ready endpoints on this node; if none, serving-and-terminating ones on this node.
//!   Topology never filters it.

use crate::endpoints::Endpoint;
use crate::topology::topology_filter;

/// The two endpoint sets of a service-port.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct Selection {
    pub cluster: Vec<Endpoint>,
    pub local: Vec<Endpoint>,
    pub topology_filtered: bool,
}

/// Chooses the cluster and local sets from all endpoints of a service-port.
pub(crate) fn select_endpoints(
    endpoints: &[Endpoint],
    node_name: &str,
    zone: Option<&str>,
) -> Selection {
    let filter = topology_filter(endpoints, node_name, zone);
    let mut cluster: Vec<Endpoint> = endpoints
        .iter()
        .filter(|e| e.ready && filter.is_none_or(|f| f.keeps(e)))
        .cloned()
        .collect();
    if cluster.is_empty() {
        cluster = endpoints
            .iter()
            .filter(|e| e.serving_terminating())
            .cloned()
            .collect();
    }
    let mut local: Vec<Endpoint> = endpoints
        .iter()
        .filter(|e| e.is_local && e.ready)
        .cloned()
        .collect();
    if local.is_empty() {
        local = endpoints
            .iter()
            .filter(|e| e.is_local && e.serving_terminating())
            .cloned()
            .collect();
    }
    // Kept for as long as the Service is: no room for endpoints that will not come.
    cluster.shrink_to_fit();
    local.shrink_to_fit();
    Selection {
        cluster,
        local,
        topology_filtered: filter.is_some(),
    }
}
