//! DESIGN.md §2.5: per-Service health-check node ports and their local endpoint counts.

use super::*;
use crate::fixtures::{ep, service, slice, Ep, NODE};
use crate::HealthCheck;

const OTHER_NODE: &str = "node-b";

/// A LoadBalancer Service with eTP Local and two ports.
fn lb() -> Svc {
    service("shop", "lb", "10.96.0.10")
        .cluster_ips(&["10.96.0.10", "fd00:96::10"])
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .node_port("metrics", "TCP", 9090, 30090)
        .lb_ingress("198.51.100.9", None)
        .etp_local()
        .health_check_node_port(32000)
}

/// A slice serving both ports of `lb` on every endpoint.
fn both_ports(name: &str, address_type: &str, endpoints: Vec<Ep>) -> Slice {
    endpoints.into_iter().fold(
        slice("shop", name, "lb", address_type)
            .port("http", "TCP", 8080)
            .port("metrics", "TCP", 9090),
        Slice::endpoint,
    )
}

fn health(out: &NodeServices, family: IpFamily) -> Option<HealthCheck> {
    out.family(family)
        .health_checks
        .get(&ServiceRef::new("shop", "lb"))
        .cloned()
}

#[test]
fn health_count_is_distinct_ready_local_endpoint_ips_across_ports() {
    let slices = vec![
        both_ports(
            "lb-a",
            "IPv4",
            vec![
                ep("10.1.0.1", NODE),
                ep("10.1.0.2", NODE),
                ep("10.1.0.3", NODE).not_ready(),
                ep("10.2.0.1", OTHER_NODE),
            ],
        ),
        // A pod serving only one port, in another slice, and a duplicate of 10.1.0.1.
        slice("shop", "lb-b", "lb", "IPv4")
            .port("metrics", "TCP", 9191)
            .endpoint(ep("10.1.0.4", NODE))
            .endpoint(ep("10.1.0.1", NODE)),
    ];
    let out = compute(vec![lb()], slices);
    assert_eq!(out.errors, vec![]);
    assert_eq!(
        health(&out, IpFamily::V4),
        Some(HealthCheck {
            node_port: 32000,
            local_endpoints: 3,
        })
    );
    let metrics = port(&out, IpFamily::V4, "shop", "lb", "metrics", Protocol::Tcp);
    assert_eq!(
        metrics.local_endpoints.len(),
        4,
        "{:?}",
        addrs(&metrics.local_endpoints)
    );
}

#[test]
fn terminating_local_endpoints_fail_the_health_check_while_traffic_still_flows_to_them() {
    let slices = vec![both_ports(
        "lb-a",
        "IPv4",
        vec![
            ep("10.1.0.1", NODE).serving_terminating(),
            ep("10.1.0.2", NODE).serving_terminating(),
            ep("10.1.0.3", NODE).terminated(),
            ep("10.2.0.1", OTHER_NODE),
        ],
    )];
    let out = compute(vec![lb()], slices);
    assert_eq!(
        health(&out, IpFamily::V4),
        Some(HealthCheck {
            node_port: 32000,
            local_endpoints: 0,
        })
    );
    for port_name in ["http", "metrics"] {
        let view = port(&out, IpFamily::V4, "shop", "lb", port_name, Protocol::Tcp);
        assert_eq!(view.local_endpoints.len(), 2);
        assert!(view
            .local_endpoints
            .iter()
            .all(|e| e.terminating && e.serving));
        for entry in [EntryPoint::NodePort, EntryPoint::LoadBalancer] {
            assert_eq!(
                view.verdict(entry, Source::External),
                Some(local(false)),
                "{entry:?}"
            );
        }
    }
}

#[test]
fn health_check_only_for_load_balancer_with_etp_local() {
    let np_local = service("shop", "np", "10.96.0.11")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 30081)
        .etp_local()
        .health_check_node_port(32001);
    let lb_cluster = service("shop", "lbc", "10.96.0.12")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30082)
        .lb_ingress("198.51.100.12", None)
        .health_check_node_port(32002);
    let ext_local = service("shop", "ext", "10.96.0.13")
        .port("http", "TCP", 80)
        .external_ips(&["203.0.113.13"])
        .etp_local()
        .health_check_node_port(32003);
    let slices = vec![both_ports("lb-a", "IPv4", vec![ep("10.1.0.1", NODE)])];
    let out = compute(vec![np_local, lb_cluster, ext_local, lb()], slices);
    assert_eq!(out.errors, vec![]);
    let services: Vec<String> = out
        .ipv4
        .health_checks
        .keys()
        .map(ToString::to_string)
        .collect();
    assert_eq!(services, ["shop/lb"]);
    assert_eq!(
        health(&out, IpFamily::V4),
        Some(HealthCheck {
            node_port: 32000,
            local_endpoints: 1,
        })
    );
}

#[test]
fn health_check_is_counted_per_family() {
    let slices = vec![
        both_ports(
            "lb-v4",
            "IPv4",
            vec![ep("10.1.0.1", NODE), ep("10.1.0.2", NODE)],
        ),
        both_ports(
            "lb-v6",
            "IPv6",
            vec![
                ep("fd00:10::1", OTHER_NODE),
                ep("fd00:10::2", NODE).not_ready(),
            ],
        ),
    ];
    let out = compute(vec![lb()], slices);
    assert_eq!(out.errors, vec![]);
    let count = |f| health(&out, f).map(|h| h.local_endpoints);
    assert_eq!(count(IpFamily::V4), Some(2));
    assert_eq!(count(IpFamily::V6), Some(0));

    // A single-stack Service has a health check in its own family only.
    let out = compute(vec![lb().cluster_ips(&["fd00:96::10"])], Vec::new());
    assert_eq!(health(&out, IpFamily::V4), None);
    assert_eq!(
        health(&out, IpFamily::V6),
        Some(HealthCheck {
            node_port: 32000,
            local_endpoints: 0,
        })
    );
}

#[test]
fn health_count_ignores_slice_ports_the_service_does_not_have() {
    // Endpoints of a slice port that matches no Service port carry no traffic of this Service.
    let slices = vec![slice("shop", "lb-a", "lb", "IPv4")
        .port("admin", "TCP", 8443)
        .endpoint(ep("10.1.0.1", NODE))];
    let out = compute(vec![lb()], slices);
    assert_eq!(
        health(&out, IpFamily::V4).map(|h| h.local_endpoints),
        Some(0)
    );
}
