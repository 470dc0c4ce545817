//! The desired nftables ruleset of one node as typed data, rendered as `nft` text, and the
//! planner that finds the smallest transaction from what the kernel has to what it should have.
//!
//! - [`desired`] turns [`model::NodeServices`] into a [`Ruleset`]: one table per family
//!   (`ip kube-nftproxy`, `ip6 kube-nftproxy`), laid out as `docs/architecture.md` describes.
//! - [`render`] prints a ruleset as `nft list ruleset` would (and `nft -f` accepts).
//! - [`plan`] compares two rulesets and returns a [`Transaction`]: ordered add/flush/delete
//!   operations, as few as the difference needs. [`Ruleset::apply`] carries one out in memory,
//!   with the kernel's referential checks, so the planner is tested without a kernel.
//! - [`stages_from_empty`] plans the build of our tables from nothing in stages of whole
//!   Services, one stage at a time (the kernel's cost of one batch grows faster than the
//!   batch).
//!
//! Pure: no I/O, no kernel. The `nft` crate sends transactions to the kernel.

mod apply;
mod desired;
mod format;
mod incremental;
mod names;
mod parts;
mod plan;
mod render;
mod rule;
mod staged;
mod transaction;
mod types;

#[cfg(test)]
mod tests;

pub use apply::ApplyError;
pub use desired::{desired, desired_table, Options};
pub use incremental::DesiredState;
pub use names::{chain_name, ChainKind};
pub use parts::Parts;
pub use plan::plan;
pub use render::{render, render_table};
pub use rule::{Expr, Rule};
#[cfg(test)]
pub use staged::split_by_service;
pub use staged::{stages_from_empty, StagesFromEmpty};
pub use transaction::{Op, Transaction};
pub use types::{
    BaseChain, Chain, ChainType, ElemKey, ElemTarget, ElemValue, Family, Hook, KeyPart, KeyType,
    Ruleset, Set, SetSpec, SharedStr, Table, TableId, Verdict,
};
