//! An in-process fake Kubernetes API server for tests: plain HTTP, no authentication, read-only
//! for clients, changed by the test through [`FakeApiServer`].
//!
//! What clients get, as from a real API server:
//!
//! * lists of a collection (`GET /api/v1/services`, `/apis/discovery.k8s.io/v1/endpointslices`,
//!   `/api/v1/nodes`, or the namespaced forms `/api/v1/namespaces/NS/services`), a `…List` with
//!   `metadata.resourceVersion`, honouring `labelSelector` (`key`, `!key`, `key=value`,
//!   `key==value`, `key!=value`, `key in (…)`, `key notin (…)`, comma-separated),
//!   `fieldSelector` (`metadata.name`, `metadata.namespace`; `=`, `==`, `!=`), `limit` and
//!   `continue` (pages of one consistent snapshot), `resourceVersion` and
//!   `resourceVersionMatch` (`Exact` lists an old state, reconstructed from the history);
//! * one object (`GET /api/v1/nodes/NAME`);
//! * watches (`watch=true` or `watch=1`): newline-delimited JSON events
//!   `{"type":"ADDED|MODIFIED|DELETED|BOOKMARK|ERROR","object":…}`. From `resourceVersion=N`:
//!   every change after N, then live changes. Without a resource version (or `0`): the current
//!   objects as ADDED events first (with `sendInitialEvents=true`, ended by a bookmark annotated
//!   `k8s.io/initial-events-end`). An object that starts or stops matching the selectors is
//!   ADDED or DELETED. With `allowWatchBookmarks=true`, a BOOKMARK every second (and on
//!   [`FakeApiServer::bookmark`]). `timeoutSeconds` ends the response. From a resource version
//!   older than the history kept ([`FakeApiServer::compact`]): one ERROR event carrying a
//!   `Status` with code 410, reason `Expired`, as the API server sends, which makes kube's
//!   watcher relist.
//!
//! Resource versions are one counter for all kinds. Services, EndpointSlices and Nodes are
//! served from the start (empty lists); any other k8s-openapi kind once applied or
//! [registered](FakeApiServer::register).
//!
//! ```no_run
//! use fake_apiserver::FakeApiServer;
//! use k8s_openapi::api::core::v1::Service;
//!
//! let server = FakeApiServer::start(std::net::TcpListener::bind("127.0.0.1:0").unwrap());
//! let svc = Service::default(); // with metadata.name set
//! server.apply(&svc);
//! // kube::Config::new(server.url().parse().unwrap()) reaches it.
//! server.delete::<Service>(Some("default"), "web");
//! server.stop();
//! ```

mod http;
mod selector;
mod store;

use k8s_openapi::{NamespaceResourceScope, Resource};
use serde::Serialize;
use std::any::TypeId;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;
use store::{KindInfo, ResourceType, Store};
use tokio::sync::oneshot;

pub use selector::{FieldSelector, LabelSelector};

/// How often watches that allow bookmarks get one.
pub const BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);

/// A running fake API server. Dropping it stops it ([`FakeApiServer::stop`]).
#[derive(Debug)]
pub struct FakeApiServer {
    store: Arc<Store>,
    url: String,
    shutdown: Mutex<Option<oneshot::Sender<()>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

fn resource_type<K: Resource>() -> ResourceType {
    ResourceType {
        group: K::GROUP.to_owned(),
        version: K::VERSION.to_owned(),
        plural: K::URL_PATH_SEGMENT.to_owned(),
    }
}

fn kind_info<K>() -> KindInfo
where
    K: Resource,
    K::Scope: 'static,
{
    KindInfo {
        kind: K::KIND.to_owned(),
        api_version: K::API_VERSION.to_owned(),
        namespaced: TypeId::of::<K::Scope>() == TypeId::of::<NamespaceResourceScope>(),
    }
}

impl FakeApiServer {
    /// Serves on `listener` (bound anywhere, also inside another network namespace: the socket
    /// keeps its namespace) from a thread of its own running a tokio runtime. Panics if the
    /// listener cannot be used or the thread cannot be started (test support).
    pub fn start(listener: std::net::TcpListener) -> FakeApiServer {
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("fake API server: the listener has no address: {e}"));
        listener
            .set_nonblocking(true)
            .unwrap_or_else(|e| panic!("fake API server: setting the listener non-blocking: {e}"));
        let store = Arc::new(Store::new());
        let server = FakeApiServer {
            store: store.clone(),
            url: format!("http://{addr}"),
            shutdown: Mutex::new(None),
            thread: Mutex::new(None),
        };
        server.register::<k8s_openapi::api::core::v1::Service>();
        server.register::<k8s_openapi::api::discovery::v1::EndpointSlice>();
        server.register::<k8s_openapi::api::core::v1::Node>();

        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let thread = std::thread::Builder::new()
            .name(format!("fake-apiserver-{}", addr.port()))
            .spawn(move || serve(listener, store, shutdown_rx, ready_tx))
            .unwrap_or_else(|e| panic!("fake API server: starting its thread: {e}"));
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("fake API server: {e}"),
            Err(_) => panic!("fake API server: its thread ended before serving"),
        }
        *lock(&server.shutdown) = Some(shutdown_tx);
        *lock(&server.thread) = Some(thread);
        server
    }

    /// The base URL, `http://ADDRESS:PORT`.
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// Serves lists and watches of `K` (empty until objects are applied). Services,
    /// EndpointSlices and Nodes are registered from the start.
    pub fn register<K>(&self)
    where
        K: Resource,
        K::Scope: 'static,
    {
        self.store.register(resource_type::<K>(), kind_info::<K>());
    }

    /// Creates or updates an object (`metadata.name` required; a namespaced kind without
    /// `metadata.namespace` goes to `default`). Sets a new `resourceVersion` (and a `uid` and
    /// `creationTimestamp` when created) and sends ADDED or MODIFIED to the watches. An object
    /// equal to the stored one changes nothing. Returns the object's resource version.
    pub fn apply<K>(&self, obj: &K) -> u64
    where
        K: Resource + Serialize,
        K::Scope: 'static,
    {
        let value = serde_json::to_value(obj)
            .unwrap_or_else(|e| panic!("fake API server: serializing a {}: {e}", K::KIND));
        self.store
            .apply(resource_type::<K>(), kind_info::<K>(), value)
    }

    /// Deletes an object (namespace None for cluster-scoped kinds) and sends DELETED to the
    /// watches. Returns whether it existed.
    pub fn delete<K>(&self, namespace: Option<&str>, name: &str) -> bool
    where
        K: Resource,
    {
        self.store
            .delete(&resource_type::<K>(), namespace.unwrap_or(""), name)
    }

    /// Forgets the history of changes: every resource version handed out so far becomes too old
    /// to watch from (the watch answers an ERROR event with a 410 `Status`), to list exactly
    /// at, or to continue a list from. Open watches go on; the next list returns a new resource
    /// version. Combine with [`FakeApiServer::close_watches`] to make watchers relist.
    pub fn compact(&self) {
        self.store.compact();
    }

    /// Ends every open watch response now (as an API server restart or a proxy would); clients
    /// watch again from the last resource version they saw.
    pub fn close_watches(&self) {
        self.store.close_watches();
    }

    /// Sends a BOOKMARK now to every watch that allows them (besides the one every
    /// [`BOOKMARK_INTERVAL`]).
    pub fn bookmark(&self) {
        self.store.bookmark();
    }

    /// The latest resource version.
    pub fn resource_version(&self) -> u64 {
        self.store.resource_version()
    }

    /// How many watch responses are open now.
    pub fn open_watches(&self) -> usize {
        self.store.open_watches()
    }

    /// The request URIs seen so far (path and query), in order.
    pub fn requests(&self) -> Vec<String> {
        self.store.requests()
    }

    /// Stops serving: closes the listener and every connection, open watches included ("the
    /// API server is gone"). Later connections are refused. Objects can still be applied (no
    /// one sees them). Idempotent.
    pub fn stop(&self) {
        if let Some(tx) = lock(&self.shutdown).take() {
            let _ = tx.send(());
        }
        if let Some(thread) = lock(&self.thread).take() {
            if thread.join().is_err() {
                tracing::error!("the fake API server's thread panicked");
            }
        }
    }
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// The server thread: a current-thread runtime serving until `shutdown`, then dropped with
/// every task on it (listener, connections, watches).
fn serve(
    listener: std::net::TcpListener,
    store: Arc<Store>,
    shutdown: oneshot::Receiver<()>,
    ready: std::sync::mpsc::Sender<Result<(), String>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("building the runtime: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(e) => {
                let _ = ready.send(Err(format!("using the listener: {e}")));
                return;
            }
        };
        let app = http::router(store.clone());
        tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!("fake API server: {e}");
            }
        });
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(BOOKMARK_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                store.bookmark();
            }
        });
        let _ = ready.send(Ok(()));
        // A dropped sender (the FakeApiServer gone without stop) stops too.
        let _ = shutdown.await;
    });
    // Cancels the listener, every connection and every watch.
    runtime.shutdown_timeout(Duration::from_secs(1));
}
