//! The `nft -f` backend: the transaction's text piped to the `nft` program, which sends it as
//! one batch (all or nothing). For debugging and as a cross-check of the netlink backend; it
//! reads back with the same netlink reader.

use crate::backend::Backend;
use crate::error::{ApplyError, OpFailure, ReadError};
use ruleset::{Op, Ruleset, Transaction};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// Applies transactions by running `nft -f -` in the calling thread's network namespace.
#[derive(Debug, Clone)]
pub struct NftCommand {
    /// The `nft` program (a name looked up in `PATH`, or a path).
    pub program: PathBuf,
}

impl Default for NftCommand {
    fn default() -> Self {
        NftCommand {
            program: PathBuf::from("nft"),
        }
    }
}

impl Backend for NftCommand {
    fn name(&self) -> &'static str {
        "nft"
    }

    fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
        if txn.is_empty() {
            return Ok(());
        }
        let text = txn.render();
        let what = format!("running `{} -f -`", self.program.display());
        let io_err = |source| ApplyError::Io {
            what: what.clone(),
            source,
        };
        let mut child = Command::new(&self.program)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(io_err)?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(text.as_bytes()).map_err(io_err)?;
        }
        let output = child.wait_with_output().map_err(io_err)?;
        if output.status.success() {
            return Ok(());
        }
        let stderr = String::from_utf8_lossy(&output.stderr);
        Err(ApplyError::Rejected {
            failures: failures(txn, &stderr),
        })
    }

    fn read(&self, table: &str) -> Result<Ruleset, ReadError> {
        crate::read::read_tables(table, None)
    }

    fn read_like(&self, table: &str, like: &Ruleset) -> Result<Ruleset, ReadError> {
        crate::read::read_tables(table, Some(like))
    }
}

/// nft's errors (`/dev/stdin:4:15-18: Error: Could not process rule: …`), each mapped through
/// its line number to the operation on that line.
fn failures(txn: &Transaction, stderr: &str) -> Vec<OpFailure> {
    let mut out: Vec<OpFailure> = stderr
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("/dev/stdin:")?;
            let (number, rest) = rest.split_once(':')?;
            let op: &Op = txn.ops.get(number.parse::<usize>().ok()?.checked_sub(1)?)?;
            let error = rest
                .split_once(": ")
                .map_or(rest, |(_, message)| message)
                .trim_start_matches("Error: ")
                .to_owned();
            Some(OpFailure {
                op: op.render(),
                service: op.service(),
                error,
            })
        })
        .collect();
    if out.is_empty() {
        out.push(OpFailure {
            op: "nft -f -".into(),
            service: None,
            error: stderr.trim().to_owned(),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleset::{Family, TableId};

    #[test]
    fn errors_are_mapped_to_the_operation_on_their_line() {
        let table = TableId {
            family: Family::Ip,
            name: "kube-nftproxy".into(),
        };
        let txn = Transaction {
            ops: vec![
                Op::AddTable {
                    table: table.clone(),
                    comment: None,
                },
                Op::FlushChain {
                    table,
                    chain: "service-ABCDEFGH-shop/web/tcp/http".into(),
                },
            ],
        };
        let stderr =
            "/dev/stdin:2:1-60: Error: Could not process rule: No such file or directory\n\
                      flush chain ip kube-nftproxy service-ABCDEFGH-shop/web/tcp/http\n^^^^\n";
        let got = failures(&txn, stderr);
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].service.as_deref(), Some("shop/web"));
        assert_eq!(
            got[0].error,
            "Could not process rule: No such file or directory"
        );
        assert!(got[0].op.starts_with("flush chain"));
    }
}
