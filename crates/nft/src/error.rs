//! Errors of the kernel backend. Each says what failed and, where one is known, which Service.

use std::fmt;

/// One operation of a transaction that the kernel (or `nft`) refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpFailure {
    /// The operation, in `nft` syntax (`add rule ip kube-nftproxy service-… …`).
    pub op: String,
    /// The Service (`namespace/name`) the operation belongs to, when it belongs to one.
    pub service: Option<String>,
    /// What was wrong: the errno text, and the kernel's extended ACK or nft's message.
    pub error: String,
}

impl fmt::Display for OpFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.service {
            Some(s) => write!(f, "Service {s}: {}: {}", self.op, self.error),
            None => write!(f, "{}: {}", self.op, self.error),
        }
    }
}

fn list(failures: &[OpFailure]) -> String {
    failures
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a transaction was not applied.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The kernel refused one or more operations and aborted the transaction: nothing changed.
    #[error("the kernel refused the transaction and changed nothing: {}", list(.failures))]
    Rejected {
        /// Every refused operation, in transaction order.
        failures: Vec<OpFailure>,
    },
    /// The transaction may or may not have been committed (ENOBUFS, an interrupted send, a
    /// short or missing acknowledgement). Read the kernel's tables again before planning.
    #[error("the outcome of the transaction is unknown ({reason}); the tables must be read again")]
    OutcomeUnknown {
        /// What happened.
        reason: String,
    },
    /// An operation could not be turned into a netlink message.
    #[error("cannot encode `{op}`: {problem}")]
    Encode {
        /// The operation, in `nft` syntax.
        op: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A system call or the `nft` program failed before the kernel saw the transaction.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

impl ApplyError {
    /// The Services named by the failures (sorted, without duplicates).
    pub fn services(&self) -> Vec<String> {
        let mut all: Vec<String> = match self {
            ApplyError::Rejected { failures } => {
                failures.iter().filter_map(|f| f.service.clone()).collect()
            }
            _ => Vec::new(),
        };
        all.sort();
        all.dedup();
        all
    }
}

/// Why our tables could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A system call, or the kernel's answer to a dump request, failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being read.
        what: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The kernel sent something we could not parse.
    #[error("{object}: {problem}")]
    Malformed {
        /// The object (`set ip kube-nftproxy cluster-ips`).
        object: String,
        /// What was wrong.
        problem: String,
    },
}
