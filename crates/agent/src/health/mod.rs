//! Health checking, as kube-proxy's `pkg/proxy/healthcheck` (DESIGN §2.5):
//!
//! - [`ProxyHealth`] tracks whether the agent keeps its rules up to date and whether its Node
//!   is eligible for traffic; [`node_router`] serves it as `/healthz` and `/livez`
//!   (default `0.0.0.0:10256`).
//! - [`ServiceHealthServer`] keeps one HTTP listener per `healthCheckNodePort` address of the
//!   LoadBalancer Services with `externalTrafficPolicy: Local`, answering with
//!   [`service_response`].

mod listeners;
mod node;
mod service;

use std::sync::Arc;

use axum::http::header::{HeaderName, HeaderValue, CONTENT_TYPE, X_CONTENT_TYPE_OPTIONS};
use axum::routing::{any, MethodRouter};
use axum::Router;

pub use listeners::{BindFailure, ServiceHealthCheck, ServiceHealthServer};
pub use node::{
    NodeEndpoint, NodeHealthResponse, ProxierHealthReport, ProxyHealth, ProxyHealthReport,
    TO_BE_DELETED_TAINT,
};
pub use service::{
    service_response, ServiceHealthBody, ServiceHealthResponse, ENDPOINT_WEIGHT_HEADER,
};

/// The headers of every health answer: `Content-Type: application/json` and
/// `X-Content-Type-Options: nosniff`.
fn json_headers() -> [(HeaderName, HeaderValue); 2] {
    [
        (CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
    ]
}

/// The node health server's routes: `/healthz` and `/livez` (any method, as kube-proxy's
/// handlers); every other path is 404. `on_response` is called with the endpoint and the
/// status code (200 or 503) of every `/healthz` and `/livez` answer, for the
/// `kubeproxy_proxy_healthz_total{code}` / `kubeproxy_proxy_livez_total{code}` counters.
pub fn node_router(
    health: Arc<ProxyHealth>,
    on_response: Arc<dyn Fn(NodeEndpoint, u16) + Send + Sync>,
) -> Router {
    let route = |endpoint: NodeEndpoint| -> MethodRouter {
        let health = Arc::clone(&health);
        let on_response = Arc::clone(&on_response);
        any(move || {
            let response = health.respond(endpoint);
            on_response(endpoint, response.status.as_u16());
            std::future::ready(response)
        })
    };
    Router::new()
        .route(NodeEndpoint::Healthz.path(), route(NodeEndpoint::Healthz))
        .route(NodeEndpoint::Livez.path(), route(NodeEndpoint::Livez))
}

/// A minimal HTTP/1.1 client over `std::net::TcpStream` for the tests of this module.
#[cfg(test)]
pub(crate) mod testing {
    use std::collections::BTreeMap;
    use std::io::{self, BufRead, BufReader, Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::time::Duration;

    /// A parsed response.
    #[derive(Debug)]
    pub(crate) struct HttpResponse {
        pub(crate) status: u16,
        /// Header names lowercased; repeated headers keep every value.
        pub(crate) headers: BTreeMap<String, Vec<String>>,
        pub(crate) body: String,
    }

    impl HttpResponse {
        /// The only value of header `name` (lowercase); panics when missing or repeated.
        pub(crate) fn header(&self, name: &str) -> &str {
            match self.headers.get(name).map(Vec::as_slice) {
                Some([value]) => value,
                other => panic!("header {name}: {other:?}"),
            }
        }

        /// The body parsed as JSON.
        pub(crate) fn json(&self) -> serde_json::Value {
            serde_json::from_str(&self.body).expect("the body is JSON")
        }
    }

    /// A kept-alive HTTP/1.1 connection (blocking; use from `spawn_blocking`).
    pub(crate) struct Connection {
        reader: BufReader<TcpStream>,
    }

    impl Connection {
        /// Connects to `addr`.
        pub(crate) fn open(addr: SocketAddr) -> io::Result<Connection> {
            let stream = TcpStream::connect(addr)?;
            // A safety net against a hanging test, not a timing assertion.
            stream.set_read_timeout(Some(Duration::from_secs(20)))?;
            Ok(Connection {
                reader: BufReader::new(stream),
            })
        }

        /// Sends `GET path` and reads one response (framed by Content-Length).
        pub(crate) fn get(&mut self, path: &str, close: bool) -> io::Result<HttpResponse> {
            let connection = if close { "close" } else { "keep-alive" };
            write!(
                self.reader.get_mut(),
                "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: {connection}\r\n\r\n"
            )?;
            let mut line = String::new();
            self.reader.read_line(&mut line)?;
            let status = line
                .split_whitespace()
                .nth(1)
                .and_then(|code| code.parse().ok())
                .ok_or_else(|| io::Error::other(format!("bad status line {line:?}")))?;
            let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
            loop {
                line.clear();
                self.reader.read_line(&mut line)?;
                let header = line.trim_end();
                if header.is_empty() {
                    break;
                }
                let (name, value) = header
                    .split_once(':')
                    .ok_or_else(|| io::Error::other(format!("bad header {header:?}")))?;
                headers
                    .entry(name.trim().to_ascii_lowercase())
                    .or_default()
                    .push(value.trim().to_owned());
            }
            let length: usize = headers
                .get("content-length")
                .and_then(|v| v.first())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0; length];
            self.reader.read_exact(&mut body)?;
            let body = String::from_utf8(body).map_err(io::Error::other)?;
            Ok(HttpResponse {
                status,
                headers,
                body,
            })
        }
    }

    /// `GET path` on a new connection (`Connection: close`), off the async runtime's threads.
    pub(crate) async fn get(addr: SocketAddr, path: &str) -> io::Result<HttpResponse> {
        let path = path.to_owned();
        tokio::task::spawn_blocking(move || Connection::open(addr)?.get(&path, true))
            .await
            .map_err(io::Error::other)?
    }

    /// A port on 127.0.0.1 that was free a moment ago.
    pub(crate) fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind 127.0.0.1:0")
            .port()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::get;
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    type Calls = Arc<Mutex<Vec<(NodeEndpoint, u16)>>>;

    async fn serve(health: Arc<ProxyHealth>) -> (std::net::SocketAddr, Calls) {
        let calls: Calls = Arc::default();
        let recorded = Arc::clone(&calls);
        let router = node_router(
            health,
            Arc::new(move |endpoint, code| {
                recorded
                    .lock()
                    .expect("not poisoned")
                    .push((endpoint, code));
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        tokio::spawn(async move { axum::serve(listener, router).await });
        (addr, calls)
    }

    #[tokio::test]
    async fn node_router_serves_healthz_and_livez() {
        let health = Arc::new(ProxyHealth::new(Duration::from_secs(60)));
        let (addr, calls) = serve(Arc::clone(&health)).await;

        // The Node is not known yet: /healthz fails, /livez does not.
        let healthz = get(addr, "/healthz").await.expect("GET /healthz");
        assert_eq!(healthz.status, 503);
        assert_eq!(healthz.header("content-type"), "application/json");
        assert_eq!(healthz.header("x-content-type-options"), "nosniff");
        let body = healthz.json();
        assert_eq!(body["nodeEligible"], false);
        assert_eq!(body["healthy"], true);

        let livez = get(addr, "/livez").await.expect("GET /livez");
        assert_eq!(livez.status, 200);
        assert_eq!(livez.header("content-type"), "application/json");
        assert_eq!(livez.header("x-content-type-options"), "nosniff");
        let body = livez.json();
        assert_eq!(body["healthy"], true);
        assert!(body.get("nodeEligible").is_none(), "{body}");
        assert!(body["currentTime"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z')));

        health.set_node(Some(&k8s_openapi::api::core::v1::Node::default()));
        let healthz = get(addr, "/healthz").await.expect("GET /healthz");
        assert_eq!(healthz.status, 200);
        assert_eq!(healthz.json()["nodeEligible"], true);

        // Other paths are not ours, and are not counted.
        assert_eq!(get(addr, "/").await.expect("GET /").status, 404);
        assert_eq!(get(addr, "/healthz/x").await.expect("GET").status, 404);
        assert_eq!(get(addr, "/metrics").await.expect("GET").status, 404);

        // A change that is late at once (timeout 0) fails both.
        let late = Arc::new(ProxyHealth::new(Duration::ZERO));
        late.set_node(Some(&k8s_openapi::api::core::v1::Node::default()));
        late.queued_update(model::IpFamily::V4);
        let (late_addr, late_calls) = serve(late).await;
        assert_eq!(get(late_addr, "/healthz").await.expect("GET").status, 503);
        assert_eq!(get(late_addr, "/livez").await.expect("GET").status, 503);

        assert_eq!(
            *calls.lock().expect("not poisoned"),
            vec![
                (NodeEndpoint::Healthz, 503),
                (NodeEndpoint::Livez, 200),
                (NodeEndpoint::Healthz, 200),
            ]
        );
        assert_eq!(
            *late_calls.lock().expect("not poisoned"),
            vec![(NodeEndpoint::Healthz, 503), (NodeEndpoint::Livez, 503)]
        );
    }
}
