//! The semantic core of kube-nftproxy: from Kubernetes Services, EndpointSlices and this node's
//! Node object to what this node must do for every service-port, per IP family.
//!
//! Everything here is a plain function over plain data: no kernel, no API server, no async.
//! The rules implemented are those of `DESIGN.md` §2 (which follow upstream kube-proxy's nftables
//! mode); each module says which part it implements.
//!
//! The entry point is [`node_view`]: a [`ClusterView`] (the objects) and a [`NodeConfig`] (who this
//! node is) give [`NodeServices`]: per family, every service-port with its endpoint sets, its
//! verdicts for every kind of traffic, and the health-check counts. Bad objects never stop the
//! computation: they are skipped and reported as [`ModelError`]s that name the object.

mod config;
mod endpoints;
mod error;
#[cfg(any(test, feature = "fixtures"))]
pub mod fixtures;
mod ip;
mod objects;
mod policy;
mod select;
mod service;
mod shared_str;
mod stored_service;
mod topology;
mod view;

#[cfg(test)]
mod tests;

pub use config::{NodeConfig, NodePortAddresses};
pub use endpoints::{Endpoint, EndpointHints, NodeName};
pub use error::{ModelError, Problem};
pub use ip::parse_ip_sloppy;
pub use objects::{IpFamily, ObjectKind, ObjectRef, Protocol, ServicePortName, ServiceRef};
pub use policy::{
    Action, EndpointSet, EntryPoint, ExternalDispatch, Source, TrafficPolicy, Verdict,
};
pub use shared_str::SharedStr;
pub use view::{
    node_view, update_node_view, ClusterView, FamilyServices, HealthCheck, NeedsFull, NodeServices,
    ServicePortView, ViewDiff,
};
