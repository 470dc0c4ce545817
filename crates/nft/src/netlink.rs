//! The netlink backend: a whole transaction as one batch, sent with one `sendmsg` on a fresh
//! socket, every reply drained without waiting, every refusal mapped to its operation and
//! Service.

use crate::backend::Backend;
use crate::batch::Batch;
use crate::error::{ApplyError, OpFailure, ReadError};
use crate::socket::{messages, NetlinkSocket, NlError};
use ruleset::{Op, Ruleset, Transaction};
use std::io;

/// Programs nftables over netlink with libnftnl, in the calling thread's network namespace.
#[derive(Debug, Clone, Copy, Default)]
pub struct Netlink;

/// The size of one receive: any single netlink datagram the kernel sends us fits.
const RECV_BUFFER: usize = 256 * 1024;

impl Backend for Netlink {
    fn name(&self) -> &'static str {
        "netlink"
    }

    fn apply(&self, txn: &Transaction) -> Result<(), ApplyError> {
        if txn.is_empty() {
            return Ok(());
        }
        let batch = Batch::build(txn, 1)?;
        let io_err = |what: &str| {
            let what = what.to_owned();
            move |source| ApplyError::Io { what, source }
        };
        let socket = NetlinkSocket::open().map_err(io_err("opening a netlink socket"))?;
        // Room for the whole batch in one datagram, and for one acknowledgement (about 1 KiB
        // of socket memory each) per message: a full receive queue would drop replies.
        let send = batch.bytes.len() + 4096;
        let recv = (1 << 20).max((batch.messages + 16) * 1024);
        socket
            .set_buffers(send, recv)
            .map_err(io_err("sizing the netlink socket buffers"))?;
        socket
            .enable_ext_ack()
            .map_err(io_err("enabling netlink extended ACKs"))?;
        // The kernel processes the batch inside this call: all of it or none of it.
        socket
            .send_all(&[&batch.bytes])
            .map_err(io_err("sending the nftables batch"))?;
        let replies = drain(&socket);
        close_in_background(socket);
        outcome(txn, &batch, &replies?)
    }

    fn read(&self, table: &str) -> Result<Ruleset, ReadError> {
        crate::read::read_tables(table, None)
    }

    fn read_like(&self, table: &str, like: &Ruleset) -> Result<Ruleset, ReadError> {
        crate::read::read_tables(table, Some(like))
    }
}

/// Closes the socket on a thread of its own. Closing a netfilter netlink socket waits in the
/// kernel (`netlink_release` → `nft_rcv_nl_event`) for nf_tables' destroy work of the commit
/// just made, which waits for an RCU grace period before freeing what the transaction replaced:
/// 4 ms or more per transaction, measured on every endpoint change (`docs/benchmarks.md` §2).
/// Every reply has been read by now, so nothing is lost by not waiting; if no thread can be
/// started, it is closed here.
fn close_in_background(socket: NetlinkSocket) {
    let spawned = std::thread::Builder::new()
        .name("nft-close".into())
        .spawn(move || drop(socket));
    // When the thread cannot start, the closure, and the socket with it, was dropped here.
    if let Err(e) = spawned {
        tracing::debug!("closed the netlink socket inline: {e}");
    }
}

/// Every reply already queued on the socket.
fn drain(socket: &NetlinkSocket) -> Result<Vec<NlError>, ApplyError> {
    let mut buf = vec![0u8; RECV_BUFFER];
    let mut replies = Vec::new();
    loop {
        match socket.recv(&mut buf, false) {
            Ok(n) => replies
                .extend(messages(buf.get(..n).unwrap_or(&[])).filter_map(|m| NlError::parse(&m))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(replies),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ApplyError::OutcomeUnknown {
                    reason: format!("reading the kernel's acknowledgements failed: {e}"),
                })
            }
        }
    }
}

/// Applied, refused (with every refusal), or unknown (too few acknowledgements).
fn outcome(txn: &Transaction, batch: &Batch, replies: &[NlError]) -> Result<(), ApplyError> {
    let mut failures = Vec::new();
    for reply in replies.iter().filter(|r| r.errno != 0) {
        let op: Option<&Op> = batch.op_of(reply.seq).and_then(|i| txn.ops.get(i));
        let mut error = io::Error::from_raw_os_error(reply.errno).to_string();
        if let Some(msg) = &reply.ext_ack_msg {
            error.push_str(&format!(" ({msg})"));
        }
        if let Some(offset) = reply.ext_ack_offset {
            error.push_str(&format!(" (bad attribute at byte offset {offset})"));
        }
        failures.push(OpFailure {
            op: op.map_or_else(|| "commit of the transaction".to_owned(), Op::render),
            service: op.and_then(Op::service),
            error,
        });
    }
    if !failures.is_empty() {
        return Err(ApplyError::Rejected { failures });
    }
    if replies.len() < batch.messages {
        return Err(ApplyError::OutcomeUnknown {
            reason: format!(
                "{} of {} messages were acknowledged",
                replies.len(),
                batch.messages
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleset::{Expr, Family, Rule, TableId, Verdict};

    fn txn() -> Transaction {
        let table = TableId {
            family: Family::Ip,
            name: "kube-nftproxy".into(),
        };
        Transaction {
            ops: vec![
                Op::AddChain {
                    table: table.clone(),
                    chain: "service-ABCDEFGH-shop/web/tcp/http".into(),
                    base: None,
                },
                Op::AddRule {
                    table,
                    chain: "service-ABCDEFGH-shop/web/tcp/http".into(),
                    rule: Rule::new(vec![Expr::Verdict(Verdict::Drop)]),
                },
            ],
        }
    }

    fn reply(seq: u32, errno: i32) -> NlError {
        NlError {
            errno,
            seq,
            msg_type: 0,
            ext_ack_msg: None,
            ext_ack_offset: None,
        }
    }

    #[test]
    fn every_message_acknowledged_is_success() {
        let txn = txn();
        let batch = Batch::build(&txn, 1).expect("batch");
        assert_eq!(batch.messages, 2);
        // Sequence 1 is BATCH_BEGIN; the operations' messages are 2 and 3.
        assert!(outcome(&txn, &batch, &[reply(2, 0), reply(3, 0)]).is_ok());
    }

    #[test]
    fn a_refusal_names_the_operation_and_the_service() {
        let txn = txn();
        let batch = Batch::build(&txn, 1).expect("batch");
        let mut refused = reply(3, libc::ENOENT);
        refused.ext_ack_msg = Some("chain not found".into());
        let err = outcome(&txn, &batch, &[reply(2, 0), refused]).expect_err("refused");
        let ApplyError::Rejected { failures } = &err else {
            panic!("{err}");
        };
        assert_eq!(failures.len(), 1);
        assert!(failures[0].op.starts_with("add rule"), "{err}");
        assert_eq!(failures[0].service.as_deref(), Some("shop/web"));
        assert!(failures[0].error.contains("chain not found"), "{err}");
        assert!(err.to_string().contains("Service shop/web"), "{err}");
    }

    #[test]
    fn missing_acknowledgements_make_the_outcome_unknown() {
        let txn = txn();
        let batch = Batch::build(&txn, 1).expect("batch");
        let err = outcome(&txn, &batch, &[reply(2, 0)]).expect_err("short");
        assert!(matches!(err, ApplyError::OutcomeUnknown { .. }), "{err}");
    }
}
