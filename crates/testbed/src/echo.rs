//! Echo servers and a one-shot client, run as `python3` child processes inside namespaces.
//!
//! The server answers every TCP connection, and every UDP datagram, with one line
//! `"<server-ip> <peer-ip>\n"`: the address the connection or datagram was sent to (after any
//! DNAT, the endpoint's own address) and the address it came from (after any masquerade). A TCP
//! connection stays open and gets the line again for every line the client sends, until the
//! client closes it: [`connect`] reads one line and closes, a [`Session`] keeps talking.

use std::fmt;
use std::io::Read;
use std::net::IpAddr;
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::{NetNs, TestbedError};

/// A transport protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Proto {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
}

impl Proto {
    /// `"tcp"` or `"udp"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Dual-stack echo server. argv: port, comma-separated protocols. Prints nothing; the caller
/// polls `ss` until it listens.
const SERVER: &str = r#"
import select, socket, sys
port = int(sys.argv[1])
protos = sys.argv[2].split(",")
def clean(a):
    a = a.split("%")[0]
    return a[7:] if a.startswith("::ffff:") and "." in a else a
socks = []
if "tcp" in protos:
    t = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    t.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    t.bind(("::", port))
    t.listen(128)
    socks.append(t)
if "udp" in protos:
    u = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    u.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVPKTINFO, 1)
    u.bind(("::", port))
    socks.append(u)
conns = {}
def line(c):
    return ("%s %s\n" % (clean(c.getsockname()[0]), clean(c.getpeername()[0]))).encode()
while True:
    ready, _, _ = select.select(socks + list(conns), [], [])
    for s in ready:
        if s in conns:
            # An open connection: answer each line again; close on EOF.
            try:
                data = s.recv(256)
                if data:
                    s.sendall(line(s))
                    continue
            except OSError:
                pass
            del conns[s]
            s.close()
        elif s.type == socket.SOCK_STREAM:
            try:
                c, peer = s.accept()
            except OSError:
                continue
            try:
                c.settimeout(2)
                c.sendall(line(c))
                conns[c] = True
            except OSError:
                c.close()
        else:
            try:
                data, anc, flags, peer = s.recvmsg(2048, socket.CMSG_SPACE(20))
            except OSError:
                continue
            info = None
            for level, kind, d in anc:
                if level == socket.IPPROTO_IPV6 and kind == socket.IPV6_PKTINFO:
                    info = d[:16]
            local = socket.inet_ntop(socket.AF_INET6, info) if info else "?"
            msg = ("%s %s\n" % (clean(local), clean(peer[0]))).encode()
            try:
                if info:
                    # Answer from the address the datagram was sent to (any interface).
                    s.sendmsg([msg], [(socket.IPPROTO_IPV6, socket.IPV6_PKTINFO, info + bytes(4))], 0, peer)
                else:
                    s.sendto(msg, peer)
            except OSError:
                pass
"#;

/// One-shot client. argv: proto, address, port, timeout in seconds. Prints one line:
/// `REPLY <text>`, `REFUSED`, `TIMEOUT` or `ERROR <message>`.
const CLIENT: &str = r#"
import socket, sys
proto, addr, port, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
try:
    if proto == "tcp":
        s = socket.socket(fam, socket.SOCK_STREAM)
        s.settimeout(timeout)
        s.connect((addr, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(256)
            if not chunk:
                break
            data += chunk
    else:
        s = socket.socket(fam, socket.SOCK_DGRAM)
        s.settimeout(timeout)
        s.connect((addr, port))
        try:
            s.send(b"ping\n")
        except PermissionError:
            # Dropped or rejected by netfilter on this host's output path. A reject also
            # queues its ICMP error on the socket, which the recv below reports as refused.
            pass
        data = s.recv(256)
    print("REPLY " + data.decode(errors="replace").strip())
except TimeoutError:
    print("TIMEOUT")
except ConnectionRefusedError:
    print("REFUSED")
except OSError as e:
    print("ERROR %s" % e)
"#;

/// Long-lived TCP client. argv: address, port, timeout in seconds. Prints `REPLY <text>` for
/// the greeting, then one line per line read on stdin (`REPLY …`, `CLOSED`, `TIMEOUT`,
/// `ERROR …`); exits on EOF of stdin.
const SESSION: &str = r#"
import socket, sys
addr, port, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
fam = socket.AF_INET6 if ":" in addr else socket.AF_INET
def answer(s):
    data = b""
    while not data.endswith(b"\n"):
        chunk = s.recv(256)
        if not chunk:
            return "CLOSED"
        data += chunk
    return "REPLY " + data.decode(errors="replace").strip()
def report(f):
    try:
        print(f(), flush=True)
    except TimeoutError:
        print("TIMEOUT", flush=True)
    except ConnectionRefusedError:
        print("REFUSED", flush=True)
    except OSError as e:
        print("ERROR %s" % e, flush=True)
s = socket.socket(fam, socket.SOCK_STREAM)
s.settimeout(timeout)
def first():
    s.connect((addr, port))
    return answer(s)
report(first)
for _ in sys.stdin:
    def again():
        s.sendall(b"ping\n")
        return answer(s)
    report(again)
"#;

/// How long [`EchoServer::start`] waits for the server to listen.
const LISTEN_TIMEOUT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// Errors of starting an echo server.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// A command could not be run.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
    /// The server process exited before it listened.
    #[error("echo server in {ns} on port {port} exited ({status}); stderr:\n{stderr}")]
    Exited {
        /// The namespace.
        ns: String,
        /// The port.
        port: u16,
        /// How the server exited.
        status: ExitStatus,
        /// What it wrote to stderr.
        stderr: String,
    },
    /// The server did not listen within the time allowed.
    #[error("echo server in {ns} did not listen on {protos} port {port} within {timeout:?}")]
    NotListening {
        /// The namespace.
        ns: String,
        /// The port.
        port: u16,
        /// The protocols asked for.
        protos: String,
        /// How long we waited.
        timeout: Duration,
    },
}

/// An echo server process in a namespace; killed (and reaped) on drop.
#[derive(Debug)]
pub struct EchoServer {
    child: Child,
    ns: String,
    port: u16,
}

impl EchoServer {
    /// Starts a TCP and UDP echo server on `port` (both families, all addresses) in `ns` and
    /// waits until both sockets are bound.
    pub fn start(ns: &NetNs, port: u16) -> Result<EchoServer, EchoError> {
        EchoServer::start_protos(ns, port, &[Proto::Tcp, Proto::Udp])
    }

    /// Starts an echo server for the given protocols only.
    pub fn start_protos(ns: &NetNs, port: u16, protos: &[Proto]) -> Result<EchoServer, EchoError> {
        let list = protos
            .iter()
            .map(|p| p.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let port_arg = port.to_string();
        let mut cmd = ns.python(SERVER);
        cmd.args([port_arg.as_str(), list.as_str()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let child = cmd.spawn().map_err(|source| TestbedError::Spawn {
            command: format!(
                "ip netns exec {} python3 -c <echo server> {port} {list}",
                ns.name()
            ),
            source,
        })?;
        // From here on, drop kills the process whatever happens.
        let mut server = EchoServer {
            child,
            ns: ns.name().to_owned(),
            port,
        };
        let deadline = Instant::now() + LISTEN_TIMEOUT;
        loop {
            if let Some(status) = server
                .child
                .try_wait()
                .map_err(|source| TestbedError::Spawn {
                    command: "wait for echo server".into(),
                    source,
                })?
            {
                let mut stderr = String::new();
                if let Some(mut pipe) = server.child.stderr.take() {
                    let _ = pipe.read_to_string(&mut stderr);
                }
                return Err(EchoError::Exited {
                    ns: server.ns.clone(),
                    port,
                    status,
                    stderr,
                });
            }
            if listening(ns, port, protos)? {
                return Ok(server);
            }
            if Instant::now() >= deadline {
                return Err(EchoError::NotListening {
                    ns: server.ns.clone(),
                    port,
                    protos: list,
                    timeout: LISTEN_TIMEOUT,
                });
            }
            std::thread::sleep(POLL);
        }
    }

    /// The port served.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The namespace's name.
    pub fn namespace(&self) -> &str {
        &self.ns
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        // Already gone is fine; either way reap it so no zombie is left.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether every protocol in `protos` has a socket bound to `port` (listening, for TCP).
fn listening(ns: &NetNs, port: u16, protos: &[Proto]) -> Result<bool, TestbedError> {
    let out = ns.run("ss", &["-H", "-l", "-n", "-t", "-u"])?;
    let suffix = format!(":{port}");
    Ok(protos.iter().all(|proto| {
        out.lines().any(|line| {
            let cols: Vec<&str> = line.split_whitespace().collect();
            cols.first() == Some(&proto.as_str())
                && cols.get(4).is_some_and(|local| local.ends_with(&suffix))
        })
    }))
}

/// What an echo server answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Reply {
    /// The server's own address the connection reached (the endpoint after DNAT).
    pub server: IpAddr,
    /// The client address the server saw (after any SNAT / masquerade).
    pub peer: IpAddr,
}

/// Why [`connect`] got no reply.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// Connection refused: TCP RST, or ICMP port unreachable (TCP and UDP). Over IPv6 a TCP
    /// refusal by the node the client's veth leads to may only be noticed on the first SYN
    /// retransmission (after 1 s), so give such connections a timeout above 1 s.
    #[error("connection refused")]
    Refused,
    /// No answer within the timeout (the packets were dropped).
    #[error("timed out")]
    TimedOut,
    /// Any other failure of the connection (e.g. host unreachable), or an unparsable reply.
    #[error("connection failed: {0}")]
    Other(String),
    /// The client could not be run.
    #[error(transparent)]
    Testbed(#[from] TestbedError),
}

/// Extra time the client process gets beyond its socket timeouts (start-up, two timeouts for
/// TCP connect and read) before it is killed.
const CLIENT_GRACE: Duration = Duration::from_secs(3);

/// Opens one connection (TCP) or sends one datagram (UDP) from `ns` to `addr:port` and reads the
/// echo server's answer. `timeout` bounds each socket operation (use ≤ 2 s).
pub fn connect(
    ns: &NetNs,
    proto: Proto,
    addr: IpAddr,
    port: u16,
    timeout: Duration,
) -> Result<Reply, ConnectError> {
    let addr_arg = addr.to_string();
    let port_arg = port.to_string();
    let timeout_arg = format!("{:.3}", timeout.as_secs_f64());
    let args = [proto.as_str(), &addr_arg, &port_arg, &timeout_arg];
    let describe = format!(
        "ip netns exec {} python3 -c <echo client> {}",
        ns.name(),
        args.join(" ")
    );
    let spawn_err = |source| TestbedError::Spawn {
        command: describe.clone(),
        source,
    };
    let mut child = ns
        .python(CLIENT)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(spawn_err)?;
    let deadline = Instant::now() + timeout * 2 + CLIENT_GRACE;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(5)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(ConnectError::Other(format!(
                    "client process did not finish in time: {describe}"
                )));
            }
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(spawn_err(e).into());
            }
        }
    };
    // The process has exited: its few bytes of output are waiting in the pipes.
    let mut stdout = String::new();
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    if !status.success() {
        return Err(TestbedError::Failed {
            command: describe,
            status,
            stderr,
        }
        .into());
    }
    parse_client_output(stdout.trim())
}

/// One TCP connection kept open to an echo server, to check that an established connection
/// survives a change of rules. The client process is killed on drop.
#[derive(Debug)]
pub struct Session {
    child: Child,
    lines: std::io::BufReader<std::process::ChildStdout>,
    stdin: std::process::ChildStdin,
}

impl Session {
    /// Connects from `ns` to `addr:port` over TCP and reads the greeting. `timeout` (≤ 2 s)
    /// bounds each socket operation of the client, so every exchange ends within it.
    pub fn open(
        ns: &NetNs,
        addr: IpAddr,
        port: u16,
        timeout: Duration,
    ) -> Result<(Session, Reply), ConnectError> {
        let args = [
            addr.to_string(),
            port.to_string(),
            format!("{:.3}", timeout.as_secs_f64()),
        ];
        let describe = format!("ip netns exec {} python3 -c <echo session>", ns.name());
        let mut child = ns
            .python(SESSION)
            .args(&args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|source| TestbedError::Spawn {
                command: describe.clone(),
                source,
            })?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ConnectError::Other(format!("no pipes to {describe}")));
        };
        let mut session = Session {
            child,
            lines: std::io::BufReader::new(stdout),
            stdin,
        };
        let greeting = session.read_line()?;
        Ok((session, greeting))
    }

    /// Sends one line over the open connection and reads the server's answer.
    pub fn exchange(&mut self) -> Result<Reply, ConnectError> {
        use std::io::Write;
        self.stdin
            .write_all(b"next\n")
            .and_then(|()| self.stdin.flush())
            .map_err(|e| ConnectError::Other(format!("the session client is gone: {e}")))?;
        self.read_line()
    }

    fn read_line(&mut self) -> Result<Reply, ConnectError> {
        use std::io::BufRead;
        let mut line = String::new();
        self.lines
            .read_line(&mut line)
            .map_err(|e| ConnectError::Other(format!("reading the session client: {e}")))?;
        match line.trim() {
            "" => Err(ConnectError::Other("the session client exited".into())),
            "CLOSED" => Err(ConnectError::Other(
                "the server closed the connection".into(),
            )),
            out => parse_client_output(out),
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn parse_client_output(out: &str) -> Result<Reply, ConnectError> {
    match out {
        "REFUSED" => Err(ConnectError::Refused),
        "TIMEOUT" => Err(ConnectError::TimedOut),
        _ => {
            if let Some(text) = out.strip_prefix("REPLY ") {
                let mut parts = text.split_whitespace();
                let server = parts.next().and_then(|s| s.parse().ok());
                let peer = parts.next().and_then(|s| s.parse().ok());
                if let (Some(server), Some(peer), None) = (server, peer, parts.next()) {
                    return Ok(Reply { server, peer });
                }
                return Err(ConnectError::Other(format!("unparsable reply {text:?}")));
            }
            Err(ConnectError::Other(
                out.strip_prefix("ERROR ").unwrap_or(out).to_owned(),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_client_output() {
        let r = parse_client_output("REPLY 10.244.1.10 10.244.1.2").expect("reply");
        assert_eq!(r.server.to_string(), "10.244.1.10");
        assert_eq!(r.peer.to_string(), "10.244.1.2");
        let r = parse_client_output("REPLY fd00:10:244:1::10 fd00:10:244:1::2").expect("reply");
        assert_eq!(r.peer.to_string(), "fd00:10:244:1::2");
        assert!(matches!(
            parse_client_output("REFUSED"),
            Err(ConnectError::Refused)
        ));
        assert!(matches!(
            parse_client_output("TIMEOUT"),
            Err(ConnectError::TimedOut)
        ));
        assert!(matches!(
            parse_client_output("ERROR [Errno 113] No route to host"),
            Err(ConnectError::Other(m)) if m.contains("No route")
        ));
        assert!(matches!(
            parse_client_output("REPLY garbage"),
            Err(ConnectError::Other(_))
        ));
    }
}
