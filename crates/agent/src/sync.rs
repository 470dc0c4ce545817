//! One sync against the kernel: read what our tables hold, plan the smallest transaction to
//! the desired ruleset, apply it. Also `cleanup`: delete our tables and nothing else.

use nft::{ApplyError, Backend};
use ruleset::{plan, stages_from_empty, Op, Ruleset, StagesFromEmpty, Transaction};
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
    /// empty tables cut into stages of whole Services ([`ruleset::stages_from_empty`]).
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
/// after `cleanup`): the kernel's cost of one batch grows faster than the batch, and batches of
/// 500 to 1 000 Services were measured to cost the same (`docs/benchmarks.md`); 500 keeps the
/// operations and netlink batch of a stage, built while the sync runs, half as large (at
/// 10 000 Services, 3 MB off the daemon's peak). Every other sync is one transaction.
pub const STAGE_SERVICES: usize = 500;

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
        // The sets the kernel holds as desired share the desired elements: the read-back
        // costs the differences, not a second copy of every element.
        let current = backend
            .read_like(table, desired)
            .map_err(|source| SyncError::Read {
                table: table.to_owned(),
                source,
            })?;
        let read = started.elapsed();
        // From empty tables, in stages planned one at a time; otherwise one transaction.
        let stages = current
            .tables
            .is_empty()
            .then(|| stages_from_empty(desired, stage_services))
            .filter(|stages| stages.stages() > 1);
        if let Some(stages) = stages {
            match apply_stages(backend, stages, read) {
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

/// Plans and applies the stages of a sync from empty tables in order, one at a time.
fn apply_stages(
    backend: &dyn Backend,
    mut stages: StagesFromEmpty<'_>,
    read: Duration,
) -> Result<SyncReport, SyncError> {
    let total = stages.stages();
    let (mut planned, mut applied) = (Duration::ZERO, Duration::ZERO);
    let mut services = Vec::new();
    let mut operations = 0;
    let mut transaction_sizes = Vec::with_capacity(total);
    for i in 0..total {
        let started = Instant::now();
        let Some(stage) = stages.next() else { break };
        planned += started.elapsed();
        let started = Instant::now();
        let result = backend.apply(&stage);
        applied += started.elapsed();
        if let Err(source) = result {
            return Err(SyncError::Stage {
                stage: i + 1,
                stages: total,
                operations: stage.len(),
                applied: operations,
                source,
            });
        }
        operations += stage.len();
        transaction_sizes.push(stage.len());
        services.extend(stage.services());
        tracing::debug!(
            stage = i + 1,
            stages = total,
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
        apply: applied,
        transaction_sizes,
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
