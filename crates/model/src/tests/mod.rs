//! Tests of the model, one module per part of DESIGN.md §2.
//!
//! - `verdicts`: §2.3 (one test per row) and §2.4 (one test per bullet), full verdict matrices.
//! - `selection`: §2.1/§2.2 endpoint selection, topology, ports, dual stack.
//! - `health`: §2.5 health-check counts.
//! - `objects`: §2.1 skipped objects, LoadBalancer ingress and source ranges, incremental views.
//! - `bad_input`: §2.6 bad objects, reported as `ModelError`s without blocking anything else.
//! - `fuzz`: properties over arbitrary input.

mod bad_input;
mod fuzz;
mod health;
mod objects;
mod selection;
mod verdicts;

use crate::fixtures::{node_config, Slice, Svc};
use crate::{
    node_view, Action, ClusterView, Endpoint, EndpointSet, EntryPoint, IpFamily, NodeConfig,
    NodeServices, Protocol, ServicePortName, ServicePortView, ServiceRef, Source, Verdict,
};
use k8s_openapi::api::core::v1::Node;

/// Every entry point, in a fixed order.
const ENTRIES: [EntryPoint; 4] = [
    EntryPoint::ClusterIp,
    EntryPoint::NodePort,
    EntryPoint::LoadBalancer,
    EntryPoint::ExternalIp,
];

/// Every source, in a fixed order.
const SOURCES: [Source; 3] = [Source::Pod, Source::Node, Source::External];

/// The external entry points.
const EXTERNAL: [EntryPoint; 3] = [
    EntryPoint::NodePort,
    EntryPoint::LoadBalancer,
    EntryPoint::ExternalIp,
];

const DROP: Verdict = Verdict {
    action: Action::Drop,
    masquerade: false,
};

const REJECT: Verdict = Verdict {
    action: Action::Reject,
    masquerade: false,
};

/// Forward to the cluster set.
fn cluster(masquerade: bool) -> Verdict {
    Verdict {
        action: Action::Forward(EndpointSet::Cluster),
        masquerade,
    }
}

/// Forward to the local set.
fn local(masquerade: bool) -> Verdict {
    Verdict {
        action: Action::Forward(EndpointSet::Local),
        masquerade,
    }
}

/// The node view of these objects with the fixture node configuration and no Node object.
fn compute(services: Vec<Svc>, slices: Vec<Slice>) -> NodeServices {
    compute_with(&node_config(), services, slices, Vec::new())
}

/// The node view of these objects with this configuration and these Nodes.
fn compute_with(
    config: &NodeConfig,
    services: Vec<Svc>,
    slices: Vec<Slice>,
    nodes: Vec<Node>,
) -> NodeServices {
    let view = ClusterView::from_objects(
        services.into_iter().map(Svc::build),
        slices.into_iter().map(Slice::build),
        nodes,
        &config.node_name,
    );
    node_view(&view, config)
}

/// The name of a service-port.
fn spn(namespace: &str, name: &str, port_name: &str, protocol: Protocol) -> ServicePortName {
    ServicePortName {
        service: ServiceRef::new(namespace, name),
        port_name: port_name.into(),
        protocol,
    }
}

use crate::fixtures::port_view as port;

/// Endpoints as `ip:port` strings (IPv6 in brackets), in their order.
fn addrs(endpoints: &[Endpoint]) -> Vec<String> {
    endpoints
        .iter()
        .map(|e| std::net::SocketAddr::new(e.ip, e.port).to_string())
        .collect()
}

/// Asserts the verdict of every entry point × source combination against `expected`, reporting
/// every mismatch at once.
#[track_caller]
fn assert_verdicts(
    view: &ServicePortView,
    expected: impl Fn(EntryPoint, Source) -> Option<Verdict>,
) {
    let mut wrong = Vec::new();
    for entry in ENTRIES {
        for source in SOURCES {
            let want = expected(entry, source);
            let got = view.verdict(entry, source);
            if got != want {
                wrong.push(format!(
                    "{entry:?} from {source:?}: want {want:?}, got {got:?}"
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{}:\n  {}",
        view.label(),
        wrong.join("\n  ")
    );
}
