//! DESIGN.md §2.6: bad objects (or the bad parts of them) are skipped and reported as a
//! `ModelError` naming the object, the field and the problem; the rest of the object and every
//! other object are still computed.

use super::*;
use crate::fixtures::{ep, node, node_config, service, slice, NODE};
use crate::{ModelError, ObjectKind, ObjectRef, Problem};
use k8s_openapi::api::core::v1::Service;
use std::net::IpAddr;

/// A valid Service in another namespace, to show it is unaffected.
fn good() -> (Svc, Slice) {
    let svc = service("other", "good", "10.96.1.1")
        .type_("NodePort")
        .node_port("http", "TCP", 80, 31001);
    let slice = slice("other", "good-abc", "good", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.1.1", NODE));
    (svc, slice)
}

/// Computes these objects plus [`good`], and checks that `other/good` comes out exactly as it
/// does on its own.
#[track_caller]
fn with_good(mut services: Vec<Svc>, mut slices: Vec<Slice>) -> NodeServices {
    let (svc, slice) = good();
    let alone = compute(vec![svc.clone()], vec![slice.clone()]);
    assert_eq!(alone.errors, vec![]);
    services.push(svc);
    slices.push(slice);
    let out = compute(services, slices);
    assert_eq!(
        port(&out, IpFamily::V4, "other", "good", "http", Protocol::Tcp),
        port(&alone, IpFamily::V4, "other", "good", "http", Protocol::Tcp),
        "other/good is affected"
    );
    out
}

fn error(kind: ObjectKind, namespace: &str, name: &str, problem: Problem) -> ModelError {
    ModelError {
        object: ObjectRef::new(kind, namespace, name),
        problem,
    }
}

fn svc_error(name: &str, problem: Problem) -> ModelError {
    error(ObjectKind::Service, "shop", name, problem)
}

fn slice_error(name: &str, problem: Problem) -> ModelError {
    error(ObjectKind::EndpointSlice, "shop", name, problem)
}

fn invalid_ip(field: &str, value: &str) -> Problem {
    Problem::InvalidIp {
        field: field.into(),
        value: value.into(),
    }
}

fn invalid_port(field: &str, value: i64) -> Problem {
    Problem::InvalidPort {
        field: field.into(),
        value,
    }
}

fn ip(text: &str) -> IpAddr {
    text.parse().expect("ip")
}

/// The service-port names of one Service in IPv4.
fn port_names(out: &NodeServices, name: &str) -> Vec<String> {
    out.ipv4
        .ports
        .keys()
        .filter(|k| k.service == ServiceRef::new("shop", name))
        .map(|k| format!("{}/{}", k.port_name, k.protocol))
        .collect()
}

// ---- Addresses ----

#[test]
fn invalid_cluster_ip_skips_the_service() {
    for value in ["not-an-ip", "10.96.0.999"] {
        let bad = service("shop", "bad", value).port("http", "TCP", 80);
        let out = with_good(vec![bad], Vec::new());
        assert_eq!(
            out.errors,
            [svc_error("bad", invalid_ip("spec.clusterIPs[0]", value))]
        );
        assert_eq!(port_names(&out, "bad"), Vec::<String>::new());
        assert!(out.ipv6.ports.is_empty());
    }
    // Without `clusterIPs`, the error names `clusterIP`.
    let mut bad = service("shop", "bad", "not-an-ip").port("http", "TCP", 80);
    bad.0.spec.as_mut().expect("spec").cluster_ips = None;
    let out = with_good(vec![bad], Vec::new());
    assert_eq!(
        out.errors,
        [svc_error("bad", invalid_ip("spec.clusterIP", "not-an-ip"))]
    );
}

#[test]
fn missing_cluster_ip_skips_the_service() {
    let bad = service("shop", "bad", "").port("http", "TCP", 80);
    let out = with_good(vec![bad], Vec::new());
    assert_eq!(out.errors.len(), 1);
    assert!(
        matches!(&out.errors[0].problem, Problem::Missing { field, .. } if field == "spec.clusterIP"),
        "{:?}",
        out.errors
    );
    assert_eq!(
        out.errors[0].object,
        ObjectRef::new(ObjectKind::Service, "shop", "bad")
    );
    assert_eq!(port_names(&out, "bad"), Vec::<String>::new());
}

#[test]
fn second_cluster_ip_of_one_family_is_skipped() {
    let svc = service("shop", "twice", "10.96.0.10")
        .cluster_ips(&["10.96.0.10", "10.96.0.11"])
        .port("http", "TCP", 80);
    let out = with_good(vec![svc], Vec::new());
    assert_eq!(
        out.errors,
        [svc_error(
            "twice",
            Problem::InvalidValue {
                field: "spec.clusterIPs[1]".into(),
                value: "10.96.0.11".into(),
                detail: "a second cluster IP of the same family".into(),
            }
        )]
    );
    let view = port(&out, IpFamily::V4, "shop", "twice", "http", Protocol::Tcp);
    assert_eq!(view.cluster_ip, ip("10.96.0.10"));
}

#[test]
fn invalid_external_ip_is_skipped_and_the_rest_of_the_service_kept() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("http", "TCP", 80)
        .port("metrics", "TCP", 9090)
        .external_ips(&["not-an-ip", "203.0.113.7", "10.0.0.999"]);
    let out = with_good(vec![svc], Vec::new());
    assert_eq!(
        out.errors,
        [
            svc_error("web", invalid_ip("spec.externalIPs[0]", "not-an-ip")),
            svc_error("web", invalid_ip("spec.externalIPs[2]", "10.0.0.999")),
        ]
    );
    for port_name in ["http", "metrics"] {
        let view = port(&out, IpFamily::V4, "shop", "web", port_name, Protocol::Tcp);
        assert_eq!(view.external_ips, [ip("203.0.113.7")]);
    }
}

#[test]
fn invalid_lb_ip_is_skipped_and_the_rest_of_the_service_kept() {
    let svc = service("shop", "lb", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.999", None)
        .lb_ingress("198.51.100.9", None);
    let out = with_good(vec![svc], Vec::new());
    assert_eq!(
        out.errors,
        [svc_error(
            "lb",
            invalid_ip("status.loadBalancer.ingress[0].ip", "198.51.100.999")
        )]
    );
    let view = port(&out, IpFamily::V4, "shop", "lb", "http", Protocol::Tcp);
    assert_eq!(view.load_balancer_ips, [ip("198.51.100.9")]);
    assert_eq!(view.node_port, Some(30080));
}

#[test]
fn invalid_endpoint_address_is_skipped_and_the_rest_of_the_slice_kept() {
    let svc = service("shop", "web", "10.96.0.10").port("http", "TCP", 80);
    let slice = slice("shop", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("not-an-ip", NODE))
        .endpoint(ep("10.0.0.999", NODE))
        .endpoint(ep("10.1.0.5", NODE));
    let out = with_good(vec![svc], vec![slice]);
    assert_eq!(
        out.errors,
        [
            slice_error(
                "web-abc",
                invalid_ip("endpoints[0].addresses[0]", "not-an-ip")
            ),
            slice_error(
                "web-abc",
                invalid_ip("endpoints[1].addresses[0]", "10.0.0.999")
            ),
        ]
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.5:8080"]);
}

#[test]
fn endpoint_without_address_or_of_the_wrong_family_is_skipped() {
    let svc = service("shop", "web", "10.96.0.10").port("http", "TCP", 80);
    let mut empty = ep("10.1.0.1", NODE);
    empty.0.addresses.clear();
    let slice = slice("shop", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(empty)
        .endpoint(ep("fd00:10::1", NODE))
        .endpoint(ep("10.1.0.5", NODE));
    let out = with_good(vec![svc], vec![slice]);
    assert_eq!(out.errors.len(), 2, "{:?}", out.errors);
    assert!(
        matches!(&out.errors[0].problem, Problem::Missing { field, .. } if field == "endpoints[0].addresses")
    );
    assert!(matches!(
        &out.errors[1].problem,
        Problem::InvalidValue { field, value, .. } if field == "endpoints[1].addresses[0]" && value == "fd00:10::1"
    ));
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.5:8080"]);
}

#[test]
fn leading_zero_ipv4_is_accepted() {
    let svc = service("shop", "web", "010.096.000.010")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .external_ips(&["203.000.113.007"])
        .lb_ingress("198.051.100.009", None);
    let slice = slice("shop", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("010.000.000.001", NODE));
    let out = with_good(vec![svc], vec![slice]);
    assert_eq!(out.errors, vec![]);
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(view.cluster_ip, ip("10.96.0.10"));
    assert_eq!(view.external_ips, [ip("203.0.113.7")]);
    assert_eq!(view.load_balancer_ips, [ip("198.51.100.9")]);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.0.0.1:8080"]);
}

// ---- Ports and protocols ----

#[test]
fn service_port_out_of_range_or_missing_is_skipped() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("zero", "TCP", 0)
        .port("http", "TCP", 80)
        .port("big", "TCP", 70000)
        .port("negative", "TCP", -1)
        .type_("NodePort");
    let mut svc = svc.node_port("badnp", "TCP", 81, 70000);
    // `port` left out of the manifest altogether reads as 0.
    let json = serde_json::json!({
        "metadata": {"namespace": "shop", "name": "missing"},
        "spec": {"clusterIP": "10.96.0.11", "ports": [{"name": "x"}, {"name": "y", "port": 81}]},
    });
    let missing: Service = serde_json::from_value(json).expect("service");
    svc.0
        .spec
        .as_mut()
        .expect("spec")
        .ports
        .as_mut()
        .expect("ports")[1]
        .node_port = Some(30080);
    let out = with_good(vec![svc, Svc(missing)], Vec::new());
    assert_eq!(
        out.errors,
        [
            svc_error("missing", invalid_port("spec.ports[0].port", 0)),
            svc_error("web", invalid_port("spec.ports[0].port", 0)),
            svc_error("web", invalid_port("spec.ports[2].port", 70000)),
            svc_error("web", invalid_port("spec.ports[3].port", -1)),
            svc_error("web", invalid_port("spec.ports[4].nodePort", 70000)),
        ]
    );
    assert_eq!(port_names(&out, "web"), ["http/TCP"]);
    assert_eq!(port_names(&out, "missing"), ["y/TCP"]);
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!((view.port, view.node_port), (80, Some(30080)));
}

#[test]
fn slice_port_out_of_range_or_missing_is_skipped() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("http", "TCP", 80)
        .port("zero", "TCP", 81)
        .port("big", "TCP", 82)
        .port("missing", "TCP", 83);
    let mut slice = slice("shop", "web-abc", "web", "IPv4")
        .port("zero", "TCP", 0)
        .port("http", "TCP", 8080)
        .port("big", "TCP", 70000)
        .port("missing", "TCP", 1)
        .endpoint(ep("10.1.0.5", NODE));
    slice.0.ports.as_mut().expect("ports")[3].port = None;
    let out = with_good(vec![svc], vec![slice]);
    assert_eq!(
        out.errors,
        [
            slice_error("web-abc", invalid_port("ports[0].port", 0)),
            slice_error("web-abc", invalid_port("ports[2].port", 70000)),
            slice_error("web-abc", invalid_port("ports[3].port", 0)),
        ]
    );
    let endpoints = |name| {
        addrs(&port(&out, IpFamily::V4, "shop", "web", name, Protocol::Tcp).cluster_endpoints)
    };
    assert_eq!(endpoints("http"), ["10.1.0.5:8080"]);
    for name in ["zero", "big", "missing"] {
        assert_eq!(endpoints(name), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn unknown_protocol_is_skipped() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("ping", "ICMP", 80)
        .port("http", "TCP", 80)
        .port("lower", "udp", 53)
        .port("sctp", "SCTP", 9);
    let slice = slice("shop", "web-abc", "web", "IPv4")
        .port("http", "ICMP", 8080)
        .port("http", "TCP", 8081)
        .endpoint(ep("10.1.0.5", NODE));
    let out = with_good(vec![svc], vec![slice]);
    let unknown = |field: &str, value: &str| Problem::UnknownProtocol {
        field: field.into(),
        value: value.into(),
    };
    assert_eq!(
        out.errors,
        [
            svc_error("web", unknown("spec.ports[0].protocol", "ICMP")),
            svc_error("web", unknown("spec.ports[2].protocol", "udp")),
            slice_error("web-abc", unknown("ports[0].protocol", "ICMP")),
        ]
    );
    assert_eq!(port_names(&out, "web"), ["http/TCP", "sctp/SCTP"]);
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(addrs(&view.cluster_endpoints), ["10.1.0.5:8081"]);
}

#[test]
fn two_ports_with_the_same_name_keep_the_first() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("http", "TCP", 80)
        .port("http", "TCP", 8080)
        .port("metrics", "TCP", 9090);
    let out = with_good(vec![svc], Vec::new());
    assert_eq!(
        out.errors,
        [svc_error(
            "web",
            Problem::ConflictingPorts {
                field: "spec.ports[1]".into(),
                other: "spec.ports[0]".into(),
                detail: "both are named \"http\"".into(),
            }
        )]
    );
    assert_eq!(port_names(&out, "web"), ["http/TCP", "metrics/TCP"]);
    assert_eq!(
        port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp).port,
        80
    );
}

#[test]
fn two_ports_with_the_same_number_and_protocol_keep_the_first() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("a", "TCP", 80)
        .port("b", "TCP", 80)
        .port("c", "UDP", 80);
    let out = with_good(vec![svc], Vec::new());
    assert_eq!(
        out.errors,
        [svc_error(
            "web",
            Problem::ConflictingPorts {
                field: "spec.ports[1]".into(),
                other: "spec.ports[0]".into(),
                detail: "both are TCP 80".into(),
            }
        )]
    );
    assert_eq!(port_names(&out, "web"), ["a/TCP", "c/UDP"]);
}

// ---- Conflicts between Services ----

fn conflict(namespace: &str, name: &str, destination: &str, owner: &str) -> ModelError {
    error(
        ObjectKind::Service,
        namespace,
        name,
        Problem::ConflictingDestination {
            destination: destination.into(),
            owner: owner.into(),
        },
    )
}

#[test]
fn two_services_claiming_the_same_external_ip_port_first_wins() {
    let a = service("shop", "a", "10.96.0.1")
        .port("http", "TCP", 80)
        .external_ips(&["203.0.113.7", "203.0.113.8"]);
    let b = service("shop", "b", "10.96.0.2")
        .port("http", "TCP", 80)
        .port("alt", "TCP", 81)
        .external_ips(&["203.0.113.7"]);
    // Input order does not matter: namespace/name order does.
    let out = with_good(vec![b, a], Vec::new());
    assert_eq!(
        out.errors,
        [conflict("shop", "b", "203.0.113.7 TCP 80", "shop/a:http")]
    );
    let a = port(&out, IpFamily::V4, "shop", "a", "http", Protocol::Tcp);
    assert_eq!(a.external_ips, [ip("203.0.113.7"), ip("203.0.113.8")]);
    let b_http = port(&out, IpFamily::V4, "shop", "b", "http", Protocol::Tcp);
    assert!(b_http.external_ips.is_empty());
    assert_eq!(
        b_http.verdict(EntryPoint::ExternalIp, Source::External),
        None
    );
    assert!(b_http.verdict(EntryPoint::ClusterIp, Source::Pod).is_some());
    // Another port of the same address is another destination.
    let b_alt = port(&out, IpFamily::V4, "shop", "b", "alt", Protocol::Tcp);
    assert_eq!(b_alt.external_ips, [ip("203.0.113.7")]);

    // Namespace first: alpha/z beats beta/a.
    let z = service("alpha", "z", "10.96.0.3")
        .port("http", "TCP", 80)
        .external_ips(&["203.0.113.9"]);
    let a = service("beta", "a", "10.96.0.4")
        .port("http", "TCP", 80)
        .external_ips(&["203.0.113.9"]);
    let out = with_good(vec![a, z], Vec::new());
    assert_eq!(
        out.errors,
        [conflict("beta", "a", "203.0.113.9 TCP 80", "alpha/z:http")]
    );
}

#[test]
fn two_services_claiming_the_same_lb_ip_port_first_wins() {
    let lb = |name: &str, cluster_ip: &str| {
        service("shop", name, cluster_ip)
            .type_("LoadBalancer")
            .node_port("http", "TCP", 80, 0)
            .lb_ingress("198.51.100.9", None)
            .source_ranges(&["203.0.113.0/24"])
    };
    let out = with_good(vec![lb("b", "10.96.0.2"), lb("a", "10.96.0.1")], Vec::new());
    assert_eq!(
        out.errors,
        [conflict("shop", "b", "198.51.100.9 TCP 80", "shop/a:http")]
    );
    let b = port(&out, IpFamily::V4, "shop", "b", "http", Protocol::Tcp);
    assert!(b.load_balancer_ips.is_empty());
    assert_eq!(b.firewall, None);
    let a = port(&out, IpFamily::V4, "shop", "a", "http", Protocol::Tcp);
    assert_eq!(a.load_balancer_ips, [ip("198.51.100.9")]);
    assert!(a.firewall.is_some());
}

#[test]
fn two_services_claiming_the_same_node_port_first_wins() {
    let np = |name: &str, cluster_ip: &str, protocol: &str| {
        service("shop", name, cluster_ip)
            .cluster_ips(&[cluster_ip, &format!("fd00:96::{}", &cluster_ip[8..])])
            .type_("NodePort")
            .node_port("http", protocol, 80, 30080)
            .external_ips(&[
                &format!("203.0.113.{}", &cluster_ip[8..]),
                &format!("2001:db8:ff::{}", &cluster_ip[8..]),
            ])
    };
    let out = with_good(
        vec![
            np("c", "10.96.0.3", "UDP"),
            np("b", "10.96.0.2", "TCP"),
            np("a", "10.96.0.1", "TCP"),
        ],
        Vec::new(),
    );
    // Reported once, though both families have the conflict.
    assert_eq!(
        out.errors,
        [conflict("shop", "b", "NodePort TCP 30080", "shop/a:http")]
    );
    for family in IpFamily::ALL {
        let a = port(&out, family, "shop", "a", "http", Protocol::Tcp);
        let b = port(&out, family, "shop", "b", "http", Protocol::Tcp);
        let c = port(&out, family, "shop", "c", "http", Protocol::Udp);
        assert_eq!(a.node_port, Some(30080));
        assert_eq!(b.node_port, None);
        assert_eq!(b.verdict(EntryPoint::NodePort, Source::External), None);
        // The rest of b still works.
        assert_eq!(
            b.verdict(EntryPoint::ExternalIp, Source::External),
            Some(REJECT)
        );
        // Same number, other protocol: no conflict.
        assert_eq!(c.node_port, Some(30080));
    }
}

// ---- Other bad fields ----

#[test]
fn other_bad_fields_are_reported_and_defaults_used() {
    let mut svc = service("shop", "web", "10.96.0.10")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("198.51.100.9", None)
        .source_ranges(&["203.0.113.0/33", "203.0.113.0/24"])
        .etp_local()
        .affinity(Some(0));
    svc.0.spec.as_mut().expect("spec").internal_traffic_policy = Some("Sometimes".into());
    let out = with_good(vec![svc], Vec::new());
    let reasons: Vec<(&str, String)> = out
        .errors
        .iter()
        .map(|e| (e.reason(), e.problem.to_string()))
        .collect();
    assert_eq!(
        reasons,
        [
            ("invalid_cidr", "spec.loadBalancerSourceRanges[0]: invalid CIDR \"203.0.113.0/33\"".to_owned()),
            (
                "invalid_value",
                "spec.internalTrafficPolicy: invalid value \"Sometimes\": expected Cluster or Local; using Cluster"
                    .to_owned()
            ),
            ("invalid_port", "spec.healthCheckNodePort: port 0 is missing or out of range (1-65535)".to_owned()),
            (
                "invalid_value",
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds: invalid value \"0\": expected 1-86400; using 10800"
                    .to_owned()
            ),
        ]
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(
        view.firewall,
        Some(vec!["203.0.113.0/24".parse().expect("cidr")])
    );
    assert_eq!(view.internal_policy, crate::TrafficPolicy::Cluster);
    assert_eq!(view.external_policy, crate::TrafficPolicy::Local);
    assert_eq!(view.affinity_timeout, Some(10_800));
    assert!(out.ipv4.health_checks.is_empty());
}

#[test]
fn unknown_service_type_or_slice_address_type_is_skipped() {
    let svc = service("shop", "web", "10.96.0.10")
        .type_("Magic")
        .port("http", "TCP", 80);
    let api = service("shop", "api", "10.96.0.11").port("http", "TCP", 80);
    let slice = slice("shop", "api-abc", "api", "IPv5")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.5", NODE));
    let out = with_good(vec![svc, api], vec![slice]);
    let reasons: Vec<(String, &str)> = out
        .errors
        .iter()
        .map(|e| (e.object.to_string(), e.reason()))
        .collect();
    // Each Service's problems (its own, then its slices'), Services in namespace/name order.
    assert_eq!(
        reasons,
        [
            ("EndpointSlice shop/api-abc".to_owned(), "invalid_value"),
            ("Service shop/web".to_owned(), "invalid_value"),
        ]
    );
    assert_eq!(port_names(&out, "web"), Vec::<String>::new());
    let view = port(&out, IpFamily::V4, "shop", "api", "http", Protocol::Tcp);
    assert_eq!(view.cluster_endpoints, vec![]);
}

#[test]
fn slice_without_the_service_name_label_is_reported() {
    let orphan = slice("shop", "orphan", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.5", NODE))
        .without_labels();
    let empty = slice("shop", "empty", "", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("10.1.0.6", NODE));
    let web = service("shop", "web", "10.96.0.10").port("http", "TCP", 80);
    let out = with_good(vec![web], vec![orphan, empty]);
    assert_eq!(
        out.errors,
        [
            slice_error("empty", Problem::MissingServiceName),
            slice_error("orphan", Problem::MissingServiceName),
        ]
    );
    let view = port(&out, IpFamily::V4, "shop", "web", "http", Protocol::Tcp);
    assert_eq!(view.cluster_endpoints, vec![]);
}

#[test]
fn invalid_node_address_is_reported_on_the_node() {
    let mut config = node_config();
    config.node_ips.clear();
    let nodes = vec![node(NODE, &["bogus", "192.168.0.2"], None)];
    let (svc, slice) = good();
    let out = compute_with(&config, vec![svc], vec![slice], nodes);
    assert_eq!(
        out.errors,
        [error(
            ObjectKind::Node,
            "",
            NODE,
            invalid_ip("status.addresses[0].address", "bogus")
        )]
    );
    assert_eq!(out.ipv4.node_ips, [ip("192.168.0.2")]);
    assert_eq!(out.ipv4.ports.len(), 1);
}

// ---- ModelError ----

#[test]
fn model_error_display_names_the_object_and_the_field() {
    let svc = service("shop", "web", "10.96.0.10")
        .port("http", "TCP", 70000)
        .external_ips(&["not-an-ip"]);
    let slice = slice("shop", "web-abc", "web", "IPv4")
        .port("http", "TCP", 8080)
        .endpoint(ep("not-an-ip", NODE));
    let orphan = slice.clone().without_labels();
    let mut orphan = orphan;
    orphan.0.metadata.name = Some("orphan".into());
    let out = compute(vec![svc], vec![slice, orphan]);
    let shown: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "EndpointSlice shop/orphan: no kubernetes.io/service-name label: cannot tell which Service it belongs to",
            "Service shop/web: spec.ports[0].port: port 70000 is missing or out of range (1-65535)",
            "Service shop/web: spec.externalIPs[0]: invalid IP address \"not-an-ip\"",
            "EndpointSlice shop/web-abc: endpoints[0].addresses[0]: invalid IP address \"not-an-ip\"",
        ]
    );
    let node_error = error(
        ObjectKind::Node,
        "",
        NODE,
        invalid_ip("status.addresses[1].address", "x"),
    );
    assert_eq!(
        node_error.to_string(),
        "Node node-a: status.addresses[1].address: invalid IP address \"x\""
    );
    let reasons: Vec<&str> = out.errors.iter().map(ModelError::reason).collect();
    assert_eq!(
        reasons,
        [
            "missing_service_name",
            "invalid_port",
            "invalid_ip",
            "invalid_ip"
        ]
    );
}

#[test]
fn objects_without_a_namespace_are_in_default() {
    let mut svc = service("x", "web", "10.96.0.10").port("http", "TCP", 70000);
    svc.0.metadata.namespace = None;
    let out = compute(vec![svc], Vec::new());
    assert_eq!(
        out.errors[0].object,
        ObjectRef::new(ObjectKind::Service, "default", "web")
    );
    assert_eq!(
        out.errors[0].to_string().split(':').next(),
        Some("Service default/web")
    );
}
