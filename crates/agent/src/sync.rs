//! One sync against the kernel: read what our tables hold, plan the smallest transaction to
//! the desired ruleset, apply it. Also `cleanup`: delete our tables and nothing else.

use nft::{ApplyError, Backend};
use ruleset::{plan, split_by_service, Op, Ruleset, Transaction};
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
    /// The operations of each transaction applied: one transaction, or several for a sync from
    /// empty tables cut into stages of whole Services ([`ruleset::split_by_service`]).
    pub transaction_sizes: Vec<usize>,
}

impl SyncReport {
    /// How many transactions were applied (at least 1, an empty one included).
    pub fn transactions(&self) -> usize {
        self.transaction_sizes.len().max(1)
    }
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
        )?;
        if self.transactions() > 1 {
            write!(f, " in {} transactions", self.transactions())?;
        }
        Ok(())
    }
}

/// Services per transaction when a sync starts from empty tables (a node's first start, or
/// after `cleanup`): the kernel's cost of one batch grows faster than the batch, and about
/// 1 000 Services per batch was measured to pay (`docs/benchmarks.md`). Every other sync is
/// one transaction.
pub const STAGE_SERVICES: usize = 1000;

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
    /// A stage of a sync from empty tables was refused or its outcome is unknown; the stages
    /// before it are in the kernel.
    #[error(
        "applying stage {stage} of {stages} of the sync from empty tables ({operations} \
         operations; {applied} operations of the stages before it are in place): {source}"
    )]
    Stage {
        /// The stage, from 1.
        stage: usize,
        /// Stages in all.
        stages: usize,
        /// Operations in the stage.
        operations: usize,
        /// Operations of the earlier stages, applied.
        applied: usize,
        /// The cause (names the Services of refused operations).
        #[source]
        source: ApplyError,
    },
}

/// Brings the kernel's `table` tables to `desired`: reads them, plans, applies. When the outcome
/// of the transaction is unknown (a lost acknowledgement), reads and plans once more, so a
/// transaction that did commit is not applied twice. From empty tables, the transaction is
/// applied in stages of `stage_services` whole Services (0: never split), each atomic; if one
/// fails, the ones before it stay and the error says so (the next sync reads them back and
/// plans the rest).
pub fn sync_once(
    backend: &dyn Backend,
    table: &str,
    desired: &Ruleset,
    stage_services: usize,
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
        // Whole unless it builds our tables from nothing (split_by_service checks).
        let mut stages = split_by_service(plan(&current, desired), stage_services);
        let planned = started.elapsed();
        if stages.len() > 1 {
            match apply_stages(backend, &stages, read, planned) {
                Err(SyncError::Stage {
                    source: ApplyError::OutcomeUnknown { reason },
                    stage,
                    ..
                }) if attempts < 2 => {
                    tracing::warn!(%reason, stage, "outcome of a stage of the sync from empty tables unknown; reading the tables again");
                    continue;
                }
                other => return other,
            }
        }
        let txn = stages.pop().unwrap_or_default();
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
                    transaction_sizes: vec![txn.len()],
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

/// Applies the stages of a sync from empty tables in order.
fn apply_stages(
    backend: &dyn Backend,
    stages: &[Transaction],
    read: Duration,
    planned: Duration,
) -> Result<SyncReport, SyncError> {
    let started = Instant::now();
    let mut services = Vec::new();
    let mut operations = 0;
    for (i, stage) in stages.iter().enumerate() {
        if let Err(source) = backend.apply(stage) {
            return Err(SyncError::Stage {
                stage: i + 1,
                stages: stages.len(),
                operations: stage.len(),
                applied: operations,
                source,
            });
        }
        operations += stage.len();
        services.extend(stage.services());
        tracing::debug!(
            stage = i + 1,
            stages = stages.len(),
            operations = stage.len(),
            "applied a stage of the sync from empty tables"
        );
    }
    services.sort();
    services.dedup();
    Ok(SyncReport {
        backend: backend.name(),
        operations,
        services,
        read,
        plan: planned,
        apply: started.elapsed(),
        transaction_sizes: stages.iter().map(Transaction::len).collect(),
    })
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
