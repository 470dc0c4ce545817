//! A client that keeps opening connections while a test changes the rules under it: one
//! `python3` process in a namespace, one TCP connection after another to a list of targets,
//! each with one request after the greeting, every outcome reported as it happens.
//!
//! Tests use it to show that a change of rules loses no connection and no request: the
//! outcomes before, during and after the change are all answers, and the echo servers' replies
//! show whose rules chose the endpoint.

use std::io::{BufRead, BufReader, Write};
use std::net::IpAddr;
use std::process::{Child, ChildStdin, Stdio};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::echo::Reply;
use crate::{NetNs, TestbedError};

/// The client. argv: socket timeout (s), pause between connections (s), the most connections
/// to open, then the targets as `address,port`. For each connection it prints
/// `OK <target> <server> <peer>` (the answer to the request, not the greeting) or
/// `FAIL <target> <reason>`; it stops after the last connection or when stdin has a line or
/// closes.
const LOOP: &str = r#"
import select, socket, sys, time
timeout, pause, most = float(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
targets = [(a, int(p)) for a, p in (t.split(",") for t in sys.argv[4:])]
def one(addr, port):
    fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(fam, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect((addr, port))
        f = s.makefile("rwb")
        if not f.readline():
            return "FAIL closed before the greeting"
        f.write(b"request\n")
        f.flush()
        answer = f.readline().decode().strip()
        if not answer:
            return "FAIL closed before the answer"
        return "OK " + answer
    except socket.timeout:
        return "FAIL timeout"
    except OSError as e:
        return "FAIL " + (e.strerror or str(e)).replace("\n", " ")
    finally:
        s.close()
for i in range(most):
    if select.select([sys.stdin], [], [], 0)[0]:
        break
    t = i % len(targets)
    out = one(*targets[t])
    kind, _, rest = out.partition(" ")
    print("%s %d %s" % (kind, t, rest), flush=True)
    time.sleep(pause)
"#;

/// What happened to one connection of a [`TrafficLoop`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The index of its target in the list given to [`TrafficLoop::start`].
    pub target: usize,
    /// The echo server's answer to the request, or why there was none.
    pub result: Result<Reply, String>,
}

/// Connections opened one after another from a namespace until [`TrafficLoop::stop`] (or a
/// bound on their number); the process is killed on drop.
#[derive(Debug)]
pub struct TrafficLoop {
    child: Child,
    stdin: Option<ChildStdin>,
    outcomes: Arc<Mutex<Vec<Outcome>>>,
    reader: Option<JoinHandle<()>>,
}

impl TrafficLoop {
    /// Starts opening connections from `ns` to `targets` in turn, at most `most` of them, with
    /// `pause` between two; `timeout` (≤ 2 s) bounds each socket operation.
    pub fn start(
        ns: &NetNs,
        targets: &[(IpAddr, u16)],
        timeout: Duration,
        pause: Duration,
        most: usize,
    ) -> Result<TrafficLoop, TestbedError> {
        let describe = format!("ip netns exec {} python3 -c <traffic loop>", ns.name());
        let mut args = vec![
            format!("{:.3}", timeout.as_secs_f64()),
            format!("{:.3}", pause.as_secs_f64()),
            most.to_string(),
        ];
        args.extend(targets.iter().map(|(a, p)| format!("{a},{p}")));
        let mut child = ns
            .python(LOOP)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| TestbedError::Spawn {
                command: describe,
                source,
            })?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&outcomes);
        let reader = stdout.map(|out| {
            std::thread::spawn(move || {
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(outcome) = parse(&line) {
                        lock(&sink).push(outcome);
                    }
                }
            })
        });
        Ok(TrafficLoop {
            child,
            stdin,
            outcomes,
            reader,
        })
    }

    /// How many connections have ended so far.
    pub fn count(&self) -> usize {
        lock(&self.outcomes).len()
    }

    /// Waits until at least `n` connections have ended, or `limit` has passed; returns whether
    /// they have.
    pub fn wait_for(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while self.count() < n {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        true
    }

    /// Stops the client after the connection it is on (killing it if it has not stopped
    /// within `limit`) and returns every outcome, in order.
    pub fn stop(mut self, limit: Duration) -> Vec<Outcome> {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"stop\n");
        }
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(Some(_)) | Err(_) => break,
                Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        std::mem::take(&mut *lock(&self.outcomes))
    }
}

impl Drop for TrafficLoop {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The outcomes, also when a reader panicked while holding the lock (the data is a list of
/// complete entries either way).
fn lock(outcomes: &Mutex<Vec<Outcome>>) -> MutexGuard<'_, Vec<Outcome>> {
    outcomes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One line of the client's output.
fn parse(line: &str) -> Option<Outcome> {
    let mut parts = line.splitn(3, ' ');
    let kind = parts.next()?;
    let target = parts.next()?.parse().ok()?;
    let rest = parts.next().unwrap_or("");
    let result = match kind {
        "OK" => {
            let mut words = rest.split_whitespace();
            match (
                words.next().and_then(|s| s.parse().ok()),
                words.next().and_then(|s| s.parse().ok()),
            ) {
                (Some(server), Some(peer)) => Ok(Reply { server, peer }),
                _ => Err(format!("unparsable answer {rest:?}")),
            }
        }
        "FAIL" => Err(rest.to_owned()),
        _ => return None,
    };
    Some(Outcome { target, result })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_client_lines() {
        let ok = parse("OK 1 10.244.1.11 10.244.1.1").expect("outcome");
        assert_eq!(ok.target, 1);
        let reply = ok.result.expect("answered");
        assert_eq!(reply.server.to_string(), "10.244.1.11");
        assert_eq!(reply.peer.to_string(), "10.244.1.1");
        let failed = parse("FAIL 0 Connection refused").expect("outcome");
        assert_eq!(failed.result, Err("Connection refused".to_owned()));
        assert!(parse("OK 0 garbage").expect("outcome").result.is_err());
        assert_eq!(parse("Traceback (most recent call last):"), None);
    }
}
