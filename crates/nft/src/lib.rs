//! The kernel backend: applies [`ruleset::Transaction`]s to nftables all or nothing, and reads
//! our tables back into a [`ruleset::Ruleset`] so the planner can diff against what the kernel
//! really holds.
//!
//! Two [`Backend`]s:
//! - [`Netlink`]: builds the whole transaction as one netlink batch with libnftnl and sends it
//!   with one `sendmsg`; maps every refused message back to its operation and Service.
//! - [`NftCommand`]: pipes the transaction's `nft` text to `nft -f -` (debugging, cross-checks).
//!
//! The translation between typed rules and kernel expressions ([`low`], [`encode`],
//! [`decode`], [`keys`]) is pure and tested without a kernel. This is the only crate with
//! `unsafe` code: the libnftnl calls and the socket. Each block says why it is sound.

mod backend;
mod batch;
mod command;
mod conntrack;
pub mod decode;
pub mod encode;
mod error;
mod ffi;
pub mod keys;
pub mod low;
mod netlink;
mod netns;
mod read;
mod socket;

pub use backend::Backend;
pub use command::NftCommand;
pub use conntrack::{delete_udp_flows, stale_udp_flows, ConntrackError, UdpFlowMatch, UdpState};
pub use error::{ApplyError, OpFailure, ReadError};
pub use netlink::Netlink;
pub use netns::in_netns;
pub use read::read_tables;

#[cfg(test)]
mod codec_tests;
