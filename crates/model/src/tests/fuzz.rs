//! Properties of `node_view` over arbitrary-ish input: random Services, EndpointSlices and a
//! Node, with valid and invalid addresses, ports over the whole `i32` range, protocols and types
//! including garbage, random policies, labels, conditions, hints and node names.

use super::*;
use crate::fixtures::NODE;
use crate::{parse_ip_sloppy, Action, EndpointSet};
use k8s_openapi::api::core::v1::{
    ClientIPConfig, LoadBalancerIngress, LoadBalancerStatus, Node, NodeAddress, NodeStatus,
    Service, ServicePort, ServiceSpec, ServiceStatus, SessionAffinityConfig,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint as K8sEndpoint, EndpointConditions, EndpointHints, EndpointPort, EndpointSlice,
    ForNode, ForZone,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use proptest::collection::vec;
use proptest::option;
use proptest::prelude::*;
use proptest::sample::select;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Cluster IPs (both families).
const CLUSTER_IPS: &[&str] = &[
    "10.96.0.1",
    "10.96.0.5",
    "10.96.0.6",
    "10.96.0.2",
    "10.96.0.3",
    "010.096.000.004",
    "fd00:96::1",
    "fd00:96::2",
    "fd00:96::3",
];
/// IPv4 pod addresses.
const POD_IPS_V4: &[&str] = &[
    "10.1.0.1",
    "10.1.0.2",
    "10.1.0.3",
    "10.2.0.1",
    "10.2.0.3",
    "010.002.000.002",
];
/// IPv6 pod addresses.
const POD_IPS_V6: &[&str] = &["fd00:10::1", "fd00:10::2", "fd00:10::3", "fd00:10::a"];
/// Pod addresses of both families.
const POD_IPS: &[&str] = &["10.1.0.1", "10.2.0.1", "fd00:10::1", "fd00:10::2"];
/// externalIPs, LoadBalancer ingress and node addresses.
const OUTSIDE_IPS: &[&str] = &[
    "203.0.113.7",
    "198.51.100.9",
    "2001:db8:fe::9",
    "192.168.0.2",
    "2001:db8::2",
    "10.96.0.1",
    "127.0.0.1",
    "::1",
];
/// Anything but a usable address.
const BAD_IPS: &[&str] = &[
    "10.0.0.999",
    "not-an-ip",
    "None",
    "",
    " 10.1.0.3 ",
    "0.0.0.0",
];
const RANGES: &[&str] = &[
    "203.0.113.0/24",
    "192.168.0.0/16",
    " 10.0.0.0/8 ",
    "2001:db8::/64",
    "fd00::/8",
    "0.0.0.0/0",
    "10.0.0.0/33",
    "nonsense",
];
const PORT_NAMES: &[&str] = &["", "http"];
const PROTOCOLS: &[&str] = &["TCP", "TCP", "UDP"];
const BAD_PROTOCOLS: &[&str] = &["SCTP", "ICMP", "tcp", ""];
const TYPES: &[&str] = &["ClusterIP", "NodePort", "LoadBalancer"];
const BAD_TYPES: &[&str] = &["ExternalName", "Bogus"];
const POLICIES: &[&str] = &["Cluster", "Local"];
const IP_MODES: &[&str] = &["VIP", "Proxy", "weird"];
const AFFINITY: &[&str] = &["None", "ClientIP", "ClientIP", "ClientIP", "Sticky"];
const SERVICE_NAMES: &[&str] = &["s0", "s1", "s2"];
const SLICE_LABELS: &[&str] = &[
    "service.kubernetes.io/headless",
    "service.kubernetes.io/service-proxy-name",
];
const BAD_ADDRESS_TYPES: &[&str] = &["FQDN", "bogus"];
const NODE_NAMES: &[&str] = &[NODE, NODE, "node-b", "node-c", "NODE-A"];
const ZONES: &[&str] = &["zone-a", "zone-b", ""];

fn text(list: &'static [&'static str]) -> impl Strategy<Value = String> {
    select(list).prop_map(str::to_owned)
}

/// Mostly one of `good`, sometimes one of `bad`, sometimes unset.
fn mostly(
    good: &'static [&'static str],
    bad: &'static [&'static str],
) -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        12 => text(good).prop_map(Some),
        1 => text(bad).prop_map(Some),
        1 => Just(None),
    ]
}

/// Mostly an address of `good`, sometimes garbage.
fn ip_text(good: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![12 => text(good), 1 => text(BAD_IPS), 1 => "[0-9a-f:. ]{0,12}"]
}

fn port_number() -> impl Strategy<Value = i32> {
    prop_oneof![
        12 => select(&[53, 80, 8080, 30080][..]),
        1 => select(&[0, 1, 65535, 65536, -1][..]),
        1 => any::<i32>(),
    ]
}

fn namespace() -> impl Strategy<Value = String> {
    prop_oneof![4 => Just("a".to_owned()), 1 => Just("b".to_owned())]
}

fn meta(namespace: String, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        namespace: Some(namespace),
        name: Some(name),
        labels: (!labels.is_empty()).then_some(labels),
        ..ObjectMeta::default()
    }
}

fn service_port() -> impl Strategy<Value = ServicePort> {
    (
        mostly(PORT_NAMES, &["x"]),
        mostly(PROTOCOLS, BAD_PROTOCOLS),
        port_number(),
        option::of(port_number()),
    )
        .prop_map(|(name, protocol, port, node_port)| ServicePort {
            name,
            protocol,
            port,
            node_port,
            ..ServicePort::default()
        })
}

/// A Service without a name (names are given by position, so they are unique).
fn service_body() -> impl Strategy<Value = Service> {
    (
        (
            namespace(),
            mostly(TYPES, BAD_TYPES),
            vec(ip_text(CLUSTER_IPS), 1..3),
            any::<bool>(),
        ),
        vec(service_port(), 1..3),
        vec(ip_text(OUTSIDE_IPS), 0..3),
        vec((ip_text(OUTSIDE_IPS), option::of(text(IP_MODES))), 0..3),
        vec(text(RANGES), 0..3),
        (
            mostly(POLICIES, &["bogus"]),
            mostly(POLICIES, &["bogus"]),
            prop_oneof![9 => port_number().prop_map(Some), 1 => Just(None)],
        ),
        (
            prop::bool::weighted(0.1),
            option::of(text(AFFINITY)),
            option::of(any::<i32>()),
        ),
    )
        .prop_map(
            |(
                (namespace, type_, cluster_ips, list_field),
                ports,
                external_ips,
                ingress,
                ranges,
                (itp, etp, health_check_node_port),
                (other_proxy, affinity, timeout),
            )| {
                let mut labels = BTreeMap::new();
                if other_proxy {
                    labels.insert(
                        "service.kubernetes.io/service-proxy-name".into(),
                        "x".into(),
                    );
                }
                Service {
                    metadata: meta(namespace, String::new(), labels),
                    spec: Some(ServiceSpec {
                        type_,
                        cluster_ip: cluster_ips.first().cloned(),
                        cluster_ips: list_field.then_some(cluster_ips),
                        ports: Some(ports),
                        external_ips: Some(external_ips),
                        load_balancer_source_ranges: Some(ranges),
                        internal_traffic_policy: itp,
                        external_traffic_policy: etp,
                        health_check_node_port,
                        session_affinity: affinity,
                        session_affinity_config: timeout.map(|t| SessionAffinityConfig {
                            client_ip: Some(ClientIPConfig {
                                timeout_seconds: Some(t),
                            }),
                        }),
                        ..ServiceSpec::default()
                    }),
                    status: Some(ServiceStatus {
                        load_balancer: Some(LoadBalancerStatus {
                            ingress: Some(
                                ingress
                                    .into_iter()
                                    .map(|(ip, ip_mode)| LoadBalancerIngress {
                                        ip: Some(ip),
                                        ip_mode,
                                        ..LoadBalancerIngress::default()
                                    })
                                    .collect(),
                            ),
                        }),
                        ..ServiceStatus::default()
                    }),
                }
            },
        )
}

fn endpoint(pool: &'static [&'static str]) -> impl Strategy<Value = K8sEndpoint> {
    (
        prop_oneof![9 => vec(ip_text(pool), 1..2), 1 => vec(ip_text(pool), 0..3)],
        option::of(text(NODE_NAMES)),
        (
            option::of(any::<bool>()),
            option::of(any::<bool>()),
            option::of(any::<bool>()),
        ),
        option::of(vec(text(ZONES), 0..3)),
        option::of(vec(text(NODE_NAMES), 0..3)),
    )
        .prop_map(
            |(addresses, node_name, (ready, serving, terminating), zones, nodes)| {
                let hints = (zones.is_some() || nodes.is_some()).then(|| EndpointHints {
                    for_zones: zones.map(|z| z.into_iter().map(|name| ForZone { name }).collect()),
                    for_nodes: nodes.map(|n| n.into_iter().map(|name| ForNode { name }).collect()),
                });
                K8sEndpoint {
                    addresses,
                    node_name,
                    conditions: Some(EndpointConditions {
                        ready,
                        serving,
                        terminating,
                    }),
                    hints,
                    ..K8sEndpoint::default()
                }
            },
        )
}

/// An EndpointSlice without a name (given by position).
fn slice_body() -> impl Strategy<Value = EndpointSlice> {
    (
        namespace(),
        mostly(SERVICE_NAMES, &["", "s9"]),
        prop_oneof![8 => Just(None), 1 => text(SLICE_LABELS).prop_map(Some)],
        vec(
            (
                mostly(PORT_NAMES, &["x"]),
                mostly(PROTOCOLS, BAD_PROTOCOLS),
                prop_oneof![9 => port_number().prop_map(Some), 1 => Just(None)],
            ),
            0..3,
        ),
        // The address type, and endpoints mostly of its family.
        prop_oneof![
            6 => Just("IPv4").prop_flat_map(|t| (Just(t), vec(endpoint(POD_IPS_V4), 0..5))),
            3 => Just("IPv6").prop_flat_map(|t| (Just(t), vec(endpoint(POD_IPS_V6), 0..5))),
            1 => select(BAD_ADDRESS_TYPES).prop_flat_map(|t| (Just(t), vec(endpoint(POD_IPS), 0..5))),
            1 => select(&["IPv4", "IPv6"][..]).prop_flat_map(|t| (Just(t), vec(endpoint(POD_IPS), 0..5))),
        ],
    )
        .prop_map(
            |(namespace, service, extra, ports, (address_type, endpoints))| {
                let mut labels = BTreeMap::new();
                if let Some(service) = service {
                    labels.insert("kubernetes.io/service-name".to_owned(), service);
                }
                if let Some(extra) = extra {
                    labels.insert(extra, String::new());
                }
                EndpointSlice {
                    metadata: meta(namespace, String::new(), labels),
                    address_type: address_type.to_owned(),
                    endpoints,
                    ports: Some(
                        ports
                            .into_iter()
                            .map(|(name, protocol, port)| EndpointPort {
                                name,
                                protocol,
                                port,
                                app_protocol: None,
                            })
                            .collect(),
                    ),
                }
            },
        )
}

fn this_node() -> impl Strategy<Value = Node> {
    (
        select(&[NODE, NODE, "node-b"][..]),
        option::of(text(ZONES)),
        vec(ip_text(OUTSIDE_IPS), 0..3),
    )
        .prop_map(|(name, zone, addresses)| Node {
            metadata: ObjectMeta {
                name: Some(name.into()),
                labels: zone.map(|z| BTreeMap::from([("topology.kubernetes.io/zone".into(), z)])),
                ..ObjectMeta::default()
            },
            spec: None,
            status: Some(NodeStatus {
                addresses: Some(
                    addresses
                        .into_iter()
                        .enumerate()
                        .map(|(i, address)| NodeAddress {
                            type_: if i % 2 == 0 {
                                "InternalIP"
                            } else {
                                "ExternalIP"
                            }
                            .into(),
                            address,
                        })
                        .collect(),
                ),
                ..NodeStatus::default()
            }),
        })
}

fn config() -> impl Strategy<Value = NodeConfig> {
    (any::<bool>(), any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(configured_ips, cidrs, masquerade_all, node_port_cidrs)| {
            let mut config = crate::fixtures::node_config();
            if !configured_ips {
                config.node_ips.clear();
            }
            if !cidrs {
                config.cluster_cidrs.clear();
            }
            config.masquerade_all = masquerade_all;
            if node_port_cidrs {
                config.node_port_addresses = crate::NodePortAddresses::Cidrs(vec![
                    "192.168.0.0/16".parse().expect("cidr"),
                    "::/0".parse().expect("cidr"),
                ]);
            }
            config
        },
    )
}

#[derive(Debug, Clone)]
struct Input {
    services: Vec<Service>,
    slices: Vec<EndpointSlice>,
    node: Node,
    config: NodeConfig,
}

/// A Service a slice can be written for: namespace, name, and (name, protocol) of its ports.
type Target = (String, String, Vec<(Option<String>, Option<String>)>);

/// A slice mostly written for one of `targets`: its namespace, its name label, and some of its
/// ports (by name and protocol, with any port number); otherwise an arbitrary slice.
fn slice_for(targets: Vec<Target>) -> impl Strategy<Value = EndpointSlice> {
    let coherent = (
        any::<prop::sample::Index>(),
        vec((prop::bool::weighted(0.8), port_number()), 3),
        slice_body(),
    )
        .prop_map(move |(index, choices, mut slice)| {
            if targets.is_empty() {
                return slice;
            }
            let (namespace, name, ports) = index.get(&targets);
            slice.metadata.namespace = Some(namespace.clone());
            slice
                .metadata
                .labels
                .get_or_insert_with(BTreeMap::new)
                .insert("kubernetes.io/service-name".into(), name.clone());
            slice.ports = Some(
                ports
                    .iter()
                    .zip(choices)
                    .filter(|(_, (keep, _))| *keep)
                    .map(|((name, protocol), (_, port))| EndpointPort {
                        name: name.clone(),
                        protocol: protocol.clone(),
                        port: Some(port),
                        app_protocol: None,
                    })
                    .collect(),
            );
            slice
        });
    prop_oneof![4 => coherent, 1 => slice_body()]
}

fn input() -> impl Strategy<Value = Input> {
    let services = vec(service_body(), 0..6).prop_map(|mut services| {
        for (i, s) in services.iter_mut().enumerate() {
            s.metadata.name = Some(format!("s{i}"));
        }
        services
    });
    services
        .prop_flat_map(|services| {
            let targets: Vec<Target> = services
                .iter()
                .map(|s| {
                    let ports = s.spec.as_ref().and_then(|s| s.ports.as_ref());
                    (
                        s.metadata.namespace.clone().unwrap_or_default(),
                        s.metadata.name.clone().unwrap_or_default(),
                        ports
                            .into_iter()
                            .flatten()
                            .map(|p| (p.name.clone(), p.protocol.clone()))
                            .collect(),
                    )
                })
                .collect();
            (
                Just(services),
                vec(slice_for(targets), 0..7),
                this_node(),
                config(),
            )
        })
        .prop_map(|(services, mut slices, node, config)| {
            for (i, s) in slices.iter_mut().enumerate() {
                s.metadata.name = Some(format!("e{i}"));
            }
            Input {
                services,
                slices,
                node,
                config,
            }
        })
}

/// Every (address, port) the input slices give this service-port in this family, read
/// independently of the model.
fn input_endpoints(
    input: &Input,
    name: &ServicePortName,
    family: IpFamily,
) -> BTreeSet<(IpAddr, u16)> {
    let mut out = BTreeSet::new();
    for slice in &input.slices {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        if slice.metadata.namespace.as_deref() != Some(name.service.namespace.as_str())
            || labels.get("kubernetes.io/service-name") != Some(&name.service.name)
            || labels.keys().any(|k| SLICE_LABELS.contains(&k.as_str()))
            || slice.address_type != family.to_string()
        {
            continue;
        }
        for p in slice.ports.iter().flatten() {
            let port = p
                .port
                .and_then(|p| u16::try_from(p).ok())
                .filter(|p| *p != 0);
            if p.name.clone().unwrap_or_default() != name.port_name
                || Protocol::from_k8s(p.protocol.as_deref()) != Some(name.protocol)
            {
                continue;
            }
            let Some(port) = port else { continue };
            for ep in &slice.endpoints {
                let ip = ep.addresses.first().and_then(|a| parse_ip_sloppy(a));
                if let Some(ip) = ip.filter(|ip| IpFamily::of(ip) == family) {
                    out.insert((ip, port));
                }
            }
        }
    }
    out
}

fn sorted_unique(endpoints: &[Endpoint]) -> bool {
    endpoints
        .windows(2)
        .all(|w| (w[0].ip, w[0].port) < (w[1].ip, w[1].port))
}

/// Either all ready, or (the fallback) all serving-terminating and none ready.
fn one_tier(endpoints: &[Endpoint]) -> bool {
    endpoints.iter().all(|e| e.ready)
        || endpoints
            .iter()
            .all(|e| !e.ready && e.serving && e.terminating)
}

fn check(input: &Input, out: &NodeServices) -> Result<(), TestCaseError> {
    let conflicted: BTreeSet<ServiceRef> = out
        .errors
        .iter()
        .filter(|e| e.reason() == "conflicting_destination")
        .map(|e| ServiceRef::new(&e.object.namespace, &e.object.name))
        .collect();
    for family in IpFamily::ALL {
        let fam = out.family(family);
        prop_assert_eq!(fam.family, family);
        let of_family = |ip: &IpAddr| IpFamily::of(ip) == family;
        prop_assert!(fam.node_ips.iter().all(of_family));
        prop_assert!(fam
            .node_port_ips
            .iter()
            .all(|ip| fam.node_ips.contains(ip) && !ip.is_loopback()));
        prop_assert!(fam.cluster_cidrs.iter().all(|c| of_family(&c.addr())));
        for (name, view) in &fam.ports {
            prop_assert_eq!(&view.name, name);
            prop_assert_eq!(view.family, family);
            prop_assert!(of_family(&view.cluster_ip));
            prop_assert!(view
                .external_ips
                .iter()
                .chain(&view.load_balancer_ips)
                .all(of_family));
            if let Some(firewall) = &view.firewall {
                prop_assert!(!view.load_balancer_ips.is_empty());
                prop_assert!(firewall.iter().all(|n| of_family(&n.addr())));
            }
            prop_assert!(view.port != 0);
            prop_assert!(view.node_port != Some(0));
            prop_assert_eq!(view.pod_sources_known, !fam.cluster_cidrs.is_empty());
            prop_assert_eq!(view.masquerade_all, input.config.masquerade_all);

            // The Service is one the proxy programs.
            let svc = input
                .services
                .iter()
                .find(|s| {
                    s.metadata.namespace.as_deref() == Some(name.service.namespace.as_str())
                        && s.metadata.name.as_deref() == Some(name.service.name.as_str())
                })
                .expect("a view comes from an input Service");
            prop_assert!(svc.metadata.labels.is_none());
            let type_ = svc.spec.as_ref().and_then(|s| s.type_.as_deref());
            prop_assert!(matches!(
                type_,
                None | Some("ClusterIP" | "NodePort" | "LoadBalancer")
            ));

            // Endpoints: own family, sorted, from the input, locality and conditions respected.
            let all = input_endpoints(input, name, family);
            for (set, endpoints) in [
                ("cluster", &view.cluster_endpoints),
                ("local", &view.local_endpoints),
            ] {
                prop_assert!(
                    endpoints.iter().all(|e| of_family(&e.ip)),
                    "{} set of {}",
                    set,
                    name
                );
                prop_assert!(sorted_unique(endpoints), "{} set of {}", set, name);
                prop_assert!(
                    one_tier(endpoints),
                    "{} set of {}: {:?}",
                    set,
                    name,
                    endpoints
                );
                prop_assert!(endpoints.iter().all(|e| e.port != 0));
                for e in endpoints.iter() {
                    prop_assert!(
                        all.contains(&(e.ip, e.port)),
                        "{} endpoint {:?} not in input {:?}",
                        set,
                        e,
                        all
                    );
                    let local = e.node_name.as_deref() == Some(input.config.node_name.as_str());
                    prop_assert_eq!(e.is_local, local);
                }
            }
            prop_assert!(view.local_endpoints.iter().all(|e| e.is_local));
            if view.topology_filtered {
                prop_assert!(view.cluster_endpoints.iter().all(|e| e.ready));
            }

            // Verdicts agree with the dispatch functions and the endpoint sets.
            for entry in ENTRIES {
                for source in SOURCES {
                    let verdict = view.verdict(entry, source);
                    prop_assert_eq!(verdict.is_some(), view.has_entry_point(entry));
                    let Some(verdict) = verdict else { continue };
                    if entry == EntryPoint::ClusterIp {
                        prop_assert_eq!(verdict.action, view.internal_action());
                    }
                    prop_assert_eq!(verdict.action == Action::Reject, !view.has_endpoints());
                    match verdict.action {
                        Action::Forward(EndpointSet::Cluster) => {
                            prop_assert!(!view.cluster_endpoints.is_empty())
                        }
                        Action::Forward(EndpointSet::Local) => {
                            prop_assert!(!view.local_endpoints.is_empty())
                        }
                        Action::Drop | Action::Reject => prop_assert!(!verdict.masquerade),
                    }
                    if entry != EntryPoint::ClusterIp
                        && view.external_policy == crate::TrafficPolicy::Cluster
                    {
                        prop_assert!(verdict.action == Action::Reject || verdict == cluster(true));
                    }
                }
            }
        }

        // Health checks: the distinct ready local endpoint IPs of the Service's ports.
        for (service, health) in &fam.health_checks {
            prop_assert!(health.node_port != 0);
            if conflicted.contains(service) {
                continue;
            }
            let local: BTreeSet<IpAddr> = fam
                .ports
                .values()
                .filter(|v| &v.name.service == service)
                .flat_map(|v| v.local_endpoints.iter())
                .map(|e| e.ip)
                .collect();
            let ready_local: BTreeSet<IpAddr> = fam
                .ports
                .values()
                .filter(|v| &v.name.service == service)
                .flat_map(|v| v.local_endpoints.iter().filter(|e| e.ready))
                .map(|e| e.ip)
                .collect();
            prop_assert!(health.local_endpoints <= local.len());
            prop_assert_eq!(health.local_endpoints, ready_local.len(), "{}", service);
        }
    }
    prop_assert!(serde_json::to_value(out).is_ok());
    Ok(())
}

fn shuffled_input() -> impl Strategy<Value = (Input, Vec<Service>, Vec<EndpointSlice>)> {
    input().prop_flat_map(|input| {
        let services = Just(input.services.clone()).prop_shuffle();
        let slices = Just(input.slices.clone()).prop_shuffle();
        (Just(input), services, slices)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn node_view_never_panics_and_keeps_its_invariants(
        (input, services, slices) in shuffled_input()
    ) {
        let node_name = input.config.node_name.clone();
        let view = ClusterView::from_objects(
            input.services.clone(),
            input.slices.clone(),
            [input.node.clone()],
            &node_name,
        );
        let out = node_view(&view, &input.config);
        check(&input, &out)?;

        // Deterministic: the same input twice, the input in another order, or built up one
        // object at a time (slices first, in reverse) all give the same result.
        prop_assert_eq!(&node_view(&view, &input.config), &out);
        let shuffled = ClusterView::from_objects(services, slices, [input.node.clone()], &node_name);
        prop_assert_eq!(&node_view(&shuffled, &input.config), &out);
        let mut incremental = ClusterView::new();
        for slice in input.slices.iter().rev() {
            incremental.upsert_slice(slice.clone());
        }
        for svc in input.services.iter().rev() {
            incremental.upsert_service(svc.clone());
        }
        if input.node.metadata.name.as_deref() == Some(node_name.as_str()) {
            incremental.set_node(Some(input.node.clone()));
        }
        prop_assert_eq!(&node_view(&incremental, &input.config), &out);
    }
}

/// Applies `to`'s objects over a view of `from` (deleting what `to` lacks), returning the
/// Services the changes touched, as the agent's state does.
fn change_view(view: &mut ClusterView, from: &Input, to: &Input) -> BTreeSet<crate::ServiceRef> {
    let mut dirty = BTreeSet::new();
    let keys: BTreeSet<(String, String)> = to
        .slices
        .iter()
        .map(|s| {
            (
                s.metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into()),
                s.metadata.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    for (ns, name) in view.slice_keys() {
        if !keys.contains(&(ns.clone(), name.clone())) {
            dirty.extend(view.remove_slice(&ns, &name));
        }
    }
    for key in view.service_keys() {
        let kept = to.services.iter().any(|s| {
            s.metadata.name.as_deref() == Some(key.name.as_str())
                && s.metadata.namespace.as_deref().unwrap_or("default") == key.namespace
        });
        if !kept {
            view.remove_service(&key);
            dirty.insert(key);
        }
    }
    for svc in &to.services {
        let unchanged = from.services.contains(svc);
        let key = view.upsert_service(svc.clone());
        if !unchanged {
            dirty.insert(key);
        }
    }
    for slice in &to.slices {
        if !from.slices.contains(slice) {
            dirty.extend(view.upsert_slice(slice.clone()));
        }
    }
    dirty
}

fn sorted_errors(out: &NodeServices) -> Vec<String> {
    let mut errors: Vec<String> = out.errors.iter().map(ToString::to_string).collect();
    errors.sort();
    errors
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Updating the result for the changed Services only gives what computing everything
    /// gives (or says it cannot, when Services conflict).
    #[test]
    fn an_incremental_update_equals_a_full_computation(a in input(), b in input()) {
        let node_name = a.config.node_name.clone();
        let mut view = ClusterView::from_objects(
            a.services.clone(),
            a.slices.clone(),
            [a.node.clone()],
            &node_name,
        );
        let mut services = node_view(&view, &a.config);
        let dirty = change_view(&mut view, &a, &b);
        let full = node_view(&view, &a.config);
        match crate::update_node_view(&view, &a.config, &mut services, &dirty) {
            Ok(()) => {
                prop_assert_eq!(&services.ipv4, &full.ipv4);
                prop_assert_eq!(&services.ipv6, &full.ipv6);
                prop_assert_eq!(sorted_errors(&services), sorted_errors(&full));
            }
            Err(crate::NeedsFull::Conflict) => {
                let conflict = |out: &NodeServices| out.errors.iter().any(|e| {
                    matches!(e.problem, crate::Problem::ConflictingDestination { .. })
                });
                // Only when there is (or was) a conflict: then the caller recomputes.
                let before = node_view(
                    &ClusterView::from_objects(a.services.clone(), a.slices.clone(), [a.node.clone()], &node_name),
                    &a.config,
                );
                prop_assert!(conflict(&full) || conflict(&before) || has_shared_destination(&full));
            }
        }
    }
}

/// Two service-ports with one destination in the full result (a conflict the full computation
/// resolved, which the incremental one declines to).
fn has_shared_destination(out: &NodeServices) -> bool {
    out.errors
        .iter()
        .any(|e| matches!(e.problem, crate::Problem::ConflictingDestination { .. }))
}
