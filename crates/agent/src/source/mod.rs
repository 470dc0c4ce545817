//! The API server as a source of cluster state: kube-runtime watchers of Services,
//! EndpointSlices and this node's Node ([`kube`]), and the pure translation of their events into
//! [`Change`](crate::state::Change)s ([`adapter`]).

pub mod adapter;
pub mod kube;

pub use self::adapter::{WatchAdapter, Watched};
pub use self::kube::{client, run, ErrorHook, SourceError};
