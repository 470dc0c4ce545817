//! A `v1/Service` read into what the model needs, with every bad field reported (DESIGN.md §2.1).

use crate::error::{ModelError, Problem};
use crate::ip::parse_ip_sloppy;
use crate::objects::{IpFamily, ObjectKind, ObjectRef, Protocol, ServiceRef};
use crate::policy::TrafficPolicy;
use crate::stored_service::StoredService;
use ipnet::IpNet;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Services with this label belong to another proxy.
pub(crate) const SERVICE_PROXY_NAME_LABEL: &str = "service.kubernetes.io/service-proxy-name";
/// The API default of `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub(crate) const DEFAULT_AFFINITY_TIMEOUT: u32 = 10_800;
/// The API maximum of `sessionAffinityConfig.clientIP.timeoutSeconds` (one day).
const MAX_AFFINITY_TIMEOUT: i32 = 86_400;

/// The Service types the proxy programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServiceType {
    ClusterIp,
    NodePort,
    LoadBalancer,
}

/// One valid port of a Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PortInfo {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
    pub node_port: Option<u16>,
}

/// A Service the proxy programs, with only valid values left in it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ServiceInfo {
    pub service: ServiceRef,
    pub cluster_ips: BTreeMap<IpFamily, IpAddr>,
    pub external_ips: Vec<IpAddr>,
    pub load_balancer_ips: Vec<IpAddr>,
    pub source_ranges: Vec<IpNet>,
    pub ports: Vec<PortInfo>,
    pub internal_policy: TrafficPolicy,
    pub external_policy: TrafficPolicy,
    pub health_check_node_port: Option<u16>,
    pub affinity_timeout: Option<u32>,
}

/// The namespace of an object; manifests without one are in `default`, as `kubectl apply` does.
pub(crate) fn namespace_of(namespace: &Option<String>) -> &str {
    namespace
        .as_deref()
        .filter(|ns| !ns.is_empty())
        .unwrap_or("default")
}

/// Reads a Service. `None` when the proxy does not program it: headless, ExternalName, owned by
/// another proxy (no error), or unusable (an error in `errors`).
pub(crate) fn parse_service(
    key: &ServiceRef,
    svc: &StoredService,
    errors: &mut Vec<ModelError>,
) -> Option<ServiceInfo> {
    let (namespace, name) = (key.namespace.as_str(), key.name.as_str());
    let object = ObjectRef::new(ObjectKind::Service, namespace, name);
    let mut report = |problem: Problem| {
        errors.push(ModelError {
            object: object.clone(),
            problem,
        })
    };
    if name.is_empty() {
        report(Problem::Missing {
            field: "metadata.name".into(),
            detail: "a Service needs a name".into(),
        });
        return None;
    }
    if svc.other_proxy {
        return None;
    }
    let Some(spec) = svc.spec.as_ref() else {
        report(Problem::Missing {
            field: "spec".into(),
            detail: "a Service needs a spec".into(),
        });
        return None;
    };
    let service_type = match spec.type_.as_deref() {
        None | Some("ClusterIP") => ServiceType::ClusterIp,
        Some("NodePort") => ServiceType::NodePort,
        Some("LoadBalancer") => ServiceType::LoadBalancer,
        Some("ExternalName") => return None,
        Some(other) => {
            report(Problem::InvalidValue {
                field: "spec.type".into(),
                value: other.into(),
                detail: "expected ClusterIP, NodePort, LoadBalancer or ExternalName".into(),
            });
            return None;
        }
    };

    // Cluster IPs: `clusterIPs` when set, else `clusterIP`. One per family.
    let listed: Vec<(String, &str)> = match spec.cluster_ips.as_deref() {
        Some(ips) if !ips.is_empty() => ips
            .iter()
            .enumerate()
            .map(|(i, ip)| (format!("spec.clusterIPs[{i}]"), ip.as_str()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .map(|ip| ("spec.clusterIP".to_owned(), ip.as_str()))
            .collect(),
    };
    if listed.iter().any(|(_, ip)| *ip == "None") {
        return None; // headless
    }
    if listed.iter().all(|(_, ip)| ip.is_empty()) {
        report(Problem::Missing {
            field: "spec.clusterIP".into(),
            detail: "a ClusterIP, NodePort or LoadBalancer Service needs a cluster IP".into(),
        });
        return None;
    }
    let mut cluster_ips = BTreeMap::new();
    for (field, text) in listed {
        match parse_ip_sloppy(text) {
            Some(ip) if !cluster_ips.contains_key(&IpFamily::of(&ip)) => {
                cluster_ips.insert(IpFamily::of(&ip), ip);
            }
            Some(_) => report(Problem::InvalidValue {
                field,
                value: text.into(),
                detail: "a second cluster IP of the same family".into(),
            }),
            None => {
                report(Problem::InvalidIp {
                    field,
                    value: text.into(),
                });
                return None;
            }
        }
    }

    let ports = parse_ports(svc, service_type, &mut report);

    let mut load_balancer_ips = Vec::new();
    if service_type == ServiceType::LoadBalancer {
        let ingress = svc.load_balancer_ingress.as_deref().unwrap_or_default();
        for (i, ing) in ingress.iter().enumerate() {
            // Only `ipMode: VIP` (or unset) is captured; with `Proxy` (or any mode we do not
            // know) the load balancer delivers to the node itself, not to the VIP.
            if ing.ip_mode.as_deref().is_some_and(|mode| mode != "VIP") {
                continue;
            }
            let Some(text) = ing.ip.as_deref().filter(|ip| !ip.is_empty()) else {
                continue; // hostname-only ingress
            };
            match parse_ip_sloppy(text) {
                Some(ip) if !load_balancer_ips.contains(&ip) => load_balancer_ips.push(ip),
                Some(_) => {}
                None => report(Problem::InvalidIp {
                    field: format!("status.loadBalancer.ingress[{i}].ip"),
                    value: text.into(),
                }),
            }
        }
    }
    let mut external_ips = Vec::new();
    for (i, text) in spec.external_ips.iter().flatten().enumerate() {
        match parse_ip_sloppy(text) {
            Some(ip) if !external_ips.contains(&ip) && !load_balancer_ips.contains(&ip) => {
                external_ips.push(ip)
            }
            Some(_) => {}
            None => report(Problem::InvalidIp {
                field: format!("spec.externalIPs[{i}]"),
                value: text.clone(),
            }),
        }
    }
    let mut source_ranges = Vec::new();
    for (i, text) in spec
        .load_balancer_source_ranges
        .iter()
        .flatten()
        .enumerate()
    {
        match text.trim().parse::<IpNet>() {
            Ok(net) => source_ranges.push(net.trunc()),
            Err(_) => report(Problem::InvalidCidr {
                field: format!("spec.loadBalancerSourceRanges[{i}]"),
                value: text.clone(),
            }),
        }
    }

    let internal_policy = parse_policy(
        "spec.internalTrafficPolicy",
        spec.internal_traffic_policy.as_deref(),
        &mut report,
    );
    let mut external_policy = parse_policy(
        "spec.externalTrafficPolicy",
        spec.external_traffic_policy.as_deref(),
        &mut report,
    );
    let externally_accessible = service_type != ServiceType::ClusterIp || !external_ips.is_empty();
    if !externally_accessible {
        external_policy = TrafficPolicy::Cluster;
    }

    let mut health_check_node_port = None;
    if service_type == ServiceType::LoadBalancer && external_policy == TrafficPolicy::Local {
        match spec.health_check_node_port {
            Some(p) if (1..=65535).contains(&p) => health_check_node_port = u16::try_from(p).ok(),
            other => report(Problem::InvalidPort {
                field: "spec.healthCheckNodePort".into(),
                value: other.unwrap_or(0).into(),
            }),
        }
    }

    let affinity_timeout = match spec.session_affinity.as_deref() {
        None | Some("None") => None,
        Some("ClientIP") => {
            let timeout = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds);
            match timeout {
                None => Some(DEFAULT_AFFINITY_TIMEOUT),
                Some(t) if (1..=MAX_AFFINITY_TIMEOUT).contains(&t) => u32::try_from(t).ok(),
                Some(t) => {
                    report(Problem::InvalidValue {
                        field: "spec.sessionAffinityConfig.clientIP.timeoutSeconds".into(),
                        value: t.to_string(),
                        detail: format!(
                            "expected 1-{MAX_AFFINITY_TIMEOUT}; using {DEFAULT_AFFINITY_TIMEOUT}"
                        ),
                    });
                    Some(DEFAULT_AFFINITY_TIMEOUT)
                }
            }
        }
        Some(other) => {
            report(Problem::InvalidValue {
                field: "spec.sessionAffinity".into(),
                value: other.into(),
                detail: "expected None or ClientIP; no affinity".into(),
            });
            None
        }
    };

    Some(ServiceInfo {
        service: ServiceRef::new(namespace, name),
        cluster_ips,
        external_ips,
        load_balancer_ips,
        source_ranges,
        ports,
        internal_policy,
        external_policy,
        health_check_node_port,
        affinity_timeout,
    })
}

fn parse_policy(
    field: &str,
    value: Option<&str>,
    report: &mut impl FnMut(Problem),
) -> TrafficPolicy {
    match value {
        None | Some("Cluster") => TrafficPolicy::Cluster,
        Some("Local") => TrafficPolicy::Local,
        Some(other) => {
            report(Problem::InvalidValue {
                field: field.into(),
                value: other.into(),
                detail: "expected Cluster or Local; using Cluster".into(),
            });
            TrafficPolicy::Cluster
        }
    }
}

/// Reads `spec.ports`, skipping (and reporting) each port that is invalid or collides with an
/// earlier one.
fn parse_ports(
    svc: &StoredService,
    service_type: ServiceType,
    report: &mut impl FnMut(Problem),
) -> Vec<PortInfo> {
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    let mut out: Vec<PortInfo> = Vec::with_capacity(ports.len());
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    let mut numbers: BTreeMap<(Protocol, u16), usize> = BTreeMap::new();
    let mut node_ports: BTreeSet<(Protocol, u16)> = BTreeSet::new();
    for (i, p) in ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let Some(protocol) = Protocol::from_k8s(p.protocol.as_deref()) else {
            report(Problem::UnknownProtocol {
                field: format!("{field}.protocol"),
                value: p.protocol.clone().unwrap_or_default(),
            });
            continue;
        };
        let Some(port) = valid_port(p.port) else {
            report(Problem::InvalidPort {
                field: format!("{field}.port"),
                value: p.port.into(),
            });
            continue;
        };
        let node_port = match (service_type, p.node_port) {
            (ServiceType::ClusterIp, _) | (_, None | Some(0)) => None,
            (_, Some(np)) => match valid_port(np) {
                Some(np) => Some(np),
                None => {
                    report(Problem::InvalidPort {
                        field: format!("{field}.nodePort"),
                        value: np.into(),
                    });
                    continue;
                }
            },
        };
        let name = p.name.as_deref().unwrap_or("");
        if let Some(&j) = names.get(name) {
            report(Problem::ConflictingPorts {
                field: field.clone(),
                other: format!("spec.ports[{j}]"),
                detail: format!("both are named {name:?}"),
            });
            continue;
        }
        if let Some(&j) = numbers.get(&(protocol, port)) {
            report(Problem::ConflictingPorts {
                field,
                other: format!("spec.ports[{j}]"),
                detail: format!("both are {protocol} {port}"),
            });
            continue;
        }
        if let Some(np) = node_port {
            if !node_ports.insert((protocol, np)) {
                report(Problem::ConflictingPorts {
                    field,
                    other: "an earlier port".into(),
                    detail: format!("both use nodePort {protocol} {np}"),
                });
                continue;
            }
        }
        names.insert(name, i);
        numbers.insert((protocol, port), i);
        out.push(PortInfo {
            name: name.to_owned(),
            protocol,
            port,
            node_port,
        });
    }
    out
}

/// A port number in 1..=65535.
pub(crate) fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|p| *p != 0)
}
