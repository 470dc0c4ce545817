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
