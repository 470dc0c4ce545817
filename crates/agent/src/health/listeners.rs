//! The per-Service health check listeners (`spec.healthCheckNodePort`), as kube-proxy's
//! `service_health.go`: one HTTP listener per (address, port), any path, answering
//! [`service_response`] with the Service's current count of ready local endpoints.

use std::collections::{BTreeMap, BTreeSet};
use std::future::{poll_fn, Future};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::Poll;
use std::time::Duration;

use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, State};
use axum::serve::IncomingStream;
use axum::Router;
use model::{IpFamily, ServiceRef};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::node::ProxyHealth;
use super::service::{service_response, ServiceHealthResponse};

/// One Service's health check in one IP family: what the listeners on `addresses` × `port`
/// answer. [`ServiceHealthServer::sync`] takes the full desired set of these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealthCheck {
    /// The Service.
    pub service: ServiceRef,
    /// The family of `addresses` and of the endpoints counted in `local_endpoints`.
    pub family: IpFamily,
    /// The Service's `healthCheckNodePort`.
    pub port: u16,
    /// The node-port addresses to listen on (`0.0.0.0` / `::` for all of the family).
    pub addresses: Vec<IpAddr>,
    /// The number of distinct ready endpoint IPs of the Service on this node.
    pub local_endpoints: usize,
}

/// A health check listener that could not be opened; [`ServiceHealthServer::sync`] retries it
/// on its next call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindFailure {
    /// The Service whose health check it is.
    pub service: ServiceRef,
    /// The address that could not be bound.
    pub address: IpAddr,
    /// The port that could not be bound.
    pub port: u16,
    /// Why, e.g. "Address already in use (os error 98)".
    pub error: String,
}

/// What a listener answers with.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Answer {
    service: ServiceRef,
    local_endpoints: usize,
}

/// The state a listener's handler reads; [`ServiceHealthServer::sync`] updates it in place.
#[derive(Debug)]
struct SocketState {
    answer: Mutex<Answer>,
    /// For a dual-stack `[::]:port` socket that also stands in for a wanted `0.0.0.0:port`:
    /// the answer for IPv4 clients (which it sees as `::ffff:a.b.c.d`).
    mapped_v4: Mutex<Option<Answer>>,
}

impl SocketState {
    fn answer_for(&self, peer: IpAddr) -> Answer {
        if let IpAddr::V6(v6) = peer {
            if v6.to_ipv4_mapped().is_some() {
                if let Some(answer) = lock(&self.mapped_v4).clone() {
                    return answer;
                }
            }
        }
        lock(&self.answer).clone()
    }
}

/// The listening socket, shared between [`ServiceHealthServer`] and the serving task so that
/// closing it is synchronous: taking it out of the slot drops (closes) it at once.
type Slot = Arc<Mutex<Option<TcpListener>>>;

/// An open listener (or an address answered by another one).
#[derive(Debug)]
enum Listener {
    /// A socket of our own, served by `task`.
    Socket {
        state: Arc<SocketState>,
        slot: Slot,
        task: JoinHandle<()>,
        /// An IPv6 socket that also accepts IPv4 (`net.ipv6.bindv6only = 0`).
        dual_stack: bool,
    },
    /// `0.0.0.0:port`, answered by our dual-stack `[::]:port` socket (binding both fails on
    /// Linux by default, and Go, hence kube-proxy, listens dual-stack for `0.0.0.0` anyway).
    Covered,
}

impl Listener {
    fn close(self) {
        if let Listener::Socket { slot, task, .. } = self {
            // Dropping the tokio listener closes the socket now, so the port is free when
            // `sync` returns; the task (now waiting on an empty slot) is cancelled.
            // Connections already accepted finish on their own tasks.
            drop(lock(&slot).take());
            task.abort();
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The per-Service health check listeners of this node.
///
/// [`ServiceHealthServer::sync`] spawns tokio tasks, so it must be called from within a tokio
/// runtime (it panics otherwise). Dropping the server closes every listener.
#[derive(Debug)]
pub struct ServiceHealthServer {
    proxy: Arc<ProxyHealth>,
    listeners: Mutex<BTreeMap<SocketAddr, Listener>>,
}

impl ServiceHealthServer {
    /// No listeners yet; their answers report `proxy`'s health as `serviceProxyHealthy`.
    pub fn new(proxy: Arc<ProxyHealth>) -> Self {
        ServiceHealthServer {
            proxy,
            listeners: Mutex::new(BTreeMap::new()),
        }
    }

    /// Makes the open listeners match `checks`, the full desired set (call it after every
    /// sync): opens new (address, port)s, closes those no longer wanted (their port is free
    /// when this returns), and for the others only updates what they answer (no rebind;
    /// open connections stay).
    ///
    /// Returns the listeners that could not be opened (the port is in use, the address is not
    /// on this host, a second Service wants the same address and port, port 0); each is logged
    /// with tracing, does not affect the other listeners, and is tried again on the next call.
    ///
    /// # Panics
    ///
    /// When called outside a tokio runtime.
    pub fn sync(&self, checks: Vec<ServiceHealthCheck>) -> Vec<BindFailure> {
        let mut failures = Vec::new();
        let desired = desired_answers(checks, &mut failures);
        let mut listeners = lock(&self.listeners);

        // Close what is no longer wanted; a `0.0.0.0` stood in for by a closing `[::]` is
        // closed too (it is opened again on its own below).
        let closing: BTreeSet<SocketAddr> = listeners
            .keys()
            .filter(|key| !desired.contains_key(key))
            .copied()
            .collect();
        let orphaned = listeners
            .iter()
            .filter(|(key, listener)| {
                matches!(listener, Listener::Covered)
                    && closing.contains(&unspecified_v6(key.port()))
            })
            .map(|(key, _)| *key)
            .collect::<Vec<_>>();
        for key in closing.iter().chain(&orphaned) {
            if let Some(listener) = listeners.remove(key) {
                tracing::debug!(address = %key.ip(), port = key.port(), "closing health check listener");
                listener.close();
            }
        }

        // Update and open; IPv6 first so that a dual-stack `[::]:port` can stand in for
        // `0.0.0.0:port`.
        let (v6, v4): (Vec<_>, Vec<_>) = desired.iter().partition(|(key, _)| key.is_ipv6());
        for (&key, answer) in v6.into_iter().chain(v4) {
            match listeners.get(&key) {
                Some(Listener::Socket { state, .. }) => {
                    *lock(&state.answer) = answer.clone();
                    continue;
                }
                Some(Listener::Covered) => continue,
                None => {}
            }
            if key.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                && matches!(
                    listeners.get(&unspecified_v6(key.port())),
                    Some(Listener::Socket {
                        dual_stack: true,
                        ..
                    })
                )
            {
                tracing::debug!(
                    port = key.port(),
                    "health check on 0.0.0.0 answered by the dual-stack [::] listener"
                );
                listeners.insert(key, Listener::Covered);
                continue;
            }
            let mut opened = self.open(key, answer);
            if is_addr_in_use(&opened) && key.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
                // Our own `0.0.0.0:port` blocks a dual-stack `[::]:port`: open `[::]` first,
                // then `0.0.0.0` is stood in for (or opened again) below.
                if let Some(v4) = listeners.remove(&unspecified_v4(key.port())) {
                    v4.close();
                    opened = self.open(key, answer);
                }
            }
            match opened {
                Ok(listener) => {
                    tracing::debug!(service = %answer.service, address = %key.ip(), port = key.port(), "opened health check listener");
                    listeners.insert(key, listener);
                }
                Err(error) => {
                    tracing::warn!(
                        service = %answer.service,
                        address = %key.ip(),
                        port = key.port(),
                        %error,
                        "failed to open the health check listener of the Service; retrying every sync period"
                    );
                    failures.push(BindFailure {
                        service: answer.service.clone(),
                        address: key.ip(),
                        port: key.port(),
                        error: error.to_string(),
                    });
                }
            }
        }

        // What dual-stack sockets answer IPv4 clients.
        for (key, listener) in listeners.iter() {
            if let Listener::Socket {
                state,
                dual_stack: true,
                ..
            } = listener
            {
                let v4 = unspecified_v4(key.port());
                let mapped = match listeners.get(&v4) {
                    Some(Listener::Covered) => desired.get(&v4).cloned(),
                    _ => None,
                };
                *lock(&state.mapped_v4) = mapped;
            }
        }
        failures
    }

    /// The (address, port)s answered now, in order.
    pub fn ports(&self) -> Vec<(IpAddr, u16)> {
        lock(&self.listeners)
            .keys()
            .map(|key| (key.ip(), key.port()))
            .collect()
    }

    /// Binds `key` and spawns the task serving it.
    fn open(&self, key: SocketAddr, answer: &Answer) -> io::Result<Listener> {
        // std's bind sets SO_REUSEADDR (so a port closed with connections in TIME_WAIT can be
        // opened again), as tokio's does.
        let std_listener = std::net::TcpListener::bind(key)?;
        // `only_v6` is deprecated together with `set_only_v6` (which cannot work after bind);
        // as a getter (getsockopt IPV6_V6ONLY) it is fine.
        #[allow(deprecated)]
        let dual_stack = key.ip() == IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            && !std_listener.only_v6().unwrap_or(true);
        std_listener.set_nonblocking(true)?;
        let listener = TcpListener::from_std(std_listener)?;
        let slot: Slot = Arc::new(Mutex::new(Some(listener)));
        let state = Arc::new(SocketState {
            answer: Mutex::new(answer.clone()),
            mapped_v4: Mutex::new(None),
        });
        let handler = Arc::new(Handler {
            proxy: Arc::clone(&self.proxy),
            state: Arc::clone(&state),
        });
        let router = Router::new().fallback(answer_request).with_state(handler);
        let accept = SlotListener {
            slot: Arc::clone(&slot),
            local: key,
        };
        let task = tokio::spawn(async move {
            let service = router.into_make_service_with_connect_info::<Peer>();
            if let Err(error) = axum::serve(accept, service).await {
                tracing::warn!(address = %key.ip(), port = key.port(), %error, "health check listener stopped");
            }
        });
        Ok(Listener::Socket {
            state,
            slot,
            task,
            dual_stack,
        })
    }
}

impl Drop for ServiceHealthServer {
    fn drop(&mut self) {
        let listeners = std::mem::take(&mut *lock(&self.listeners));
        for listener in listeners.into_values() {
            listener.close();
        }
    }
}

/// The wanted listeners: (address, port) → answer. A port 0 or an (address, port) wanted by
/// a second Service is a failure.
fn desired_answers(
    checks: Vec<ServiceHealthCheck>,
    failures: &mut Vec<BindFailure>,
) -> BTreeMap<SocketAddr, Answer> {
    let mut desired: BTreeMap<SocketAddr, Answer> = BTreeMap::new();
    for check in checks {
        for &address in &check.addresses {
            let fail = |error: String| {
                tracing::warn!(service = %check.service, %address, port = check.port, %error, "cannot open the health check listener of the Service");
                BindFailure {
                    service: check.service.clone(),
                    address,
                    port: check.port,
                    error,
                }
            };
            if check.port == 0 {
                failures.push(fail("the Service has no healthCheckNodePort (0)".into()));
                continue;
            }
            let key = SocketAddr::new(address, check.port);
            match desired.get(&key) {
                None => {
                    desired.insert(
                        key,
                        Answer {
                            service: check.service.clone(),
                            local_endpoints: check.local_endpoints,
                        },
                    );
                }
                Some(existing) if existing.service == check.service => {}
                Some(existing) => failures.push(fail(format!(
                    "{key} is already the health check of {}",
                    existing.service
                ))),
            }
        }
    }
    desired
}

fn unspecified_v4(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)
}

fn unspecified_v6(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
}

fn is_addr_in_use<T>(result: &io::Result<T>) -> bool {
    matches!(result, Err(e) if e.kind() == io::ErrorKind::AddrInUse)
}

/// What the handler of one listener needs.
#[derive(Debug)]
struct Handler {
    proxy: Arc<ProxyHealth>,
    state: Arc<SocketState>,
}

/// The client's address.
#[derive(Debug, Clone, Copy)]
struct Peer(SocketAddr);

impl Connected<IncomingStream<'_, SlotListener>> for Peer {
    fn connect_info(stream: IncomingStream<'_, SlotListener>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Any method, any path.
async fn answer_request(
    State(handler): State<Arc<Handler>>,
    ConnectInfo(Peer(peer)): ConnectInfo<Peer>,
) -> ServiceHealthResponse {
    let answer = handler.state.answer_for(peer.ip());
    service_response(
        &answer.service,
        answer.local_endpoints,
        handler.proxy.is_healthy(),
    )
}

/// Accepts from the listener in a [`Slot`]; once the slot is emptied it never accepts again.
struct SlotListener {
    slot: Slot,
    local: SocketAddr,
}

impl axum::serve::Listener for SlotListener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl Future<Output = (TcpStream, SocketAddr)> + Send {
        let slot = Arc::clone(&self.slot);
        async move {
            loop {
                let accepted = poll_fn(|cx| match lock(&slot).as_ref() {
                    Some(listener) => listener.poll_accept(cx),
                    // Closed: the task is being aborted.
                    None => Poll::Pending,
                })
                .await;
                match accepted {
                    Ok(connection) => return connection,
                    // Errors of one connection: go on with the next.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionRefused
                                | io::ErrorKind::ConnectionAborted
                                | io::ErrorKind::ConnectionReset
                        ) => {}
                    // E.g. out of file descriptors: back off as axum's own listener does.
                    Err(error) => {
                        tracing::warn!(%error, "health check listener failed to accept");
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{free_port, get, Connection};
    use super::*;

    const LOCALHOST: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn check(name: &str, port: u16, local_endpoints: usize) -> ServiceHealthCheck {
        ServiceHealthCheck {
            service: ServiceRef::new("ns", name),
            family: IpFamily::V4,
            port,
            addresses: vec![LOCALHOST],
            local_endpoints,
        }
    }

    fn at(port: u16) -> SocketAddr {
        SocketAddr::new(LOCALHOST, port)
    }

    fn refused(port: u16) -> bool {
        matches!(
            std::net::TcpStream::connect(at(port)),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused
        )
    }

    fn healthy_server() -> ServiceHealthServer {
        ServiceHealthServer::new(Arc::new(ProxyHealth::new(Duration::from_secs(60))))
    }

    async fn assert_answers(port: u16, name: &str, status: u16, local_endpoints: usize) {
        let response = get(at(port), "/any/path?x=1").await.expect("GET");
        assert_eq!(response.status, status, "{response:?}");
        assert_eq!(response.header("content-type"), "application/json");
        assert_eq!(response.header("x-content-type-options"), "nosniff");
        assert_eq!(
            response.header("x-load-balancing-endpoint-weight"),
            local_endpoints.to_string()
        );
        let body = response.json();
        assert_eq!(body["service"]["namespace"], "ns");
        assert_eq!(body["service"]["name"], name);
        assert_eq!(body["localEndpoints"], local_endpoints);
        assert_eq!(body["serviceProxyHealthy"], true);
    }

    #[tokio::test]
    async fn opens_updates_moves_and_closes() {
        let server = healthy_server();
        let port = free_port();
        assert_eq!(server.sync(vec![check("a", port, 0)]), vec![]);
        assert_eq!(server.ports(), vec![(LOCALHOST, port)]);
        assert_answers(port, "a", 503, 0).await;

        // A kept-alive connection survives a count change: the listener is not rebound.
        let mut connection = tokio::task::spawn_blocking(move || {
            let mut connection = Connection::open(at(port)).expect("connect");
            let response = connection.get("/", false).expect("first GET");
            assert_eq!(response.status, 503);
            connection
        })
        .await
        .expect("client");
        assert_eq!(server.sync(vec![check("a", port, 2)]), vec![]);
        let response = tokio::task::spawn_blocking(move || connection.get("/", true))
            .await
            .expect("client")
            .expect("second GET on the same connection");
        assert_eq!(response.status, 200);
        assert_eq!(response.header("x-load-balancing-endpoint-weight"), "2");
        assert_eq!(response.json()["localEndpoints"], 2);
        assert_answers(port, "a", 200, 2).await;

        // The port changes: the listener moves, the old port refuses and is free.
        let moved = free_port();
        assert_eq!(server.sync(vec![check("a", moved, 2)]), vec![]);
        assert_eq!(server.ports(), vec![(LOCALHOST, moved)]);
        assert_answers(moved, "a", 200, 2).await;
        assert!(refused(port));
        drop(std::net::TcpListener::bind(at(port)).expect("the old port is free"));

        // The Service is gone: the listener closes and its port is free.
        assert_eq!(server.sync(vec![]), vec![]);
        assert_eq!(server.ports(), vec![]);
        assert!(refused(moved));
        drop(std::net::TcpListener::bind(at(moved)).expect("the port is free"));
    }

    #[tokio::test]
    async fn taken_port_is_reported_and_retried() {
        let server = healthy_server();
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let taken_port = taken.local_addr().expect("local address").port();
        let other = free_port();

        let checks = vec![check("a", taken_port, 1), check("b", other, 3)];
        let failures = server.sync(checks.clone());
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].service, ServiceRef::new("ns", "a"));
        assert_eq!(failures[0].address, LOCALHOST);
        assert_eq!(failures[0].port, taken_port);
        assert!(!failures[0].error.is_empty());
        // The other Service is served regardless.
        assert_eq!(server.ports(), vec![(LOCALHOST, other)]);
        assert_answers(other, "b", 200, 3).await;

        // Still taken: still failing.
        assert_eq!(server.sync(checks.clone()).len(), 1);

        // Freed: the next sync opens it.
        drop(taken);
        assert_eq!(server.sync(checks), vec![]);
        let mut ports = vec![(LOCALHOST, taken_port), (LOCALHOST, other)];
        ports.sort();
        assert_eq!(server.ports(), ports);
        assert_answers(taken_port, "a", 200, 1).await;
        assert_answers(other, "b", 200, 3).await;
    }

    #[tokio::test]
    async fn unhealthy_proxy_fails_every_check() {
        // A change queued with a timeout of 0 is late at once.
        let proxy = Arc::new(ProxyHealth::new(Duration::ZERO));
        proxy.queued_update(IpFamily::V4);
        let server = ServiceHealthServer::new(Arc::clone(&proxy));
        let port = free_port();
        assert_eq!(server.sync(vec![check("a", port, 4)]), vec![]);
        let response = get(at(port), "/").await.expect("GET");
        assert_eq!(response.status, 503);
        assert_eq!(response.header("x-load-balancing-endpoint-weight"), "4");
        assert_eq!(response.json()["serviceProxyHealthy"], false);
        assert_eq!(response.json()["localEndpoints"], 4);

        proxy.updated(IpFamily::V4);
        let response = get(at(port), "/").await.expect("GET");
        assert_eq!(response.status, 200);
        assert_eq!(response.json()["serviceProxyHealthy"], true);
    }

    #[tokio::test]
    async fn conflicts_and_port_zero_are_reported() {
        let server = healthy_server();
        let port = free_port();
        let failures = server.sync(vec![
            check("a", port, 1),
            check("b", port, 1),
            check("c", 0, 1),
        ]);
        let failed: Vec<_> = failures
            .iter()
            .map(|f| (f.service.name.as_str(), f.port))
            .collect();
        assert_eq!(failed, vec![("b", port), ("c", 0)]);
        assert_answers(port, "a", 200, 1).await;

        // The Service behind a listener changes without a rebind.
        assert_eq!(server.sync(vec![check("b", port, 5)]), vec![]);
        assert_answers(port, "b", 200, 5).await;
    }

    #[tokio::test]
    async fn several_addresses() {
        let Ok(probe) = std::net::TcpListener::bind("[::1]:0") else {
            eprintln!("no IPv6 loopback here; skipping");
            return;
        };
        drop(probe);
        let server = healthy_server();
        let port = free_port();
        let mut both = check("a", port, 1);
        both.addresses = vec![LOCALHOST, IpAddr::V6(Ipv6Addr::LOCALHOST)];
        if !server.sync(vec![both.clone()]).is_empty() {
            eprintln!("port {port} taken on ::1; skipping");
            return;
        }
        let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        assert_eq!(get(v6, "/").await.expect("GET [::1]").status, 200);
        assert_answers(port, "a", 200, 1).await;

        // One address goes away: only its listener closes.
        let mut v4_only = both;
        v4_only.addresses = vec![LOCALHOST];
        assert_eq!(server.sync(vec![v4_only]), vec![]);
        assert_eq!(server.ports(), vec![(LOCALHOST, port)]);
        assert!(std::net::TcpStream::connect(v6).is_err());
        assert_answers(port, "a", 200, 1).await;
    }

    /// Binds the unspecified addresses, so it only runs in a network namespace of its own:
    /// `unshare -n sh -c 'ip link set lo up && cargo test -p agent --lib dual_stack -- --ignored'`.
    #[tokio::test]
    #[ignore = "binds 0.0.0.0 and [::]; run in a private network namespace"]
    async fn dual_stack_unspecified() {
        let server = healthy_server();
        let port = free_port();
        let v4 = ServiceHealthCheck {
            addresses: vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)],
            ..check("a", port, 1)
        };
        let v6 = ServiceHealthCheck {
            family: IpFamily::V6,
            addresses: vec![IpAddr::V6(Ipv6Addr::UNSPECIFIED)],
            ..check("a", port, 2)
        };
        // IPv4 first, IPv6 appearing later (our 0.0.0.0 must make room for a dual-stack [::]).
        assert_eq!(server.sync(vec![v4.clone()]), vec![]);
        assert_answers(port, "a", 200, 1).await;
        assert_eq!(server.sync(vec![v4.clone(), v6.clone()]), vec![]);
        assert_eq!(
            server.ports(),
            vec![
                (IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
                (IpAddr::V6(Ipv6Addr::UNSPECIFIED), port)
            ]
        );
        // IPv4 clients get the IPv4 count, IPv6 clients the IPv6 count.
        assert_answers(port, "a", 200, 1).await;
        let v6_addr = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), port);
        assert_eq!(
            get(v6_addr, "/").await.expect("GET [::1]").json()["localEndpoints"],
            2
        );
        // Stable across syncs.
        assert_eq!(server.sync(vec![v4.clone(), v6.clone()]), vec![]);
        assert_answers(port, "a", 200, 1).await;
        // IPv6 goes away: 0.0.0.0 gets a socket of its own.
        assert_eq!(server.sync(vec![v4]), vec![]);
        assert_eq!(
            server.ports(),
            vec![(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)]
        );
        assert_answers(port, "a", 200, 1).await;
        assert!(std::net::TcpStream::connect(v6_addr).is_err());
        // Everything goes away.
        assert_eq!(server.sync(vec![]), vec![]);
        drop(std::net::TcpListener::bind(("0.0.0.0", port)).expect("free"));
    }
}
