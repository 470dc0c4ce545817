//! Which UDP flows a change of the node's services leaves stale (pure).

use super::UdpFlowMatch;
use model::{IpFamily, NodeServices, Protocol, ServicePortView};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The UDP conntrack entries to delete after the node went from `before` to `after`:
///
/// - [`UdpFlowMatch::ToEndpoint`] for every endpoint `ip:port` that some UDP service-port could
///   reach before (cluster or local set) and none can now. Entries carry no Service, so an
///   endpoint still reachable through another UDP service-port is kept: deleting its entries
///   would also cut that service-port's healthy flows.
/// - [`UdpFlowMatch::ToDestination`] for every destination of a UDP service-port that has
///   endpoints now and did not before (the service-port was new or had none, or the destination
///   is new): its ClusterIP, external IPs and LoadBalancer IPs with the service port, and the
///   node's NodePort addresses ([`model::FamilyServices::node_port_ips`]) with its NodePort.
///   Entries created while nothing served them were never DNATed.
///
/// Sorted, without duplicates; empty when nothing changed.
pub fn stale_udp_flows(before: &NodeServices, after: &NodeServices) -> Vec<UdpFlowMatch> {
    UdpState::of(before).stale_flows(&UdpState::of(after))
}

/// What [`stale_udp_flows`] needs to know of a node's services: a small summary a daemon keeps
/// from one sync to the next instead of the whole [`NodeServices`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UdpState {
    /// Every endpoint `ip:port` some UDP service-port may send traffic to.
    reachable: BTreeSet<(IpAddr, u16)>,
    /// Every destination `ip:port` of the UDP service-ports that have endpoints.
    served: BTreeSet<(IpAddr, u16)>,
}

impl UdpState {
    /// The summary of `services`.
    pub fn of(services: &NodeServices) -> UdpState {
        UdpState {
            reachable: reachable_udp_endpoints(services),
            served: served_udp_destinations(services),
        }
    }

    /// [`stale_udp_flows`] from this state to `after`.
    pub fn stale_flows(&self, after: &UdpState) -> Vec<UdpFlowMatch> {
        let mut out: BTreeSet<UdpFlowMatch> = self
            .reachable
            .difference(&after.reachable)
            .map(|&(ip, port)| UdpFlowMatch::ToEndpoint { ip, port })
            .collect();
        out.extend(
            after
                .served
                .difference(&self.served)
                .map(|&(ip, port)| UdpFlowMatch::ToDestination { ip, port }),
        );
        out.into_iter().collect()
    }
}

/// The UDP service-ports of both families, with the family's NodePort addresses.
fn udp_ports(services: &NodeServices) -> impl Iterator<Item = (&ServicePortView, &[IpAddr])> {
    IpFamily::ALL.into_iter().flat_map(move |family| {
        let fam = services.family(family);
        fam.ports
            .values()
            .filter(|view| view.name.protocol == Protocol::Udp)
            .map(move |view| (&**view, fam.node_port_ips.as_slice()))
    })
}

/// Every endpoint `ip:port` some UDP service-port may send traffic to.
fn reachable_udp_endpoints(services: &NodeServices) -> BTreeSet<(IpAddr, u16)> {
    udp_ports(services)
        .flat_map(|(view, _)| view.reachable_endpoints())
        .map(|e| (e.ip, e.port))
        .collect()
}

/// Every destination `ip:port` of the UDP service-ports that have endpoints.
fn served_udp_destinations(services: &NodeServices) -> BTreeSet<(IpAddr, u16)> {
    let mut out = BTreeSet::new();
    for (view, node_port_ips) in udp_ports(services) {
        if view.reachable_endpoints().is_empty() {
            continue;
        }
        let addresses = std::iter::once(&view.cluster_ip)
            .chain(&view.external_ips)
            .chain(&view.load_balancer_ips);
        out.extend(addresses.map(|ip| (*ip, view.port)));
        if let Some(node_port) = view.node_port {
            out.extend(node_port_ips.iter().map(|ip| (*ip, node_port)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::fixtures::{ep, node_config, service, slice, Slice, Svc, NODE};
    use model::{node_view, ClusterView};

    /// What the fixtures' node does with these Services and slices (no model errors).
    fn node(services: Vec<Svc>, slices: Vec<Slice>) -> NodeServices {
        let view = ClusterView::from_objects(
            services.into_iter().map(Svc::build),
            slices.into_iter().map(Slice::build),
            std::iter::empty(),
            NODE,
        );
        let out = node_view(&view, &node_config());
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an address")
    }

    fn to_endpoint(addr: &str, port: u16) -> UdpFlowMatch {
        UdpFlowMatch::ToEndpoint { ip: ip(addr), port }
    }

    fn to_destination(addr: &str, port: u16) -> UdpFlowMatch {
        UdpFlowMatch::ToDestination { ip: ip(addr), port }
    }

    /// `default/dns` 10.96.0.10, UDP 53 and TCP 53, NodePort 30053 for UDP.
    fn dns() -> Svc {
        service("default", "dns", "10.96.0.10")
            .type_("NodePort")
            .node_port("dns", "UDP", 53, 30053)
            .node_port("dns-tcp", "TCP", 53, 30054)
    }

    /// `dns`'s endpoints (both ports on 5353).
    fn dns_slice(endpoints: &[&str]) -> Slice {
        let mut s = slice("default", "dns-1", "dns", "IPv4")
            .port("dns", "UDP", 5353)
            .port("dns-tcp", "TCP", 5353);
        for e in endpoints {
            s = s.endpoint(ep(e, NODE));
        }
        s
    }

    #[test]
    fn nothing_changed_nothing_is_stale() {
        let state = node(vec![dns()], vec![dns_slice(&["10.0.1.1", "10.0.1.2"])]);
        assert_eq!(stale_udp_flows(&state, &state), vec![]);
        let empty = node(vec![], vec![]);
        assert_eq!(stale_udp_flows(&empty, &empty), vec![]);
    }

    #[test]
    fn a_removed_endpoint_is_stale_and_the_others_are_not() {
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1", "10.0.1.2"])]);
        let after = node(vec![dns()], vec![dns_slice(&["10.0.1.2"])]);
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_endpoint("10.0.1.1", 5353)]
        );
        // Back again: nothing is stale (the service-port had endpoints all along).
        assert_eq!(stale_udp_flows(&after, &before), vec![]);
    }

    #[test]
    fn an_endpoint_that_stops_being_ready_is_stale() {
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1", "10.0.1.2"])]);
        let after = node(
            vec![dns()],
            vec![slice("default", "dns-1", "dns", "IPv4")
                .port("dns", "UDP", 5353)
                .endpoint(ep("10.0.1.1", NODE).not_ready())
                .endpoint(ep("10.0.1.2", NODE))],
        );
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_endpoint("10.0.1.1", 5353)]
        );
    }

    #[test]
    fn a_changed_target_port_makes_the_old_one_stale() {
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1"])]);
        let after = node(
            vec![dns()],
            vec![slice("default", "dns-1", "dns", "IPv4")
                .port("dns", "UDP", 5354)
                .endpoint(ep("10.0.1.1", NODE))],
        );
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_endpoint("10.0.1.1", 5353)]
        );
    }

    #[test]
    fn tcp_endpoints_are_never_stale() {
        let svc = service("default", "web", "10.96.0.20").port("http", "TCP", 80);
        let slice_of = |eps: &[&str]| {
            let mut s = slice("default", "web-1", "web", "IPv4").port("http", "TCP", 8080);
            for e in eps {
                s = s.endpoint(ep(e, NODE));
            }
            s
        };
        let before = node(vec![svc.clone()], vec![slice_of(&["10.0.1.1", "10.0.1.2"])]);
        let after = node(vec![svc.clone()], vec![slice_of(&["10.0.1.2"])]);
        assert_eq!(stale_udp_flows(&before, &after), vec![]);
        // Nor do TCP service-ports getting endpoints clean anything.
        let none = node(vec![svc], vec![slice_of(&[])]);
        assert_eq!(stale_udp_flows(&none, &after), vec![]);
        // The TCP port of dns losing an endpoint is the UDP port losing it too here.
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1"])]);
        let after = node(
            vec![dns()],
            vec![slice("default", "dns-1", "dns", "IPv4")
                .port("dns-tcp", "TCP", 5353)
                .endpoint(ep("10.0.1.1", NODE))],
        );
        // UDP "dns" now has no endpoints: its endpoint is stale, nothing else.
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_endpoint("10.0.1.1", 5353)]
        );
    }

    #[test]
    fn a_deleted_service_leaves_its_endpoints_stale() {
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1", "10.0.1.2"])]);
        let after = node(vec![], vec![dns_slice(&["10.0.1.1", "10.0.1.2"])]);
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_endpoint("10.0.1.1", 5353), to_endpoint("10.0.1.2", 5353)]
        );
    }

    #[test]
    fn an_endpoint_still_reachable_through_another_udp_port_is_kept() {
        let other = service("default", "other", "10.96.0.11").port("dns", "UDP", 53);
        let other_slice = slice("default", "other-1", "other", "IPv4")
            .port("dns", "UDP", 5353)
            .endpoint(ep("10.0.1.1", NODE));
        let before = node(
            vec![dns(), other.clone()],
            vec![dns_slice(&["10.0.1.1", "10.0.1.2"]), other_slice.clone()],
        );
        let after = node(
            vec![dns(), other],
            vec![dns_slice(&["10.0.1.2"]), other_slice],
        );
        assert_eq!(stale_udp_flows(&before, &after), vec![]);
    }

    #[test]
    fn a_service_port_getting_its_first_endpoints_cleans_every_destination() {
        let svc = || {
            service("default", "dns", "10.96.0.10")
                .type_("LoadBalancer")
                .node_port("dns", "UDP", 53, 30053)
                .node_port("dns-tcp", "TCP", 53, 30054)
                .external_ips(&["203.0.113.5"])
                .lb_ingress("198.51.100.7", None)
        };
        let before = node(vec![svc()], vec![dns_slice(&[])]);
        let after = node(vec![svc()], vec![dns_slice(&["10.0.1.1"])]);
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![
                to_destination("10.96.0.10", 53),
                to_destination("192.168.0.2", 30053),
                to_destination("198.51.100.7", 53),
                to_destination("203.0.113.5", 53),
            ]
        );
        // Losing them again: the endpoint is stale, no destination is.
        assert_eq!(
            stale_udp_flows(&after, &before),
            vec![to_endpoint("10.0.1.1", 5353)]
        );
        // A brand-new Service with endpoints: the same destinations.
        let nothing = node(vec![], vec![]);
        assert_eq!(
            stale_udp_flows(&nothing, &after),
            stale_udp_flows(&before, &after)
        );
    }

    #[test]
    fn a_new_destination_of_a_served_port_is_cleaned() {
        let before = node(vec![dns()], vec![dns_slice(&["10.0.1.1"])]);
        let with_external = service("default", "dns", "10.96.0.10")
            .type_("NodePort")
            .node_port("dns", "UDP", 53, 30053)
            .node_port("dns-tcp", "TCP", 53, 30054)
            .external_ips(&["203.0.113.5"]);
        let after = node(vec![with_external], vec![dns_slice(&["10.0.1.1"])]);
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![to_destination("203.0.113.5", 53)]
        );
    }

    #[test]
    fn dual_stack_endpoints_and_destinations() {
        let svc = || {
            service("default", "dns", "10.96.0.10")
                .cluster_ips(&["10.96.0.10", "fd00:96::10"])
                .type_("NodePort")
                .node_port("dns", "UDP", 53, 30053)
        };
        let slices = |v4: &[&str], v6: &[&str]| {
            let mut s4 = slice("default", "dns-4", "dns", "IPv4").port("dns", "UDP", 5353);
            for e in v4 {
                s4 = s4.endpoint(ep(e, NODE));
            }
            let mut s6 = slice("default", "dns-6", "dns", "IPv6").port("dns", "UDP", 5353);
            for e in v6 {
                s6 = s6.endpoint(ep(e, NODE));
            }
            vec![s4, s6]
        };
        let before = node(vec![svc()], slices(&["10.0.1.1"], &[]));
        let after = node(vec![svc()], slices(&[], &["fd00:10::1"]));
        assert_eq!(
            stale_udp_flows(&before, &after),
            vec![
                to_endpoint("10.0.1.1", 5353),
                to_destination("2001:db8::2", 30053),
                to_destination("fd00:96::10", 53),
            ]
        );
    }
}
