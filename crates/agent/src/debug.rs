//! `/debug/services`: what this node does for every service-port, spelled for people.
//!
//! Per family and service-port: its destinations, policies, endpoint sets, the verdict of every
//! entry point it has for every kind of source (the model's [`ServicePortView::verdict`], the
//! same table the ruleset is built from), and its Service's health check. Then the objects that
//! were skipped as invalid, with their errors.

use model::{
    Action, Endpoint, EndpointSet, EntryPoint, FamilyServices, HealthCheck, NodeServices,
    ServicePortView, Source, TrafficPolicy,
};
use serde_json::{json, Value};
use std::net::SocketAddr;

/// Every entry point, in the order they are listed.
const ENTRY_POINTS: [EntryPoint; 4] = [
    EntryPoint::ClusterIp,
    EntryPoint::NodePort,
    EntryPoint::LoadBalancer,
    EntryPoint::ExternalIp,
];

/// Every kind of source, in the order they are listed.
const SOURCES: [Source; 3] = [Source::Pod, Source::Node, Source::External];

fn entry_name(entry: EntryPoint) -> &'static str {
    match entry {
        EntryPoint::ClusterIp => "ClusterIP",
        EntryPoint::NodePort => "NodePort",
        EntryPoint::LoadBalancer => "LoadBalancer",
        EntryPoint::ExternalIp => "ExternalIP",
    }
}

fn source_name(source: Source) -> &'static str {
    match source {
        Source::Pod => "Pod",
        Source::Node => "Node",
        Source::External => "External",
    }
}

fn policy_name(policy: TrafficPolicy) -> &'static str {
    match policy {
        TrafficPolicy::Cluster => "Cluster",
        TrafficPolicy::Local => "Local",
    }
}

/// `ip:port`, with brackets around IPv6 addresses.
fn address(ep: &Endpoint) -> String {
    SocketAddr::new(ep.ip, ep.port).to_string()
}

fn endpoint_json(ep: &Endpoint) -> Value {
    json!({
        "address": address(ep),
        "node": ep.node_name.as_deref(),
        "local": ep.is_local,
        "ready": ep.ready,
        "serving": ep.serving,
        "terminating": ep.terminating,
    })
}

fn endpoint_set_json(endpoints: &[Endpoint]) -> Value {
    Value::Array(endpoints.iter().map(endpoint_json).collect())
}

/// The verdicts of every entry point the service-port has, for every source.
fn verdicts_json(view: &ServicePortView) -> Value {
    let mut out = Vec::new();
    for entry in ENTRY_POINTS {
        if !view.has_entry_point(entry) {
            continue;
        }
        for source in SOURCES {
            let Some(verdict) = view.verdict(entry, source) else {
                continue;
            };
            let mut v = json!({
                "entry": entry_name(entry),
                "source": source_name(source),
            });
            match verdict.action {
                Action::Forward(set) => {
                    let (name, endpoints) = match set {
                        EndpointSet::Cluster => ("cluster", &view.cluster_endpoints),
                        EndpointSet::Local => ("local", &view.local_endpoints),
                    };
                    v["action"] = json!("forward");
                    v["endpoint_set"] = json!(name);
                    v["endpoints"] = json!(endpoints.iter().map(address).collect::<Vec<_>>());
                }
                Action::Drop => v["action"] = json!("drop"),
                Action::Reject => v["action"] = json!("reject"),
            }
            v["masquerade"] = json!(verdict.masquerade);
            out.push(v);
        }
    }
    Value::Array(out)
}

fn service_port_json(view: &ServicePortView, health: Option<&HealthCheck>) -> Value {
    let mut v = json!({
        "service_port": view.label(),
        "service": view.name.service.to_string(),
        "port_name": view.name.port_name,
        "protocol": view.name.protocol.to_string(),
        "cluster_ip": view.cluster_ip,
        "port": view.port,
        "node_port": view.node_port,
        "external_ips": view.external_ips,
        "load_balancer_ips": view.load_balancer_ips,
        "internal_traffic_policy": policy_name(view.internal_policy),
        "external_traffic_policy": policy_name(view.external_policy),
        "session_affinity": match view.affinity_timeout {
            Some(timeout) => json!({"type": "ClientIP", "timeout_seconds": timeout}),
            None => json!({"type": "None"}),
        },
        "firewall_sources": view
            .firewall
            .as_ref()
            .map(|nets| nets.iter().map(ToString::to_string).collect::<Vec<_>>()),
        "topology_filtered": view.topology_filtered,
        "cluster_endpoints": endpoint_set_json(&view.cluster_endpoints),
        "local_endpoints": endpoint_set_json(&view.local_endpoints),
        "verdicts": verdicts_json(view),
    });
    if let Some(hc) = health {
        v["health_check"] = json!({
            "node_port": hc.node_port,
            "local_endpoints": hc.local_endpoints,
        });
    }
    v
}

fn family_json(fam: &FamilyServices) -> Value {
    let ports: Vec<Value> = fam
        .ports
        .values()
        .map(|view| service_port_json(view, fam.health_checks.get(&view.name.service)))
        .collect();
    json!({
        "node_ips": fam.node_ips,
        "node_port_ips": fam.node_port_ips,
        "cluster_cidrs": fam.cluster_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "masquerade_all": fam.masquerade_all,
        "service_ports": ports,
    })
}

/// Everything this node does, per family and service-port, and the objects skipped as invalid:
/// the body of `/debug/services`.
pub fn services_json(services: &NodeServices) -> Value {
    let skipped: Vec<Value> = services
        .errors
        .iter()
        .map(|e| {
            json!({
                "object": e.object.to_string(),
                "kind": e.object.kind.to_string(),
                "namespace": e.object.namespace,
                "name": e.object.name,
                "reason": e.reason(),
                "error": e.problem.to_string(),
            })
        })
        .collect();
    json!({
        "families": {
            "IPv4": family_json(&services.ipv4),
            "IPv6": family_json(&services.ipv6),
        },
        "skipped": skipped,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use model::fixtures::{ep, node_config, service, slice};
    use model::{node_view, ClusterView, IpFamily};

    /// A LoadBalancer Service with `externalTrafficPolicy: Local`: two ready endpoints and one
    /// serving-terminating endpoint on this node, one ready endpoint elsewhere.
    pub(crate) fn local_lb() -> NodeServices {
        let svc = service("shop", "web", "10.96.0.10")
            .type_("LoadBalancer")
            .node_port("http", "TCP", 80, 30080)
            .lb_ingress("203.0.113.7", None)
            .etp_local()
            .health_check_node_port(32000)
            .build();
        let sl = slice("shop", "web-1", "web", "IPv4")
            .port("http", "TCP", 8080)
            .endpoint(ep("10.0.1.1", "node-a"))
            .endpoint(ep("10.0.1.3", "node-a"))
            .endpoint(ep("10.0.1.2", "node-a").serving_terminating())
            .endpoint(ep("10.0.2.1", "node-b"))
            .build();
        let bad = service("shop", "broken", "not-an-ip")
            .port("http", "TCP", 80)
            .build();
        let view = ClusterView::from_objects([svc, bad], [sl], [], "node-a");
        node_view(&view, &node_config())
    }

    fn strings(v: &Value) -> Vec<&str> {
        v.as_array()
            .expect("an array")
            .iter()
            .map(|s| s.as_str().expect("a string"))
            .collect()
    }

    fn verdict<'a>(port: &'a Value, entry: &str, source: &str) -> &'a Value {
        port["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .find(|v| v["entry"] == entry && v["source"] == source)
            .unwrap_or_else(|| panic!("no verdict for {entry} from {source}: {port:#}"))
    }

    #[test]
    fn local_policy_service_is_spelled_out() {
        let services = local_lb();
        let json = services_json(&services);
        let ports = json["families"]["IPv4"]["service_ports"]
            .as_array()
            .expect("service ports");
        assert_eq!(ports.len(), 1, "{json:#}");
        let port = &ports[0];
        assert_eq!(port["service_port"], "shop/web:http");
        assert_eq!(port["protocol"], "TCP");
        assert_eq!(port["cluster_ip"], "10.96.0.10");
        assert_eq!(port["port"], 80);
        assert_eq!(port["node_port"], 30080);
        assert_eq!(strings(&port["load_balancer_ips"]), ["203.0.113.7"]);
        assert_eq!(port["internal_traffic_policy"], "Cluster");
        assert_eq!(port["external_traffic_policy"], "Local");

        // The local set: the two ready local endpoints (the terminating one is a fallback only).
        let local: Vec<&str> = port["local_endpoints"]
            .as_array()
            .expect("local endpoints")
            .iter()
            .map(|e| e["address"].as_str().expect("address"))
            .collect();
        assert_eq!(local, ["10.0.1.1:8080", "10.0.1.3:8080"]);
        assert!(port["local_endpoints"]
            .as_array()
            .expect("local endpoints")
            .iter()
            .all(|e| e["terminating"] == false && e["local"] == true));

        // From outside: the local set, the client's address kept.
        let external = verdict(port, "LoadBalancer", "External");
        assert_eq!(external["action"], "forward");
        assert_eq!(external["endpoint_set"], "local");
        assert_eq!(
            strings(&external["endpoints"]),
            ["10.0.1.1:8080", "10.0.1.3:8080"]
        );
        assert_eq!(external["masquerade"], false);

        // From a pod to the LB IP: short-circuited to the cluster set, not masqueraded.
        let pod = verdict(port, "LoadBalancer", "Pod");
        assert_eq!(pod["action"], "forward");
        assert_eq!(pod["endpoint_set"], "cluster");
        assert_eq!(
            strings(&pod["endpoints"]),
            ["10.0.1.1:8080", "10.0.1.3:8080", "10.0.2.1:8080"]
        );
        assert_eq!(pod["masquerade"], false);

        // From the node: cluster set, masqueraded.
        let node = verdict(port, "NodePort", "Node");
        assert_eq!(node["endpoint_set"], "cluster");
        assert_eq!(node["masquerade"], true);

        // Only the entry points it has: no externalIPs, so no ExternalIP verdicts; 3 entry
        // points × 3 sources.
        assert_eq!(port["verdicts"].as_array().expect("verdicts").len(), 9);
        assert!(port["verdicts"]
            .as_array()
            .expect("verdicts")
            .iter()
            .all(|v| v["entry"] != "ExternalIP"));

        // Health: distinct ready local endpoint IPs; the terminating one does not count.
        assert_eq!(port["health_check"]["node_port"], 32000);
        assert_eq!(port["health_check"]["local_endpoints"], 2);

        // The broken Service is listed as skipped, with its error.
        let skipped = json["skipped"].as_array().expect("skipped");
        assert_eq!(skipped.len(), 1, "{json:#}");
        assert_eq!(skipped[0]["object"], "Service shop/broken");
        assert_eq!(skipped[0]["reason"], "invalid_ip");
        assert!(skipped[0]["error"]
            .as_str()
            .expect("error")
            .contains("not-an-ip"));

        // Nothing in IPv6.
        assert_eq!(
            json["families"]["IPv6"]["service_ports"]
                .as_array()
                .map(Vec::len),
            Some(0)
        );
        assert!(services.family(IpFamily::V6).ports.is_empty());
    }

    #[test]
    fn verdicts_spell_drop_and_reject() {
        let itp = service("shop", "cache", "10.96.0.11")
            .port("", "TCP", 6379)
            .itp_local()
            .build();
        let empty = service("shop", "empty", "10.96.0.12")
            .port("", "UDP", 53)
            .build();
        let sl = slice("shop", "cache-1", "cache", "IPv4")
            .port("", "TCP", 6379)
            .endpoint(ep("10.0.2.9", "node-b"))
            .build();
        let view = ClusterView::from_objects([itp, empty], [sl], [], "node-a");
        let json = services_json(&node_view(&view, &node_config()));
        let ports = json["families"]["IPv4"]["service_ports"]
            .as_array()
            .expect("service ports");
        let find = |label: &str| {
            ports
                .iter()
                .find(|p| p["service_port"] == label)
                .unwrap_or_else(|| panic!("no {label} in {json:#}"))
        };
        let cache = find("shop/cache:6379");
        let v = verdict(cache, "ClusterIP", "Pod");
        assert_eq!(v["action"], "drop");
        assert!(v.get("endpoints").is_none());
        assert_eq!(cache["local_endpoints"].as_array().map(Vec::len), Some(0));
        assert!(cache.get("health_check").is_none());
        let empty = find("shop/empty:53");
        assert_eq!(empty["protocol"], "UDP");
        assert_eq!(verdict(empty, "ClusterIP", "External")["action"], "reject");
        assert_eq!(empty["verdicts"].as_array().map(Vec::len), Some(3));
    }
}
