//! The sync engine: from the cluster view and the set of changed Services to a committed
//! transaction. It keeps what it computed and committed last, so a partial sync recomputes only
//! the changed Services (`model::update_node_view`, `ruleset::DesiredState::update`) and sends
//! only their changes, without reading the kernel. A full sync (the first one, after any
//! failure, when the Node or the configuration changed, when Services conflict, and when the
//! runner asks) recomputes everything and plans against the kernel's tables read back; it does
//! not keep the model's view of the node through the commit (the sync's memory peak), but
//! computes it again from the same cluster view afterwards ([`Engine::restore`]).

use crate::state::Pending;
use crate::sync::{sync_once, SyncError, SyncReport, STAGE_SERVICES};
use model::{node_view, update_node_view, ClusterView, NodeConfig, NodeServices, ServicePortView};
use nft::{ApplyError, Backend};
use ruleset::{DesiredState, Transaction};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What one engine sync did.
#[derive(Debug, Clone)]
pub struct EngineReport {
    /// The kernel part: operations, read, plan and apply times.
    pub sync: SyncReport,
    /// Time to compute the node's services and the change of the desired ruleset.
    pub compute: Duration,
    /// Whether the kernel was read back (a full sync).
    pub full: bool,
    /// Whether only the changed Services were recomputed.
    pub incremental: bool,
}

/// What the engine computed and has not committed yet.
#[derive(Debug)]
pub struct Computed {
    /// The transaction of a partial sync (None: plan against the kernel's tables).
    partial: Option<Transaction>,
    /// How long computing took.
    pub took: Duration,
}

impl Computed {
    /// Whether only the changed Services were recomputed.
    pub fn incremental(&self) -> bool {
        self.partial.is_some()
    }
}

/// What the engine computed last: the model's view and the desired ruleset, with per-element
/// contribution counts.
struct Cache {
    /// Shared with the daemon (health checks, the debug view) until its next computation,
    /// which updates it in place when nobody else holds it any more (see [`Engine::services`]).
    /// None from a full computation until [`Engine::restore`]: at 10 000 Services it is about
    /// 9 MB, and the commit of a full sync (its stages' operations and netlink batches, or the
    /// tables read back) is when the process needs the most memory.
    services: Option<Arc<NodeServices>>,
    desired: DesiredState,
}

/// Turns cluster state into committed rules.
pub struct Engine {
    node_config: NodeConfig,
    options: ruleset::Options,
    backend: Box<dyn Backend>,
    /// Services per transaction when a full sync finds empty tables.
    stage_services: usize,
    /// Present while the kernel holds what it describes (after a successful commit).
    cache: Option<Cache>,
}

impl Engine {
    /// An engine that has synced nothing yet (its first sync is full).
    pub fn new(
        node_config: NodeConfig,
        options: ruleset::Options,
        backend: Box<dyn Backend>,
    ) -> Engine {
        Engine {
            node_config,
            options,
            backend,
            stage_services: STAGE_SERVICES,
            cache: None,
        }
    }

    /// The same engine with another number of Services per transaction for a sync from empty
    /// tables ([`STAGE_SERVICES`] by default; 0: one transaction whatever its size).
    pub fn with_stage_services(mut self, stage_services: usize) -> Engine {
        self.stage_services = stage_services;
        self
    }

    /// Whether the next sync recomputes everything and reads the kernel back anyway (first
    /// sync, or after a failure).
    pub fn needs_full(&self) -> bool {
        self.cache.is_none()
    }

    /// What the last computation found (the model's view of every service-port), once
    /// committed and restored (see [`Engine::restore`]). It is shared, not copied (at 10 000
    /// Services it is about 9 MB): drop it before the next [`Engine::compute`], or that
    /// computation copies it to update it.
    pub fn services(&self) -> Option<Arc<NodeServices>> {
        self.cache.as_ref().and_then(|c| c.services.clone())
    }

    /// After a full computation has been committed: computes the model's view of the node
    /// again, from `view`, which must be the cluster view [`Engine::compute`] saw (the daemon
    /// holds back changes meanwhile, [`crate::state::Shared::with_view_then_hold`]). Nothing
    /// to do after a partial one, or when the commit failed (the next sync is full).
    pub fn restore(&mut self, view: &ClusterView) {
        if let Some(cache) = self.cache.as_mut().filter(|c| c.services.is_none()) {
            cache.services = Some(Arc::new(node_view(view, &self.node_config)));
        }
    }

    /// Computes the change: only the `pending` Services when the engine knows what the kernel
    /// holds and nothing node-wide changed; everything otherwise. Pure; call it while holding
    /// the view.
    pub fn compute(&mut self, view: &ClusterView, pending: &Pending) -> Computed {
        let started = Instant::now();
        let partial = match self.cache.as_mut() {
            Some(cache) if !pending.all => partial(view, &self.node_config, cache, pending),
            _ => None,
        };
        if partial.is_none() {
            // The old cache goes first: both at once would double the peak.
            self.cache = None;
            let services = node_view(view, &self.node_config);
            let desired = DesiredState::from_services(services, &self.options);
            self.cache = Some(Cache {
                services: None,
                desired,
            });
        }
        Computed {
            partial,
            took: started.elapsed(),
        }
    }

    /// Commits what [`Engine::compute`] produced: the partial transaction as is, or (for a
    /// full sync, when `full` asks for one, or when the outcome of the partial one is unknown)
    /// a plan against the kernel's tables read back. Blocking (netlink): run it off the async
    /// runtime. On failure the engine forgets what it knew, so the next sync is full.
    pub fn commit(&mut self, computed: Computed, full: bool) -> Result<EngineReport, SyncError> {
        let Some(cache) = &self.cache else {
            return Err(SyncError::Apply {
                operations: 0,
                source: ApplyError::OutcomeUnknown {
                    reason: "nothing was computed".into(),
                },
            });
        };
        let incremental = computed.partial.is_some();
        let result = match computed.partial {
            Some(txn) if !full => {
                let started = Instant::now();
                match self.backend.apply(&txn) {
                    Ok(()) => Ok((
                        SyncReport {
                            backend: self.backend.name(),
                            operations: txn.len(),
                            services: txn.services(),
                            read: Duration::ZERO,
                            plan: Duration::ZERO,
                            apply: started.elapsed(),
                            transaction_sizes: vec![txn.len()],
                        },
                        false,
                    )),
                    Err(ApplyError::OutcomeUnknown { reason }) => {
                        tracing::warn!(%reason, "outcome of the transaction unknown; reading the tables again");
                        let table = &self.options.table_name;
                        sync_once(
                            self.backend.as_ref(),
                            table,
                            cache.desired.ruleset(),
                            self.stage_services,
                        )
                        .map(|r| (r, true))
                    }
                    Err(source) => Err(SyncError::Apply {
                        operations: txn.len(),
                        source,
                    }),
                }
            }
            _ => sync_once(
                self.backend.as_ref(),
                &self.options.table_name,
                cache.desired.ruleset(),
                self.stage_services,
            )
            .map(|r| (r, true)),
        };
        match result {
            Ok((sync, full)) => Ok(EngineReport {
                sync,
                compute: computed.took,
                full,
                incremental,
            }),
            Err(e) => {
                self.cache = None;
                Err(e)
            }
        }
    }

    /// [`Engine::compute`], [`Engine::commit`], then [`Engine::restore`].
    pub fn sync(
        &mut self,
        view: &ClusterView,
        pending: &Pending,
        full: bool,
    ) -> Result<EngineReport, SyncError> {
        let computed = self.compute(view, pending);
        let report = self.commit(computed, full)?;
        self.restore(view);
        Ok(report)
    }
}

/// The partial transaction for the pending Services, updating the cache; None when only a full
/// computation gives the right answer (the cache is then stale and is replaced).
fn partial(
    view: &ClusterView,
    config: &NodeConfig,
    cache: &mut Cache,
    pending: &Pending,
) -> Option<Transaction> {
    let dirty = &pending.services;
    let views = |services: &NodeServices| -> Vec<ServicePortView> {
        [&services.ipv4, &services.ipv6]
            .into_iter()
            .flat_map(|f| dirty.iter().flat_map(move |svc| f.service_ports(svc)))
            .cloned()
            .collect()
    };
    // Not restored after the last full computation: only a full one gives the right answer.
    let services = cache.services.as_mut()?;
    let old = views(services);
    update_node_view(view, config, Arc::make_mut(services), dirty).ok()?;
    let new = views(services);
    let old_refs: Vec<&ServicePortView> = old.iter().collect();
    let new_refs: Vec<&ServicePortView> = new.iter().collect();
    Some(cache.desired.update(services, &old_refs, &new_refs))
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::fixtures::{ep, node_config, service, slice};
    use nft::ReadError;
    use ruleset::Ruleset;
    use std::collections::BTreeSet;
    use std::sync::{Arc, Mutex};

    /// A kernel in memory: applies with the planner's own referential checks, counts reads,
    /// and refuses the next transaction when asked.
    #[derive(Default)]
    struct MemoryKernel {
        /// (ruleset, reads, refuse the next apply, operations applied)
        state: Mutex<(Ruleset, usize, bool, usize)>,
    }

    struct Shared(Arc<MemoryKernel>);

    impl Backend for Shared {
        fn name(&self) -> &'static str {
            "memory"
        }
        fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
            let mut s = self.0.state.lock().expect("lock");
            if std::mem::take(&mut s.2) {
                return Err(ApplyError::Rejected {
                    failures: Vec::new(),
                });
            }
            s.3 += txn.len();
            s.0.apply(txn).map_err(|e| ApplyError::Rejected {
                failures: vec![nft::OpFailure {
                    op: "apply".into(),
                    service: None,
                    error: e.to_string(),
                }],
            })
        }
        fn read(&self, _table: &str) -> Result<Ruleset, ReadError> {
            let mut s = self.0.state.lock().expect("lock");
            s.1 += 1;
            Ok(s.0.clone())
        }
    }

    fn view(endpoint: &str) -> ClusterView {
        ClusterView::from_objects(
            [
                service("default", "web", "10.96.0.10")
                    .port("http", "TCP", 80)
                    .build(),
                service("default", "api", "10.96.0.11")
                    .port("http", "TCP", 80)
                    .build(),
            ],
            [
                slice("default", "web-1", "web", "IPv4")
                    .port("http", "TCP", 8080)
                    .endpoint(ep(endpoint, "node-a"))
                    .build(),
                slice("default", "api-1", "api", "IPv4")
                    .port("http", "TCP", 8080)
                    .endpoint(ep("10.244.2.9", "node-b"))
                    .build(),
            ],
            None,
            "node-a",
        )
    }

    fn pending(services: &[&str]) -> Pending {
        Pending {
            services: services
                .iter()
                .map(|s| model::ServiceRef::new("default", s))
                .collect::<BTreeSet<_>>(),
            ..Pending::default()
        }
    }

    #[test]
    fn partial_syncs_send_only_the_change_and_failures_force_a_full_one() {
        let kernel = Arc::new(MemoryKernel::default());
        let reads = || kernel.state.lock().expect("lock").1;
        let options = ruleset::Options::default();
        let mut engine = Engine::new(
            node_config(),
            options.clone(),
            Box::new(Shared(kernel.clone())),
        );
        assert!(engine.needs_full());

        let first = view("10.244.1.5");
        let report = engine
            .sync(&first, &Pending::default(), false)
            .expect("first");
        assert!(report.full && !report.incremental && report.sync.operations > 0);
        assert_eq!(reads(), 1, "the first sync reads the kernel");

        // One endpoint of web changes: only web is recomputed, nothing is read back.
        let second = view("10.244.1.6");
        let report = engine
            .sync(&second, &pending(&["web"]), false)
            .expect("partial");
        assert!(report.incremental && !report.full);
        assert_eq!(reads(), 1, "a partial sync does not read the kernel");
        assert_eq!(report.sync.services, vec!["default/web".to_owned()]);
        let want = ruleset::desired(&node_view(&second, &node_config()), &options);
        assert!(kernel.state.lock().expect("lock").0 == want);

        // Nothing changed: nothing sent.
        let report = engine
            .sync(&second, &pending(&["api"]), false)
            .expect("idle");
        assert_eq!(report.sync.operations, 0);

        // A refused transaction: the next sync is full and repairs.
        kernel.state.lock().expect("lock").2 = true;
        let third = view("10.244.1.7");
        assert!(engine.sync(&third, &pending(&["web"]), false).is_err());
        assert!(engine.needs_full());
        let report = engine
            .sync(&third, &pending(&["web"]), false)
            .expect("retry");
        assert!(report.full);
        assert_eq!(reads(), 2);
        let want = ruleset::desired(&node_view(&third, &node_config()), &options);
        assert!(kernel.state.lock().expect("lock").0 == want);
    }

    /// What [`FaultyNth`] does to the `n`th transaction.
    #[derive(Clone, Copy)]
    enum Fault {
        /// Refuses it (the kernel does not get it).
        Refuse,
        /// Applies it, then reports its outcome as unknown.
        Unknown,
    }

    /// Passes transactions to the kernel, except that the `n`th (from 1) meets `fault`.
    struct FaultyNth {
        kernel: Shared,
        n: usize,
        fault: Fault,
        seen: std::sync::atomic::AtomicUsize,
    }

    impl FaultyNth {
        fn new(kernel: &Arc<MemoryKernel>, n: usize, fault: Fault) -> FaultyNth {
            FaultyNth {
                kernel: Shared(kernel.clone()),
                n,
                fault,
                seen: std::sync::atomic::AtomicUsize::new(0),
            }
        }
    }

    impl Backend for FaultyNth {
        fn name(&self) -> &'static str {
            "memory"
        }
        fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
            let seen = self.seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
            match (seen == self.n, self.fault) {
                (true, Fault::Refuse) => Err(ApplyError::Rejected {
                    failures: Vec::new(),
                }),
                (true, Fault::Unknown) => {
                    self.kernel.apply(txn)?;
                    Err(ApplyError::OutcomeUnknown {
                        reason: "test".into(),
                    })
                }
                (false, _) => self.kernel.apply(txn),
            }
        }
        fn read(&self, table: &str) -> Result<Ruleset, ReadError> {
            self.kernel.read(table)
        }
    }

    #[test]
    fn a_sync_from_empty_tables_goes_in_stages_of_whole_services() {
        let kernel = Arc::new(MemoryKernel::default());
        let options = ruleset::Options::default();
        let mut engine = Engine::new(
            node_config(),
            options.clone(),
            Box::new(Shared(kernel.clone())),
        )
        .with_stage_services(1);
        let first = view("10.244.1.5");
        let report = engine
            .sync(&first, &Pending::default(), false)
            .expect("first");
        // The shared parts, then default/api, then default/web with the ClusterIPs.
        assert_eq!(report.sync.transactions(), 3);
        assert!(report.sync.to_string().ends_with(" in 3 transactions"));
        let want = ruleset::desired(&node_view(&first, &node_config()), &options);
        assert!(kernel.state.lock().expect("lock").0 == want);

        // Over existing tables (a restart): one transaction, here an empty one.
        let mut restarted = Engine::new(
            node_config(),
            options.clone(),
            Box::new(Shared(kernel.clone())),
        )
        .with_stage_services(1);
        let report = restarted
            .sync(&first, &Pending::default(), false)
            .expect("restart");
        assert_eq!((report.sync.operations, report.sync.transactions()), (0, 1));

        // A change that recreates nothing is one transaction too.
        let all = Pending {
            all: true,
            ..Pending::default()
        };
        let report = restarted
            .sync(&view("10.244.1.6"), &all, true)
            .expect("full sync");
        assert_eq!(report.sync.transactions(), 1);
        assert!(report.sync.operations > 0);
    }

    #[test]
    fn a_stage_of_unknown_outcome_is_read_back_and_the_rest_planned() {
        let kernel = Arc::new(MemoryKernel::default());
        let options = ruleset::Options::default();
        let backend = FaultyNth::new(&kernel, 2, Fault::Unknown);
        let mut engine =
            Engine::new(node_config(), options.clone(), Box::new(backend)).with_stage_services(1);
        let first = view("10.244.1.5");
        let report = engine
            .sync(&first, &Pending::default(), false)
            .expect("read back after the unknown stage, then the rest");
        assert_eq!(kernel.state.lock().expect("lock").1, 2, "read twice");
        assert_eq!(report.sync.transactions(), 1, "the rest in one transaction");
        assert_eq!(report.sync.services, vec!["default/web".to_owned()]);
        let want = ruleset::desired(&node_view(&first, &node_config()), &options);
        assert!(kernel.state.lock().expect("lock").0 == want);
    }

    #[test]
    fn a_refused_stage_keeps_the_stages_before_it_and_the_next_sync_finishes() {
        let kernel = Arc::new(MemoryKernel::default());
        let options = ruleset::Options::default();
        let backend = FaultyNth::new(&kernel, 2, Fault::Refuse);
        let mut engine =
            Engine::new(node_config(), options.clone(), Box::new(backend)).with_stage_services(1);
        let first = view("10.244.1.5");
        let error = engine
            .sync(&first, &Pending::default(), false)
            .expect_err("stage 2 refused");
        let message = error.to_string();
        assert!(message.contains("stage 2 of 3"), "{message}");
        assert!(engine.needs_full());
        let partial = kernel.state.lock().expect("lock").0.clone();
        assert!(!partial.tables.is_empty(), "stage 1 stays");
        let report = engine
            .sync(&first, &Pending::default(), false)
            .expect("the next sync");
        assert_eq!(report.sync.transactions(), 1, "over existing tables");
        let want = ruleset::desired(&node_view(&first, &node_config()), &options);
        assert!(kernel.state.lock().expect("lock").0 == want);
    }

    #[test]
    fn a_node_wide_change_recomputes_everything() {
        let kernel = Arc::new(MemoryKernel::default());
        let mut engine = Engine::new(
            node_config(),
            ruleset::Options::default(),
            Box::new(Shared(kernel)),
        );
        engine
            .sync(&view("10.244.1.5"), &Pending::default(), false)
            .expect("first");
        let all = Pending {
            all: true,
            ..Pending::default()
        };
        let computed = engine.compute(&view("10.244.1.5"), &all);
        assert!(!computed.incremental());
    }

    #[test]
    fn a_full_computation_keeps_no_services_through_its_commit_and_restores_them() {
        let kernel = Arc::new(MemoryKernel::default());
        let mut engine = Engine::new(
            node_config(),
            ruleset::Options::default(),
            Box::new(Shared(kernel.clone())),
        );
        let first = view("10.244.1.5");
        let computed = engine.compute(&first, &Pending::default());
        assert!(!computed.incremental());
        assert!(engine.services().is_none(), "not held through the commit");
        engine.commit(computed, false).expect("commit");
        assert!(engine.services().is_none());
        engine.restore(&first);
        let services = engine.services().expect("restored");
        assert!(*services == node_view(&first, &node_config()));
        drop(services);

        // Not restored: a partial computation is not possible, the next one is full.
        let second = view("10.244.1.6");
        let all = Pending {
            all: true,
            ..Pending::default()
        };
        let computed = engine.compute(&second, &all);
        assert!(!computed.incremental());
        engine.commit(computed, false).expect("commit");
        let computed = engine.compute(&second, &pending(&["web"]));
        assert!(!computed.incremental());
        engine.commit(computed, false).expect("commit");
        engine.restore(&second);

        // Restored: partial; restoring again changes nothing.
        let third = view("10.244.1.7");
        let computed = engine.compute(&third, &pending(&["web"]));
        assert!(computed.incremental());
        engine.commit(computed, false).expect("partial");
        engine.restore(&third);
        let services = engine.services().expect("kept");
        assert!(*services == node_view(&third, &node_config()));
        let want = ruleset::desired(&services, &ruleset::Options::default());
        assert!(kernel.state.lock().expect("lock").0 == want);

        // A failed commit leaves nothing to restore.
        drop(services);
        kernel.state.lock().expect("lock").2 = true;
        let computed = engine.compute(&view("10.244.1.8"), &pending(&["web"]));
        assert!(engine.commit(computed, false).is_err());
        engine.restore(&view("10.244.1.8"));
        assert!(engine.services().is_none() && engine.needs_full());
    }
}
