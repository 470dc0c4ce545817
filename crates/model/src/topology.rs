//! Topology-aware routing through EndpointSlice hints (DESIGN.md §2.2).
//!
//! `trafficDistribution` (and the `topology-mode` annotation) act only through the hints the
//! EndpointSlice controller writes. Hints are used only when every ready endpoint carries them and
//! at least one is meant for this node (node hints) or this node's zone (zone hints); otherwise
//! there is no filtering. They never filter the local set.

use crate::endpoints::Endpoint;

/// Which hints decide the cluster set, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TopologyFilter<'a> {
    /// `forNodes` hints: keep endpoints hinted for this node.
    SameNode(&'a str),
    /// `forZones` hints: keep endpoints hinted for this zone.
    SameZone(&'a str),
}

impl TopologyFilter<'_> {
    /// True when the endpoint is kept.
    pub fn keeps(&self, ep: &Endpoint) -> bool {
        match self {
            TopologyFilter::SameNode(node) => {
                ep.node_hints().is_some_and(|h| h.iter().any(|n| n == node))
            }
            TopologyFilter::SameZone(zone) => {
                ep.zone_hints().is_some_and(|h| h.iter().any(|z| z == zone))
            }
        }
    }
}

/// Decides whether hints apply to these endpoints for this node. Only ready endpoints count.
pub(crate) fn topology_filter<'a>(
    endpoints: &[Endpoint],
    node_name: &'a str,
    zone: Option<&'a str>,
) -> Option<TopologyFilter<'a>> {
    let ready: Vec<&Endpoint> = endpoints.iter().filter(|e| e.ready).collect();
    if ready.is_empty() {
        return None;
    }
    let all_have = |hints: fn(&Endpoint) -> bool| ready.iter().all(|e| hints(e));
    let same_node = TopologyFilter::SameNode(node_name);
    if all_have(|e| e.node_hints().is_some_and(|h| !h.is_empty()))
        && ready.iter().any(|e| same_node.keeps(e))
    {
        return Some(same_node);
    }
    let zone = zone.filter(|z| !z.is_empty())?;
    let same_zone = TopologyFilter::SameZone(zone);
    if all_have(|e| e.zone_hints().is_some_and(|h| !h.is_empty()))
        && ready.iter().any(|e| same_zone.keeps(e))
    {
        return Some(same_zone);
    }
    None
}
