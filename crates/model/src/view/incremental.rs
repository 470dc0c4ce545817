//! Updating a [`NodeServices`] for a few changed Services instead of recomputing every
//! Service: the engine's partial syncs. The result equals [`node_view`](super::node_view) of
//! the same view (tested as a property); when that cannot be guaranteed cheaply (a conflict
//! between Services' destinations, before or after), the caller recomputes everything.

use super::{add_service_ports, ClusterView, NodeServices, ZONE_LABEL};
use crate::endpoints::collect_endpoints;
use crate::error::{ModelError, Problem};
use crate::objects::{IpFamily, ObjectKind, ServiceRef};
use crate::service::parse_service;
use crate::NodeConfig;
use std::collections::BTreeSet;
use std::net::IpAddr;

/// Why an incremental update was not possible; recompute with `node_view`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NeedsFull {
    /// Two Services claim one destination (before or after the change): who wins depends on
    /// every Service, so all of them are recomputed.
    Conflict,
}

/// Replaces what `services` holds for the `dirty` Services by what `view` says of them now.
/// Node-level inputs (this Node, the configuration) must not have changed since `services`
/// was computed; when they have, recompute with `node_view`.
pub fn update_node_view(
    view: &ClusterView,
    config: &NodeConfig,
    services: &mut NodeServices,
    dirty: &BTreeSet<ServiceRef>,
) -> Result<(), NeedsFull> {
    let is_conflict = |e: &ModelError| matches!(e.problem, Problem::ConflictingDestination { .. });
    if services.errors.iter().any(is_conflict) {
        return Err(NeedsFull::Conflict);
    }
    // What the dirty Services claimed (no other service-port claimed any of it).
    let claimed_before = IpFamily::ALL.map(|family| claims(services.family(family), dirty));
    // Forget the dirty Services: their ports, health checks and errors (their own, their
    // slices', slices that are gone), and the unjoinable slices (collected again below).
    for fam in [&mut services.ipv4, &mut services.ipv6] {
        for svc in dirty {
            let names: Vec<_> = fam.service_ports(svc).map(|v| v.name.clone()).collect();
            for name in names {
                fam.ports.remove(&name);
            }
            fam.health_checks.remove(svc);
        }
    }
    services.errors.retain(|e| match e.object.kind {
        ObjectKind::Service => {
            !dirty.contains(&ServiceRef::new(&e.object.namespace, &e.object.name))
        }
        ObjectKind::EndpointSlice => {
            let key = (e.object.namespace.clone(), e.object.name.clone());
            match view.slice_owner.get(&key) {
                Some(owner) => !dirty.contains(owner) && e.problem != Problem::MissingServiceName,
                None => false,
            }
        }
        _ => true,
    });
    services.errors.extend(view.unjoinable.values().cloned());

    // Compute them again.
    let zone = view
        .node
        .as_ref()
        .and_then(|n| n.metadata.labels.as_ref())
        .and_then(|l| l.get(ZONE_LABEL))
        .map(String::as_str);
    let no_slices = super::ServiceSlices::default();
    let mut added = Vec::new();
    for key in dirty {
        let Some(svc) = view.services.get(key) else {
            continue;
        };
        let Some(info) = parse_service(key, svc, &mut services.errors) else {
            continue;
        };
        let slices = view.slices.get(&info.service).unwrap_or(&no_slices);
        let endpoints = collect_endpoints(
            &info.service.namespace,
            slices.named(),
            &config.node_name,
            &mut services.errors,
        );
        for (&family, &cluster_ip) in &info.cluster_ips {
            let fam = services.family_mut(family);
            add_service_ports(fam, &info, cluster_ip, &endpoints, &config.node_name, zone);
            added.push(family);
        }
    }
    // The new ports must not collide with any other port (nor with each other).
    for (family, before) in IpFamily::ALL.into_iter().zip(&claimed_before) {
        if added.contains(&family) && has_conflict(services.family(family), dirty, before) {
            return Err(NeedsFull::Conflict);
        }
    }
    Ok(())
}

/// A destination: address, protocol and port.
type Destination = (IpAddr, crate::Protocol, u16);

/// The destinations a service-port claims: its ClusterIP, external and LB IPs with its
/// protocol and port, and its (protocol, NodePort).
fn destinations(
    view: &super::ServicePortView,
) -> (Vec<Destination>, Option<(crate::Protocol, u16)>) {
    let (protocol, port) = (view.name.protocol, view.port);
    let ips = std::iter::once(&view.cluster_ip)
        .chain(&view.external_ips)
        .chain(&view.load_balancer_ips)
        .map(|ip| (*ip, protocol, port))
        .collect();
    (ips, view.node_port.map(|np| (protocol, np)))
}

/// The destinations and NodePorts the service-ports of the `dirty` Services claim.
fn claims(
    fam: &super::FamilyServices,
    dirty: &BTreeSet<ServiceRef>,
) -> (BTreeSet<Destination>, BTreeSet<(crate::Protocol, u16)>) {
    let mut ips = BTreeSet::new();
    let mut node_ports = BTreeSet::new();
    for svc in dirty {
        for view in fam.service_ports(svc) {
            let (mine, node_port) = destinations(view);
            ips.extend(mine);
            node_ports.extend(node_port);
        }
    }
    (ips, node_ports)
}

/// Whether a service-port of a `dirty` Service claims a destination another service-port of
/// the family claims too. `before`: what the dirty Services claimed before the change, when no
/// other service-port claimed any of it; a change that claims nothing new (an endpoint
/// change) cannot conflict with the others, so only a new claim costs a pass over every
/// service-port of the family (without allocating for them).
fn has_conflict(
    fam: &super::FamilyServices,
    dirty: &BTreeSet<ServiceRef>,
    before: &(BTreeSet<Destination>, BTreeSet<(crate::Protocol, u16)>),
) -> bool {
    let mut mine: BTreeSet<Destination> = BTreeSet::new();
    let mut my_node_ports: BTreeSet<(crate::Protocol, u16)> = BTreeSet::new();
    for view in fam
        .ports
        .values()
        .filter(|v| dirty.contains(&v.name.service))
    {
        let (mut ips, node_port) = destinations(view);
        // A service-port may name one destination twice (its ClusterIP as an external IP):
        // that is not a conflict.
        ips.sort();
        ips.dedup();
        for d in ips {
            if !mine.insert(d) {
                return true;
            }
        }
        if let Some(np) = node_port {
            if !my_node_ports.insert(np) {
                return true;
            }
        }
    }
    if mine.is_subset(&before.0) && my_node_ports.is_subset(&before.1) {
        return false;
    }
    // Destinations first: comparing them is cheaper than the Service's name, and a claim is
    // rare, so the name of almost no other service-port is looked at.
    fam.ports.values().any(|v| {
        let (protocol, port) = (v.name.protocol, v.port);
        let claims = std::iter::once(&v.cluster_ip)
            .chain(&v.external_ips)
            .chain(&v.load_balancer_ips)
            .any(|ip| mine.contains(&(*ip, protocol, port)))
            || v.node_port
                .is_some_and(|np| my_node_ports.contains(&(protocol, np)));
        claims && !dirty.contains(&v.name.service)
    })
}
