//! DESIGN.md §2.3 (one test per row of the verdict table) and §2.4 (one test per masquerade
//! bullet). Each asserts the full `Verdict` for every entry point × source, and `None` for entry
//! points the service-port does not have.

use super::*;
use crate::fixtures::{ep, node_config, service, slice, Ep, NODE};
use crate::ExternalDispatch;

/// A pod on this node.
const LOCAL: &str = "10.1.0.5";
/// A second pod on this node.
const LOCAL2: &str = "10.1.0.6";
/// A pod on another node.
const REMOTE: &str = "10.2.0.7";
const OTHER_NODE: &str = "node-b";

/// A LoadBalancer Service with every entry point: cluster IP, NodePort, externalIP, LB IP.
fn web() -> Svc {
    service("shop", "web", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .external_ips(&["203.0.113.7"])
        .lb_ingress("198.51.100.9", None)
        .health_check_node_port(32000)
}

/// A ClusterIP-only Service.
fn api() -> Svc {
    service("shop", "api", "10.96.0.20").port("http", "TCP", 80)
}

fn endpoints_of(service: &str, endpoints: Vec<Ep>) -> Slice {
    endpoints.into_iter().fold(
        slice("shop", &format!("{service}-abc"), service, "IPv4").port("http", "TCP", 8080),
        Slice::endpoint,
    )
}

/// The IPv4 `http/TCP` view of `svc` (named `name`) with these endpoints.
fn view_with(config: &NodeConfig, svc: Svc, endpoints: Vec<Ep>) -> ServicePortView {
    let name = svc.0.metadata.name.clone().expect("name");
    let out = compute_with(
        config,
        vec![svc],
        vec![endpoints_of(&name, endpoints)],
        Vec::new(),
    );
    assert_eq!(out.errors, vec![], "fixture objects are valid");
    port(&out, IpFamily::V4, "shop", &name, "http", Protocol::Tcp).clone()
}

fn view_of(svc: Svc, endpoints: Vec<Ep>) -> ServicePortView {
    view_with(&node_config(), svc, endpoints)
}

fn is_external(entry: EntryPoint) -> bool {
    entry != EntryPoint::ClusterIp
}

/// ClusterIP traffic to the cluster set, masqueraded unless it comes from a pod.
fn cluster_ip_default(source: Source) -> Verdict {
    cluster(source != Source::Pod)
}

// ---- DESIGN.md §2.3, row by row ----

#[test]
fn no_usable_endpoint_anywhere_rejects_every_entry_point() {
    let unusable = || {
        vec![
            ep(REMOTE, OTHER_NODE).not_ready(),
            ep(LOCAL, NODE).terminated(),
            ep(LOCAL2, NODE).not_ready(),
        ]
    };
    for (itp, etp) in [(false, false), (true, false), (false, true), (true, true)] {
        for endpoints in [Vec::new(), unusable()] {
            let mut svc = web();
            if itp {
                svc = svc.itp_local();
            }
            if etp {
                svc = svc.etp_local();
            }
            let view = view_of(svc, endpoints);
            assert!(!view.has_endpoints());
            assert_eq!(view.internal_action(), Action::Reject);
            assert_eq!(view.external_dispatch(), Some(ExternalDispatch::Reject));
            assert_verdicts(&view, |_, _| Some(REJECT));
        }
    }
    // Only the entry points that exist reject.
    let view = view_of(api(), Vec::new());
    assert_verdicts(&view, |entry, _| {
        (entry == EntryPoint::ClusterIp).then_some(REJECT)
    });
}

#[test]
fn itp_local_with_endpoints_elsewhere_drops_cluster_ip() {
    let view = view_of(web().itp_local(), vec![ep(REMOTE, OTHER_NODE)]);
    assert!(view.has_endpoints());
    assert_eq!(view.local_endpoints, vec![]);
    assert_eq!(view.internal_action(), Action::Drop);
    // ClusterIP drops for everyone; external traffic follows eTP (Cluster here).
    assert_verdicts(&view, |entry, _| {
        Some(if is_external(entry) {
            cluster(true)
        } else {
            DROP
        })
    });

    // A local endpoint that does not serve does not count.
    let view = view_of(
        api().itp_local(),
        vec![ep(REMOTE, OTHER_NODE), ep(LOCAL, NODE).terminated()],
    );
    assert_verdicts(&view, |entry, _| {
        (entry == EntryPoint::ClusterIp).then_some(DROP)
    });
}

#[test]
fn itp_local_with_local_endpoint_forwards_cluster_ip_to_local_set() {
    let view = view_of(
        api().itp_local(),
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
    );
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.5:8080"]);
    assert_verdicts(&view, |entry, source| {
        (entry == EntryPoint::ClusterIp).then_some(local(source != Source::Pod))
    });
}

#[test]
fn etp_local_external_without_local_endpoint_drops() {
    let cases = [
        vec![ep(REMOTE, OTHER_NODE)],
        // Local endpoints that are not ready and not serving-terminating do not count.
        vec![
            ep(REMOTE, OTHER_NODE),
            ep(LOCAL, NODE).terminated(),
            ep(LOCAL2, NODE).not_ready(),
        ],
    ];
    for endpoints in cases {
        let view = view_of(web().etp_local(), endpoints);
        assert_eq!(view.local_endpoints, vec![]);
        assert_eq!(
            view.external_dispatch(),
            Some(ExternalDispatch::Local { has_local: false })
        );
        assert_verdicts(&view, |entry, source| {
            Some(match (is_external(entry), source) {
                (false, source) => cluster_ip_default(source),
                (true, Source::Pod) => cluster(false),
                (true, Source::Node) => cluster(true),
                (true, Source::External) => DROP,
            })
        });
    }
}

#[test]
fn etp_local_external_with_local_endpoint_forwards_to_local_set_without_masquerade() {
    let view = view_of(
        web().etp_local(),
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
    );
    assert_eq!(addrs(&view.local_endpoints), ["10.1.0.5:8080"]);
    assert_eq!(
        view.external_dispatch(),
        Some(ExternalDispatch::Local { has_local: true })
    );
    assert_verdicts(&view, |entry, source| {
        Some(match (is_external(entry), source) {
            (false, source) => cluster_ip_default(source),
            (true, Source::Pod) => cluster(false),
            (true, Source::Node) => cluster(true),
            (true, Source::External) => local(false),
        })
    });
}

#[test]
fn etp_local_pod_to_lb_ip_short_circuits_to_cluster_set_without_masquerade() {
    for endpoints in [
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
        vec![ep(REMOTE, OTHER_NODE)],
    ] {
        let view = view_of(web().etp_local(), endpoints);
        // The short-circuit reaches every endpoint of the cluster, not just the local ones.
        assert!(addrs(&view.cluster_endpoints).contains(&"10.2.0.7:8080".to_owned()));
        for entry in EXTERNAL {
            assert_eq!(
                view.verdict(entry, Source::Pod),
                Some(cluster(false)),
                "{entry:?}"
            );
        }
        assert_eq!(
            view.verdict(EntryPoint::ClusterIp, Source::Pod),
            Some(cluster(false))
        );
    }
}

#[test]
fn etp_local_from_node_uses_cluster_set_masqueraded() {
    for endpoints in [
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
        vec![ep(REMOTE, OTHER_NODE)],
        vec![ep(LOCAL, NODE)],
    ] {
        let view = view_of(web().etp_local(), endpoints);
        for entry in EXTERNAL {
            assert_eq!(
                view.verdict(entry, Source::Node),
                Some(cluster(true)),
                "{entry:?}"
            );
        }
        assert_eq!(
            view.verdict(EntryPoint::ClusterIp, Source::Node),
            Some(cluster(true))
        );
    }
}

#[test]
fn active_cluster_ip_port_not_defined_has_no_service_port() {
    // The model gives a view only to defined (port, protocol) pairs of an active cluster IP; the
    // ruleset rejects the rest of that IP. A view exists even without endpoints (the IP is active).
    let dns = service("kube-system", "dns", "10.96.0.53").port("dns", "UDP", 53);
    let out = compute(vec![dns], Vec::new());
    let cluster_ip: std::net::IpAddr = "10.96.0.53".parse().expect("ip");
    let defined: Vec<(Protocol, u16)> = out
        .ipv4
        .ports
        .values()
        .filter(|v| v.cluster_ip == cluster_ip)
        .map(|v| (v.name.protocol, v.port))
        .collect();
    assert_eq!(defined, [(Protocol::Udp, 53)]);
    let view = port(
        &out,
        IpFamily::V4,
        "kube-system",
        "dns",
        "dns",
        Protocol::Udp,
    );
    assert_eq!(
        view.verdict(EntryPoint::ClusterIp, Source::Pod),
        Some(REJECT)
    );
    let tcp = spn("kube-system", "dns", "dns", Protocol::Tcp);
    assert!(!out.ipv4.ports.contains_key(&tcp));
    assert!(out.ipv6.ports.is_empty());
}

// ---- DESIGN.md §2.4, bullet by bullet ----

#[test]
fn cluster_ip_from_non_pod_source_masqueraded() {
    let view = view_of(api(), vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)]);
    assert_verdicts(&view, |entry, source| {
        (entry == EntryPoint::ClusterIp).then_some(cluster(source != Source::Pod))
    });
    // Whatever the policy: iTP Local masquerades non-pod sources the same way.
    let view = view_of(api().itp_local(), vec![ep(LOCAL, NODE)]);
    assert_verdicts(&view, |entry, source| {
        (entry == EntryPoint::ClusterIp).then_some(local(source != Source::Pod))
    });
}

#[test]
fn masquerade_all_masquerades_pod_traffic_too() {
    let mut config = node_config();
    config.masquerade_all = true;
    let view = view_with(
        &config,
        web().etp_local(),
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
    );
    assert!(view.masquerade_all);
    // Only ClusterIP traffic is affected; eTP Local external traffic keeps its client address.
    assert_verdicts(&view, |entry, source| {
        Some(match (is_external(entry), source) {
            (false, _) => cluster(true),
            (true, Source::Pod) => cluster(false),
            (true, Source::Node) => cluster(true),
            (true, Source::External) => local(false),
        })
    });
    // It works without cluster CIDRs too (no need to recognise pods).
    config.cluster_cidrs.clear();
    let view = view_with(&config, api().itp_local(), vec![ep(LOCAL, NODE)]);
    assert_verdicts(&view, |entry, _| {
        (entry == EntryPoint::ClusterIp).then_some(local(true))
    });
    // Nothing to masquerade when nothing is forwarded.
    let view = view_with(&config, api().itp_local(), vec![ep(REMOTE, OTHER_NODE)]);
    assert_verdicts(&view, |entry, _| {
        (entry == EntryPoint::ClusterIp).then_some(DROP)
    });
}

#[test]
fn no_cluster_cidrs_means_pods_are_not_recognised() {
    let mut config = node_config();
    config.cluster_cidrs.clear();
    // Without a local endpoint: a pod is just another outside client and is dropped.
    let view = view_with(&config, web().etp_local(), vec![ep(REMOTE, OTHER_NODE)]);
    assert!(!view.pod_sources_known);
    assert_verdicts(&view, |entry, source| {
        Some(match (is_external(entry), source) {
            // No local-traffic detection: ClusterIP traffic is never masqueraded.
            (false, _) => cluster(false),
            (true, Source::Node) => cluster(true),
            (true, Source::Pod | Source::External) => DROP,
        })
    });
    // With a local endpoint: pods go to the local set like outside clients.
    let view = view_with(
        &config,
        web().etp_local(),
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
    );
    assert_verdicts(&view, |entry, source| {
        Some(match (is_external(entry), source) {
            (false, _) => cluster(false),
            (true, Source::Node) => cluster(true),
            (true, Source::Pod | Source::External) => local(false),
        })
    });
}

#[test]
fn cluster_cidrs_are_per_family() {
    // Only an IPv4 pod CIDR: IPv6 pods cannot be recognised, IPv4 ones can.
    let mut config = node_config();
    config
        .cluster_cidrs
        .retain(|c| matches!(c, ipnet::IpNet::V4(_)));
    let svc = service("shop", "dual", "10.96.0.30")
        .cluster_ips(&["10.96.0.30", "fd00:96::30"])
        .port("http", "TCP", 80);
    let slices = vec![
        slice("shop", "dual-v4", "dual", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep(REMOTE, OTHER_NODE)),
        slice("shop", "dual-v6", "dual", "IPv6")
            .port("http", "TCP", 8080)
            .endpoint(ep("fd00:10::7", OTHER_NODE)),
    ];
    let out = compute_with(&config, vec![svc], slices, Vec::new());
    let v4 = port(&out, IpFamily::V4, "shop", "dual", "http", Protocol::Tcp);
    let v6 = port(&out, IpFamily::V6, "shop", "dual", "http", Protocol::Tcp);
    assert!(v4.pod_sources_known);
    assert!(!v6.pod_sources_known);
    assert_eq!(out.ipv6.cluster_cidrs, vec![]);
    assert_verdicts(v4, |entry, source| {
        (entry == EntryPoint::ClusterIp).then_some(cluster(source != Source::Pod))
    });
    assert_verdicts(v6, |entry, _| {
        (entry == EntryPoint::ClusterIp).then_some(cluster(false))
    });
}

#[test]
fn etp_cluster_always_masquerades() {
    for endpoints in [
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
        vec![ep(REMOTE, OTHER_NODE)],
        vec![ep(LOCAL, NODE)],
    ] {
        let view = view_of(web(), endpoints);
        assert_eq!(view.external_dispatch(), Some(ExternalDispatch::Cluster));
        assert_verdicts(&view, |entry, source| {
            Some(if is_external(entry) {
                cluster(true)
            } else {
                cluster_ip_default(source)
            })
        });
    }
}

#[test]
fn etp_local_never_masquerades_except_traffic_from_the_node() {
    for endpoints in [
        vec![ep(LOCAL, NODE), ep(REMOTE, OTHER_NODE)],
        vec![ep(REMOTE, OTHER_NODE)],
        vec![ep(LOCAL, NODE).serving_terminating()],
    ] {
        let view = view_of(web().etp_local(), endpoints);
        for entry in EXTERNAL {
            for source in SOURCES {
                let verdict = view.verdict(entry, source).expect("entry point exists");
                assert_eq!(
                    verdict.masquerade,
                    source == Source::Node,
                    "{entry:?} from {source:?}"
                );
            }
        }
    }
}

// Hairpin (§2.4, a pod reaching itself through its Service) is not a verdict of the model: it
// depends on the chosen endpoint and is done by the ruleset's postrouting masquerade.

// ---- Entry points ----

#[test]
fn entry_points_that_do_not_exist_have_no_verdict() {
    // NodePort Service: cluster IP and NodePort only.
    let np = service("shop", "np", "10.96.0.40")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 30040);
    let view = view_of(np, vec![ep(REMOTE, OTHER_NODE)]);
    assert_verdicts(&view, |entry, source| match entry {
        EntryPoint::ClusterIp => Some(cluster_ip_default(source)),
        EntryPoint::NodePort => Some(cluster(true)),
        EntryPoint::LoadBalancer | EntryPoint::ExternalIp => None,
    });

    // LoadBalancer without NodePorts and with only an `ipMode: Proxy` ingress: nothing external,
    // so eTP Local has nothing to act on.
    let lb = service("shop", "lb", "10.96.0.41")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 0)
        .lb_ingress("198.51.100.41", Some("Proxy"))
        .etp_local()
        .health_check_node_port(32041);
    let view = view_of(lb, vec![ep(REMOTE, OTHER_NODE)]);
    assert_eq!(view.external_dispatch(), None);
    assert_verdicts(&view, |entry, source| {
        (entry == EntryPoint::ClusterIp).then_some(cluster_ip_default(source))
    });

    // ClusterIP Service with externalIPs: the externalIP honours eTP Local.
    let ext = service("shop", "ext", "10.96.0.42")
        .port("http", "TCP", 80)
        .external_ips(&["203.0.113.42"])
        .etp_local();
    let view = view_of(ext, vec![ep(REMOTE, OTHER_NODE)]);
    assert_eq!(view.external_policy, crate::TrafficPolicy::Local);
    assert_verdicts(&view, |entry, source| match (entry, source) {
        (EntryPoint::ClusterIp, source) => Some(cluster_ip_default(source)),
        (EntryPoint::ExternalIp, Source::Pod) => Some(cluster(false)),
        (EntryPoint::ExternalIp, Source::Node) => Some(cluster(true)),
        (EntryPoint::ExternalIp, Source::External) => Some(DROP),
        _ => None,
    });

    // ClusterIP Service without externalIPs: eTP Local means nothing.
    let view = view_of(api().etp_local(), vec![ep(REMOTE, OTHER_NODE)]);
    assert_eq!(view.external_policy, crate::TrafficPolicy::Cluster);
}
