//! The kube-nftproxy agent: configuration, sources of cluster state, and the commands of the
//! `kube-nftproxy` binary. The semantics live in the `model` and `ruleset` crates.

pub mod config;
pub mod manifests;
pub mod render;
pub mod run;
pub mod state;
pub mod sync;
