//! One sync against the kernel: read what our tables hold, plan the smallest transaction to
//! the desired ruleset, apply it. Also `cleanup`: delete our tables and nothing else.

use nft::{ApplyError, Backend};
use ruleset::{plan, Op, Ruleset, Transaction};
use std::fmt;
use std::time::{Duration, Instant};

/// What one sync did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncReport {
    /// The backend used.
    pub backend: &'static str,
    /// Operations applied (0 when the kernel already held the desired ruleset).
    pub operations: usize,
    /// The Services the operations touched.
    pub services: Vec<String>,
    /// Time to read the kernel's tables.
    pub read: Duration,
    /// Time to plan.
    pub plan: Duration,
    /// Time to apply.
    pub apply: Duration,
}

impl fmt::Display for SyncReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.read + self.plan + self.apply;
        write!(
            f,
            "applied {} operations ({} Services changed) in {:.1} ms with {} \
             (read {:.1} ms, plan {:.1} ms, apply {:.1} ms)",
            self.operations,
            self.services.len(),
            ms(total),
            self.backend,
            ms(self.read),
            ms(self.plan),
            ms(self.apply)
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Why a sync failed.
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// Our tables could not be read.
    #[error("reading the kernel's {table} tables: {source}")]
    Read {
        /// The table name.
        table: String,
        /// The cause.
        #[source]
        source: nft::ReadError,
    },
    /// The transaction was refused, or its outcome is unknown even after reading again.
    #[error("applying {operations} operations: {source}")]
    Apply {
        /// Operations in the transaction.
        operations: usize,
        /// The cause (names the Services of refused operations).
        #[source]
        source: ApplyError,
    },
}

/// Brings the kernel's `table` tables to `desired`: reads them, plans, applies. When the outcome
/// of the transaction is unknown (a lost acknowledgement), reads and plans once more, so a
/// transaction that did commit is not applied twice.
pub fn sync_once(
    backend: &dyn Backend,
    table: &str,
    desired: &Ruleset,
) -> Result<SyncReport, SyncError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        let started = Instant::now();
        let current = backend.read(table).map_err(|source| SyncError::Read {
            table: table.to_owned(),
            source,
        })?;
        let read = started.elapsed();
        let started = Instant::now();
        let txn = plan(&current, desired);
        let planned = started.elapsed();
        let started = Instant::now();
        match backend.apply(&txn) {
            Ok(()) => {
                return Ok(SyncReport {
                    backend: backend.name(),
                    operations: txn.len(),
                    services: txn.services(),
                    read,
                    plan: planned,
                    apply: started.elapsed(),
                })
            }
            Err(ApplyError::OutcomeUnknown { reason }) if attempts < 2 => {
                tracing::warn!(%reason, "outcome of the transaction unknown; reading the tables again");
            }
            Err(source) => {
                return Err(SyncError::Apply {
                    operations: txn.len(),
                    source,
                })
            }
        }
    }
}

/// Deletes our `table` tables (every family that has one) in one transaction; returns the
/// tables deleted. Tables of other names are never touched.
pub fn cleanup(backend: &dyn Backend, table: &str) -> Result<Vec<String>, SyncError> {
    let current = backend.read(table).map_err(|source| SyncError::Read {
        table: table.to_owned(),
        source,
    })?;
    let txn = Transaction {
        ops: current
            .tables
            .keys()
            .map(|id| Op::DeleteTable { table: id.clone() })
            .collect(),
    };
    backend.apply(&txn).map_err(|source| SyncError::Apply {
        operations: txn.len(),
        source,
    })?;
    Ok(current.tables.keys().map(ToString::to_string).collect())
}

/// Keeps the last applied ruleset between syncs: a partial sync plans against it (no kernel
/// read); a full sync (the first, after any failure, and when asked) reads the kernel back.
pub struct Syncer {
    backend: Box<dyn Backend>,
    table: String,
    last_applied: Option<Ruleset>,
}

impl Syncer {
    /// A syncer that has applied nothing yet (its first sync is full).
    pub fn new(backend: Box<dyn Backend>, table: impl Into<String>) -> Syncer {
        Syncer {
            backend,
            table: table.into(),
            last_applied: None,
        }
    }

    /// Whether the next sync must read the kernel back.
    pub fn needs_full(&self) -> bool {
        self.last_applied.is_none()
    }

    /// Brings the kernel to `desired`. `full` reads the kernel's tables back first (as does the
    /// first sync and the one after a failure); otherwise the plan is made against the ruleset
    /// applied last. On failure the next sync is full.
    pub fn sync(&mut self, desired: &Ruleset, full: bool) -> Result<SyncReport, SyncError> {
        let result = match self.last_applied.take() {
            Some(last) if !full => self.partial(&last, desired),
            _ => sync_once(self.backend.as_ref(), &self.table, desired),
        };
        if result.is_ok() {
            self.last_applied = Some(desired.clone());
        }
        result
    }

    fn partial(&self, last: &Ruleset, desired: &Ruleset) -> Result<SyncReport, SyncError> {
        let started = Instant::now();
        let txn = plan(last, desired);
        let planned = started.elapsed();
        let started = Instant::now();
        match self.backend.apply(&txn) {
            Ok(()) => Ok(SyncReport {
                backend: self.backend.name(),
                operations: txn.len(),
                services: txn.services(),
                read: Duration::ZERO,
                plan: planned,
                apply: started.elapsed(),
            }),
            // Whether it committed or not, the kernel's state is what counts now: read it back.
            Err(ApplyError::OutcomeUnknown { reason }) => {
                tracing::warn!(%reason, "outcome of the transaction unknown; reading the tables again");
                sync_once(self.backend.as_ref(), &self.table, desired)
            }
            Err(source) => Err(SyncError::Apply {
                operations: txn.len(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nft::ReadError;
    use ruleset::{Family, Table, TableId};
    use std::sync::Mutex;

    /// A kernel in memory: applies with the planner's own referential checks, counts reads,
    /// and refuses the next transaction when asked.
    #[derive(Default)]
    struct MemoryKernel {
        state: Mutex<(Ruleset, usize, bool)>,
    }

    impl Backend for MemoryKernel {
        fn name(&self) -> &'static str {
            "memory"
        }
        fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
            let mut s = self.state.lock().expect("lock");
            if std::mem::take(&mut s.2) {
                return Err(ApplyError::Rejected {
                    failures: Vec::new(),
                });
            }
            s.0.apply(txn).map_err(|e| ApplyError::Rejected {
                failures: vec![nft::OpFailure {
                    op: "apply".into(),
                    service: None,
                    error: e.to_string(),
                }],
            })
        }
        fn read(&self, _table: &str) -> Result<Ruleset, ReadError> {
            let mut s = self.state.lock().expect("lock");
            s.1 += 1;
            Ok(s.0.clone())
        }
    }

    /// A table `t` with one regular chain of this name.
    fn ruleset(chain: &str) -> Ruleset {
        let mut table = Table::default();
        table
            .chains
            .insert(chain.to_owned(), ruleset::Chain::default());
        let mut r = Ruleset::default();
        r.tables.insert(
            TableId {
                family: Family::Ip,
                name: "t".into(),
            },
            table,
        );
        r
    }

    #[test]
    fn partial_syncs_plan_against_the_last_applied_ruleset_and_failures_force_a_full_one() {
        let kernel = std::sync::Arc::new(MemoryKernel::default());
        struct Shared(std::sync::Arc<MemoryKernel>);
        impl Backend for Shared {
            fn name(&self) -> &'static str {
                "memory"
            }
            fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
                self.0.apply(txn)
            }
            fn read(&self, table: &str) -> Result<Ruleset, ReadError> {
                self.0.read(table)
            }
        }
        let reads = || kernel.state.lock().expect("lock").1;
        let mut syncer = Syncer::new(Box::new(Shared(kernel.clone())), "t");
        assert!(syncer.needs_full());

        let a = ruleset("a");
        let report = syncer.sync(&a, false).expect("first");
        assert!(report.operations > 0);
        assert_eq!(reads(), 1, "the first sync reads the kernel");

        let report = syncer.sync(&a, false).expect("idle");
        assert_eq!(report.operations, 0);
        assert_eq!(reads(), 1, "a partial sync does not read the kernel");

        kernel.state.lock().expect("lock").2 = true;
        assert!(syncer.sync(&ruleset("b"), false).is_err());
        assert!(syncer.needs_full(), "after a failure the next sync is full");
        syncer.sync(&ruleset("b"), false).expect("retry");
        assert_eq!(reads(), 2);
        assert_eq!(kernel.state.lock().expect("lock").0, ruleset("b"));
    }
}
