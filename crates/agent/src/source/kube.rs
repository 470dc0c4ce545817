//! The API server source: a client, and three watchers (Services, EndpointSlices, this Node)
//! whose events go through the [adapters](super::adapter) into the [`Shared`] state.

use super::adapter::{WatchAdapter, Watched};
use crate::state::{Shared, SourceKind};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::config::{KubeConfigOptions, Kubeconfig, KubeconfigError};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Api, Client, Config, Resource};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Services of another proxy carry this label (`!` selects those without it).
pub const SERVICE_SELECTOR: &str = "!service.kubernetes.io/service-proxy-name";

/// EndpointSlices of another proxy's Services, and of headless Services, are not ours.
pub const ENDPOINT_SLICE_SELECTOR: &str =
    "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless";

/// The field selector of this node's Node object.
pub fn node_selector(node_name: &str) -> String {
    format!("metadata.name={node_name}")
}

/// Why no API client could be made.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The kubeconfig file given could not be read or used.
    #[error("kubeconfig {}: {source}", path.display())]
    Kubeconfig {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: KubeconfigError,
    },
    /// No kubeconfig given, none found ($KUBECONFIG, ~/.kube/config), not in a cluster, and no
    /// API server address to fall back to.
    #[error("no API server configuration: {0}")]
    Infer(#[source] kube::config::InferConfigError),
    /// Credentials were evidently meant to be used (`sign`) but could not be loaded; the agent
    /// refuses to fall back to an anonymous connection to `api_server`.
    #[error("{sign}, but no credentials could be loaded from it ({source}); refusing to connect to the API server anonymously")]
    CredentialsUnusable {
        /// What shows that credentials were expected.
        sign: String,
        /// Why loading them failed.
        #[source]
        source: kube::config::InferConfigError,
    },
    /// The API server address is not an `http://` or `https://` URL.
    #[error("API server address {url:?}: {reason}")]
    ApiServer {
        /// The address given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The client could not be built from the configuration (TLS, credentials).
    #[error("building the API client: {0}")]
    Client(#[source] kube::Error),
}

/// Reads the configuration: `kubeconfig` when given, else inferred (the kubeconfig of
/// $KUBECONFIG or ~/.kube/config, else the in-cluster service account); `api_server` then
/// replaces the cluster URL. With `api_server` and nothing to infer, the client connects to
/// it without credentials (a local or test API server).
async fn load_config(
    kubeconfig: Option<&Path>,
    api_server: Option<&str>,
) -> Result<Config, SourceError> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig_error = |source| SourceError::Kubeconfig {
                path: path.to_owned(),
                source,
            };
            let file = Kubeconfig::read_from(path).map_err(kubeconfig_error)?;
            Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(kubeconfig_error)?
        }
        None => match (Config::infer().await, api_server) {
            (Ok(config), _) => config,
            (Err(error), Some(url)) => {
                if let Some(sign) = credentials_expected(
                    |name| std::env::var_os(name),
                    Path::new(SERVICE_ACCOUNT_TOKEN).exists(),
                ) {
                    // Credentials were meant to be found: talking to the API server without
                    // them would only fail later, with a less clear 401/403.
                    return Err(SourceError::CredentialsUnusable {
                        sign,
                        source: error,
                    });
                }
                tracing::info!(
                    url,
                    reason = %error,
                    "no kubeconfig and not in a cluster: connecting without credentials"
                );
                // The URL is set just below.
                Config::new(Default::default())
            }
            (Err(error), None) => return Err(SourceError::Infer(error)),
        },
    };
    if let Some(url) = api_server {
        set_cluster_url(&mut config, url)?;
    }
    Ok(config)
}

/// Where a pod's service account token is mounted.
const SERVICE_ACCOUNT_TOKEN: &str = "/var/run/secrets/kubernetes.io/serviceaccount/token";

/// Why credentials were expected although none could be loaded: `$KUBECONFIG` is set, the
/// in-cluster environment (`KUBERNETES_SERVICE_HOST`) is present, or a service account token is
/// mounted. `None`: nothing suggests credentials, so an anonymous connection to an explicit
/// `api_server` is what was asked for (a local or test API server).
fn credentials_expected(
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
    token_mounted: bool,
) -> Option<String> {
    for name in ["KUBECONFIG", "KUBERNETES_SERVICE_HOST"] {
        if env(name).is_some_and(|v| !v.is_empty()) {
            return Some(format!("${name} is set"));
        }
    }
    token_mounted.then(|| format!("{SERVICE_ACCOUNT_TOKEN} exists"))
}

/// Replaces the cluster URL with `text`, an `http://` or `https://` URL with a host.
fn set_cluster_url(config: &mut Config, text: &str) -> Result<(), SourceError> {
    let invalid = |reason: String| SourceError::ApiServer {
        url: text.to_owned(),
        reason,
    };
    config.cluster_url = text.parse().map_err(|e| invalid(format!("{e}")))?;
    match config.cluster_url.scheme_str() {
        Some("http" | "https") if config.cluster_url.authority().is_some() => Ok(()),
        _ => Err(invalid(
            "expected http://HOST[:PORT] or https://HOST[:PORT]".to_owned(),
        )),
    }
}

/// An API client: from the kubeconfig file `kubeconfig` when given, else inferred (the
/// kubeconfig of $KUBECONFIG or ~/.kube/config, else the in-cluster service account). When
/// `api_server` is given it replaces the cluster URL (and, with nothing to infer, the client
/// connects to it without credentials: `http://127.0.0.1:PORT` for a local fake API server).
pub async fn client(
    kubeconfig: Option<&Path>,
    api_server: Option<&str>,
) -> Result<Client, SourceError> {
    let config = load_config(kubeconfig, api_server).await?;
    Client::try_from(config).map_err(SourceError::Client)
}

/// Called with the kind and the message of every watch error (for a metric, the health state).
pub type ErrorHook = Arc<dyn Fn(SourceKind, &str) + Send + Sync>;

/// Watches Services, EndpointSlices and this node's Node, applying every event to `shared`,
/// until the future is dropped. Lists use `resourceVersion=0` (served from the API server's
/// watch cache, as client-go informers do); errors are logged, reported to `on_error`, and
/// retried with kube's default backoff (relisting when the API server answers 410 Gone).
pub async fn run(client: Client, node_name: String, shared: Arc<Shared>, on_error: ErrorHook) {
    let services = follow(
        Api::<Service>::all(client.clone()),
        from_cache(watcher::Config::default().labels(SERVICE_SELECTOR)),
        &shared,
        &on_error,
    );
    let slices = follow(
        Api::<EndpointSlice>::all(client.clone()),
        from_cache(watcher::Config::default().labels(ENDPOINT_SLICE_SELECTOR)),
        &shared,
        &on_error,
    );
    let node = follow(
        Api::<Node>::all(client),
        from_cache(watcher::Config::default().fields(&node_selector(&node_name))),
        &shared,
        &on_error,
    );
    futures::join!(services, slices, node);
}

/// Lists with `resourceVersion=0`: served from the API server's watch cache, as client-go
/// informers (and kube-proxy) list, instead of a quorum read from etcd. kube sends
/// `resourceVersion=0` only for unpaginated lists (it drops it when a page size is set, as the
/// watch cache does not paginate: kube-rs#1743), so the page size is unset: the cache answers
/// with the whole list in one response anyway.
fn from_cache(config: watcher::Config) -> watcher::Config {
    let mut config = config.any_semantic();
    config.page_size = None;
    config
}

/// Follows one watcher: every event through its adapter into `shared`; errors are logged and
/// reported, and the stream goes on (the watcher recovers on the next poll, after a backoff).
async fn follow<K>(api: Api<K>, config: watcher::Config, shared: &Shared, on_error: &ErrorHook)
where
    K: Watched + Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let kind = K::KIND;
    let mut adapter = WatchAdapter::<K>::new();
    let mut events = std::pin::pin!(watcher(api, config).default_backoff());
    while let Some(event) = events.next().await {
        match event {
            Ok(event) => {
                let changes = adapter.handle(event);
                if !changes.is_empty() {
                    shared.apply(changes);
                }
            }
            Err(error) => {
                let message = error.to_string();
                tracing::warn!(?kind, error = %message, "watch of {kind:?} failed; retrying");
                on_error(kind, &message);
            }
        }
    }
    // The watcher never ends on its own; say so if it ever does.
    tracing::error!(?kind, "watch of {kind:?} ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use model::ServiceRef;
    use serde_json::{json, Value};
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::time::Duration;
    use tokio::time::timeout;
    use tower_test::mock::{Handle, SendResponse};

    const WAIT: Duration = Duration::from_secs(10);

    /// One request to the fake API server.
    struct Call {
        path: String,
        query: BTreeMap<String, String>,
        respond: SendResponse<Response<Body>>,
    }

    impl Call {
        fn watch(&self) -> bool {
            self.query.get("watch").map(String::as_str) == Some("true")
        }

        fn reply(self, body: &Value) {
            let bytes = serde_json::to_vec(body).expect("JSON");
            self.respond.send_response(Response::new(Body::from(bytes)));
        }

        /// Answers a watch with these events, one JSON document a line, then ends the stream.
        fn reply_events(self, events: &[Value]) {
            let mut bytes = Vec::new();
            for event in events {
                bytes.extend(serde_json::to_vec(event).expect("JSON"));
                bytes.push(b'\n');
            }
            self.respond.send_response(Response::new(Body::from(bytes)));
        }
    }

    /// Decodes `application/x-www-form-urlencoded` text.
    fn decode(text: &str) -> String {
        let bytes = text.as_bytes();
        let mut out = Vec::new();
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("ASCII");
                    out.push(u8::from_str_radix(hex, 16).expect("a %XX escape"));
                    i += 2;
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8(out).expect("UTF-8")
    }

    async fn next_call(api: &mut ApiHandle) -> Call {
        let (request, respond) = timeout(WAIT, api.next_request())
            .await
            .expect("a request within the timeout")
            .expect("the client is alive");
        assert_eq!(request.method(), http::Method::GET);
        let query = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|pair| !pair.is_empty())
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (decode(k), decode(v))
            })
            .collect();
        Call {
            path: request.uri().path().to_owned(),
            query,
            respond,
        }
    }

    fn service(name: &str, ip: &str, version: &str) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version,
                         "managedFields": [{"manager": "kubectl", "operation": "Apply"}]},
            "spec": {"type": "ClusterIP", "clusterIP": ip, "clusterIPs": [ip],
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
        })
    }

    fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
        json!({
            "apiVersion": api_version, "kind": kind,
            "metadata": {"resourceVersion": "10"},
            "items": items,
        })
    }

    const SERVICES: &str = "/api/v1/services";
    const SLICES: &str = "/apis/discovery.k8s.io/v1/endpointslices";
    const NODES: &str = "/api/v1/nodes";

    /// The list the fake API server answers for `path`.
    fn list_for(path: &str, services: &[&str]) -> Value {
        match path {
            SERVICES => list(
                "ServiceList",
                "v1",
                services
                    .iter()
                    .enumerate()
                    .map(|(i, name)| service(name, &format!("10.96.0.{}", i + 1), "5"))
                    .collect(),
            ),
            SLICES => list(
                "EndpointSliceList",
                "discovery.k8s.io/v1",
                vec![json!({
                    "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                    "metadata": {"name": "a-1", "namespace": "ns", "resourceVersion": "6",
                                 "labels": {"kubernetes.io/service-name": "a"}},
                    "addressType": "IPv4",
                    "endpoints": [{"addresses": ["10.244.1.1"], "nodeName": "node-a"}],
                    "ports": [{"name": "http", "protocol": "TCP", "port": 8080}],
                })],
            ),
            NODES => list(
                "NodeList",
                "v1",
                vec![json!({
                    "apiVersion": "v1", "kind": "Node",
                    "metadata": {"name": "node-a", "resourceVersion": "7"},
                    "status": {"addresses": [{"type": "InternalIP", "address": "192.168.1.10"}]},
                })],
            ),
            other => panic!("unexpected request for {other}"),
        }
    }

    type Errors = Arc<Mutex<Vec<(SourceKind, String)>>>;

    /// The API server's side of the mock client.
    type ApiHandle = Handle<Request<Body>, Response<Body>>;

    /// The source running against a mock API server.
    fn start() -> (ApiHandle, Arc<Shared>, Errors, tokio::task::JoinHandle<()>) {
        let (service, api) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let shared = Arc::new(Shared::new());
        let errors: Errors = Arc::default();
        let seen = errors.clone();
        let on_error: ErrorHook = Arc::new(move |kind, message: &str| {
            seen.lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((kind, message.to_owned()));
        });
        let task = tokio::spawn(run(client, "node-a".to_owned(), shared.clone(), on_error));
        (api, shared, errors, task)
    }

    async fn until(shared: &Shared, what: &str, condition: impl Fn(&Shared) -> bool) {
        timeout(WAIT, async {
            while !condition(shared) {
                shared.changed().await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"));
    }

    fn errors_of(errors: &Errors) -> Vec<(SourceKind, String)> {
        errors.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// The three lists carry the selectors (labels for Services and EndpointSlices, this node's
    /// name for Nodes) and `resourceVersion=0`; the watches that follow carry the same
    /// selectors and start from the list's resourceVersion; the listed objects reach the view
    /// and the state is initialized.
    #[tokio::test]
    async fn lists_and_watches_carry_selectors_and_fill_the_view() {
        let (mut api, shared, errors, task) = start();
        let mut lists = BTreeMap::new();
        let mut watches = BTreeMap::new();
        let mut open = Vec::new();
        while lists.len() < 3 || watches.len() < 3 {
            let call = next_call(&mut api).await;
            if call.watch() {
                watches.insert(call.path.clone(), call.query.clone());
                open.push(call.respond); // a watch that stays open, quiet
            } else {
                let body = list_for(&call.path, &["a", "b"]);
                lists.insert(call.path.clone(), call.query.clone());
                call.reply(&body);
            }
        }
        until(&shared, "the first lists", Shared::initialized).await;

        let get = |m: &BTreeMap<String, BTreeMap<String, String>>, path: &str, key: &str| {
            m.get(path).and_then(|q| q.get(key)).cloned()
        };
        for m in [&lists, &watches] {
            assert_eq!(
                get(m, SERVICES, "labelSelector").as_deref(),
                Some(SERVICE_SELECTOR)
            );
            assert_eq!(get(m, SERVICES, "fieldSelector"), None);
            assert_eq!(
                get(m, SLICES, "labelSelector").as_deref(),
                Some("!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless")
            );
            assert_eq!(
                get(m, NODES, "fieldSelector").as_deref(),
                Some("metadata.name=node-a")
            );
            assert_eq!(get(m, NODES, "labelSelector"), None);
        }
        for path in [SERVICES, SLICES, NODES] {
            // Unpaginated, or kube would drop resourceVersion=0.
            assert_eq!(get(&lists, path, "limit"), None, "{path}");
            assert_eq!(
                get(&lists, path, "resourceVersion").as_deref(),
                Some("0"),
                "{path}"
            );
            assert_eq!(
                get(&lists, path, "resourceVersionMatch").as_deref(),
                Some("NotOlderThan"),
                "{path}"
            );
            assert_eq!(
                get(&watches, path, "resourceVersion").as_deref(),
                Some("10"),
                "{path}"
            );
        }

        shared.with_view(|v| {
            assert_eq!(
                v.service_keys(),
                [ServiceRef::new("ns", "a"), ServiceRef::new("ns", "b")]
            );
            assert_eq!(v.slice_keys(), [("ns".to_owned(), "a-1".to_owned())]);
            assert_eq!(
                v.node().and_then(|n| n.metadata.name.as_deref()),
                Some("node-a")
            );
        });
        let pending = shared.take_pending();
        assert_eq!(pending.services.len(), 2);
        assert!(pending.all);
        assert_eq!(errors_of(&errors), []);
        task.abort();
        drop(open);
    }

    /// A watch event reaches the view; a 410 Gone is reported, the watcher relists (again with
    /// `resourceVersion=0`) and the Services missing from the relist leave the view.
    #[tokio::test]
    async fn watch_events_and_410_relist_reach_the_view() {
        let (mut api, shared, errors, task) = start();
        let mut open = Vec::new();
        let mut services_watched = false;
        while !services_watched || !shared.initialized() {
            let call = next_call(&mut api).await;
            match (call.path.as_str(), call.watch()) {
                (SERVICES, true) => {
                    services_watched = true;
                    let added = service("c", "10.96.0.3", "11");
                    let gone = json!({
                        "type": "ERROR",
                        "object": {"apiVersion": "v1", "kind": "Status", "status": "Failure",
                                   "reason": "Expired", "code": 410,
                                   "message": "too old resource version: 10 (12)"},
                    });
                    call.reply_events(&[json!({"type": "ADDED", "object": added}), gone]);
                }
                (_, true) => open.push(call.respond),
                (path, false) => {
                    let body = list_for(path, &["a", "b"]);
                    call.reply(&body);
                }
            }
        }

        // The relist after the backoff: only a and c remain.
        let relist = loop {
            let call = next_call(&mut api).await;
            if call.path == SERVICES && !call.watch() {
                break call;
            }
            assert!(call.watch(), "only the Services are listed again");
            open.push(call.respond);
        };
        assert_eq!(
            relist.query.get("resourceVersion").map(String::as_str),
            Some("0")
        );
        let mut body = list_for(SERVICES, &["a"]);
        if let Some(items) = body["items"].as_array_mut() {
            items.push(service("c", "10.96.0.3", "11"));
        }
        relist.reply(&body);

        let a_and_c = [ServiceRef::new("ns", "a"), ServiceRef::new("ns", "c")];
        until(&shared, "the relist", |s| {
            s.with_view(|v| v.service_keys()) == a_and_c
        })
        .await;
        let reported = errors_of(&errors);
        assert_eq!(reported.len(), 1, "{reported:?}");
        assert_eq!(reported[0].0, SourceKind::Services);
        assert!(
            reported[0].1.contains("too old resource version"),
            "{reported:?}"
        );
        task.abort();
        drop(open);
    }

    /// A fake API server on 127.0.0.1 answering one `GET /version`; returns its URL and the
    /// request head it received.
    async fn fake_version_server() -> (String, tokio::task::JoinHandle<String>) {
        use std::io::{Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
        let url = format!(
            "http://{}",
            listener.local_addr().expect("the local address")
        );
        let server = tokio::task::spawn_blocking(move || {
            let (mut stream, _) = listener.accept().expect("a connection");
            stream.set_read_timeout(Some(WAIT)).expect("a read timeout");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).expect("the request");
                assert!(n > 0, "connection closed mid-request");
                head.extend_from_slice(&buf[..n]);
            }
            let body = json!({
                "major": "1", "minor": "33", "gitVersion": "v1.33.0", "gitCommit": "c",
                "gitTreeState": "clean", "buildDate": "2025-04-23T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64",
            })
            .to_string();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
                 connection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).expect("the response");
            String::from_utf8_lossy(&head).into_owned()
        });
        (url, server)
    }

    fn scratch_file(name: &str, text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "kube-nftproxy-source-{}-{name}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        let path = dir.join("kubeconfig");
        std::fs::write(&path, text).expect("the kubeconfig");
        path
    }

    /// An explicit kubeconfig supplies the credentials and `api_server` replaces its server:
    /// a plain `http://` URL works.
    #[tokio::test]
    async fn kubeconfig_with_api_server_override() {
        let (url, server) = fake_version_server().await;
        let path = scratch_file(
            "override",
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: https://kubernetes.invalid:6443\n\
             users:\n- name: test\n  user:\n    token: t0k3n\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n",
        );
        let client = client(Some(&path), Some(&url)).await.expect("a client");
        let version = timeout(WAIT, client.apiserver_version())
            .await
            .expect("an answer within the timeout")
            .expect("the version");
        assert_eq!(version.git_version, "v1.33.0");
        let head = timeout(WAIT, server)
            .await
            .expect("the server finished")
            .expect("the server task");
        assert!(head.starts_with("GET /version "), "{head}");
        assert!(
            head.to_ascii_lowercase()
                .contains("authorization: bearer t0k3n"),
            "{head}"
        );
        if let Some(dir) = path.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    /// With only an API server address (and, in a test environment, no kubeconfig nor
    /// service account to infer), the client talks plain HTTP to it.
    #[tokio::test]
    async fn api_server_alone_reaches_a_plain_http_server() {
        let (url, server) = fake_version_server().await;
        let client = client(None, Some(&url)).await.expect("a client");
        let version = timeout(WAIT, client.apiserver_version())
            .await
            .expect("an answer within the timeout")
            .expect("the version");
        assert_eq!(version.minor, "33");
        let head = timeout(WAIT, server)
            .await
            .expect("the server finished")
            .expect("the server task");
        assert!(head.starts_with("GET /version "), "{head}");
    }

    /// Anonymous access is only for an explicit API server with no sign of credentials.
    #[test]
    fn credentials_are_expected_from_any_sign_of_them() {
        use std::ffi::OsString;
        let none = |_: &str| None::<OsString>;
        assert_eq!(credentials_expected(none, false), None);
        let kubeconfig = |n: &str| (n == "KUBECONFIG").then(|| OsString::from("/etc/kc"));
        assert_eq!(
            credentials_expected(kubeconfig, false).as_deref(),
            Some("$KUBECONFIG is set")
        );
        let in_cluster =
            |n: &str| (n == "KUBERNETES_SERVICE_HOST").then(|| OsString::from("10.96.0.1"));
        assert_eq!(
            credentials_expected(in_cluster, false).as_deref(),
            Some("$KUBERNETES_SERVICE_HOST is set")
        );
        let empty = |_: &str| Some(OsString::new());
        assert_eq!(credentials_expected(empty, false), None);
        assert!(credentials_expected(none, true)
            .is_some_and(|s| s.contains("serviceaccount/token exists")));
    }

    /// Bad inputs are errors that name what is wrong.
    #[tokio::test]
    async fn bad_inputs_are_named() {
        let missing = Path::new("/nonexistent/kube-nftproxy/kubeconfig");
        let error = client(Some(missing), None).await.err().expect("an error");
        assert!(matches!(error, SourceError::Kubeconfig { .. }), "{error:?}");
        assert!(error
            .to_string()
            .contains("/nonexistent/kube-nftproxy/kubeconfig"));

        for url in ["127.0.0.1:6443", "ftp://host", "http://", "not a url"] {
            let error = client(None, Some(url)).await.err().expect("an error");
            assert!(
                matches!(error, SourceError::ApiServer { .. }),
                "{url}: {error:?}"
            );
            assert!(error.to_string().contains(url), "{error}");
        }
    }
}
