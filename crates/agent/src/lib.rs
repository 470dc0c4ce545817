//! The kube-nftproxy agent: configuration, sources of cluster state, and the commands of the
//! `kube-nftproxy` binary. The semantics live in the `model` and `ruleset` crates.

pub mod admin;
pub mod cleanup_kube_proxy;
pub mod config;
pub mod daemon;
pub mod debug;
pub mod engine;
pub mod health;
pub mod kube_proxy_config;
pub mod listen;
pub mod manifest_source;
pub mod manifests;
pub mod metrics;
pub mod render;
pub mod run;
pub mod runner;
pub mod source;
pub mod state;
pub mod sync;
