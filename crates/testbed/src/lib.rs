//! Test support for kube-nftproxy.
//!
//! * [`NetNs`]: a network namespace that deletes itself on drop (also when a
//!   test panics), with helpers to run commands and load or list nftables
//!   rulesets inside it.
//! * [`require_kernel`]: gate for tests that need root, `nft` and `ip`; [`installed`]: whether
//!   another program is.
//! * [`ScratchDir`]: a directory for a test's files, deleted on drop.
//! * [`normalize_nft_listing`]: makes `nft list ruleset` outputs comparable.
//! * [`TestCluster`] ([`cluster`]): node, pods and an external client in namespaces, for
//!   tests with real packets; [`echo`]: echo servers and a client to send them; [`load`]: a
//!   client that keeps connecting while a test changes the rules.

pub mod cluster;
pub mod echo;
mod error;
mod kernel;
pub mod load;
mod netns;
mod normalize;
mod scratch;

pub use cluster::{Pod, TestCluster};
pub use echo::{connect, ConnectError, EchoServer, Proto, Reply, Session};
pub use error::TestbedError;
pub use kernel::require_kernel;
pub use load::{Outcome, TrafficLoop};
pub use netns::NetNs;
pub use normalize::normalize_nft_listing;
pub use scratch::{installed, ScratchDir};
