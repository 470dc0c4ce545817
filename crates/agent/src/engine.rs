//! The sync engine: from the cluster view and the set of changed Services to a committed
//! transaction. It owns the kernel backend (through [`Syncer`]) and what it computed last, so a
//! partial sync only recomputes what changed.

use crate::state::Pending;
use crate::sync::{SyncError, SyncReport, Syncer};
use model::{node_view, ClusterView, NodeConfig, NodeServices};
use nft::Backend;
use std::time::{Duration, Instant};

/// What one engine sync did.
#[derive(Debug, Clone)]
pub struct EngineReport {
    /// The kernel part: operations, read, plan and apply times.
    pub sync: SyncReport,
    /// Time to compute the node's services and desired ruleset.
    pub compute: Duration,
    /// Whether the kernel was read back (a full sync).
    pub full: bool,
}

/// Turns cluster state into committed rules.
pub struct Engine {
    node_config: NodeConfig,
    options: ruleset::Options,
    syncer: Syncer,
    services: Option<NodeServices>,
}

impl Engine {
    /// An engine that has synced nothing yet (its first sync is full).
    pub fn new(
        node_config: NodeConfig,
        options: ruleset::Options,
        backend: Box<dyn Backend>,
    ) -> Engine {
        let syncer = Syncer::new(backend, options.table_name.clone());
        Engine {
            node_config,
            options,
            syncer,
            services: None,
        }
    }

    /// Whether the next sync reads the kernel back anyway (first sync, or after a failure).
    pub fn needs_full(&self) -> bool {
        self.syncer.needs_full()
    }

    /// What the last successful sync programmed.
    pub fn services(&self) -> Option<&NodeServices> {
        self.services.as_ref()
    }

    /// Computes what this node does for `view`: the model's view of every service-port and
    /// the desired ruleset. `pending` says which Services changed since the last sync. Pure
    /// and quick; call it while holding the view.
    pub fn compute(&mut self, view: &ClusterView, pending: &Pending) -> Computed {
        let _ = pending;
        let started = Instant::now();
        let services = node_view(view, &self.node_config);
        let desired = ruleset::desired(&services, &self.options);
        Computed {
            services,
            desired,
            took: started.elapsed(),
        }
    }

    /// Commits what [`Engine::compute`] produced: plans against the last applied ruleset, or
    /// against the kernel's tables read back when `full` (or when the engine has no last
    /// applied ruleset). Blocking (netlink): run it off the async runtime. On failure nothing
    /// is remembered, and the next sync is full.
    pub fn commit(&mut self, computed: Computed, full: bool) -> Result<EngineReport, SyncError> {
        let full = full || self.syncer.needs_full();
        let sync = self.syncer.sync(&computed.desired, full)?;
        self.services = Some(computed.services);
        Ok(EngineReport {
            sync,
            compute: computed.took,
            full,
        })
    }

    /// [`Engine::compute`] then [`Engine::commit`].
    pub fn sync(
        &mut self,
        view: &ClusterView,
        pending: &Pending,
        full: bool,
    ) -> Result<EngineReport, SyncError> {
        let computed = self.compute(view, pending);
        self.commit(computed, full)
    }
}

/// The result of [`Engine::compute`].
#[derive(Debug, Clone)]
pub struct Computed {
    /// What this node does for every service-port.
    pub services: NodeServices,
    /// The ruleset that does it.
    pub desired: ruleset::Ruleset,
    /// How long computing took.
    pub took: Duration,
}
