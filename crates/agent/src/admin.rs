//! The metrics listener's routes: `GET /metrics` (Prometheus text exposition) and
//! `GET /debug/services` (what this node does, as JSON; see [`crate::debug`]).

use crate::debug::services_json;
use crate::metrics::{Metrics, CONTENT_TYPE};
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use model::NodeServices;
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::watch;

/// Where the daemon publishes what the last sync computed: `None` until the first sync, then
/// the engine's [`NodeServices`], weakly. The engine updates them in place at its next sync
/// (a copy would cost as much again: 17 MB at 10 000 Services), which leaves the weak
/// reference dead until the sync publishes them again.
pub type ServicesFeed = watch::Receiver<Option<Weak<NodeServices>>>;

/// How long `/debug/services` waits for a sync that is updating the Services.
const WAIT_FOR_SYNC: Duration = Duration::from_secs(10);

/// What the routes read: the metrics, and the last computed [`NodeServices`].
#[derive(Clone)]
struct AdminState {
    metrics: Arc<Metrics>,
    services: ServicesFeed,
}

/// The routes of the metrics listener: `GET /metrics` and `GET /debug/services`.
pub fn router(metrics: Arc<Metrics>, services: ServicesFeed) -> Router {
    Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/debug/services", get(debug_services))
        .with_state(AdminState { metrics, services })
}

async fn metrics_handler(State(state): State<AdminState>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        state.metrics.encode(),
    )
        .into_response()
}

async fn debug_services(State(state): State<AdminState>) -> Response {
    let mut feed = state.services;
    let deadline = tokio::time::Instant::now() + WAIT_FOR_SYNC;
    loop {
        let published = feed.borrow_and_update().clone();
        let Some(weak) = published else {
            return unavailable("no sync has computed this node's Services yet");
        };
        if let Some(services) = weak.upgrade() {
            return Json(services_json(&services)).into_response();
        }
        // A sync is updating them: wait until it publishes them again.
        let published_again = tokio::time::timeout_at(deadline, feed.changed()).await;
        if !matches!(published_again, Ok(Ok(()))) {
            return unavailable("a sync is updating this node's Services; try again");
        }
    }
}

fn unavailable(error: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(serde_json::json!({ "error": error })),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::IpFamily;
    use std::io::{Read, Write};
    use std::net::SocketAddr;
    use std::time::{Duration, SystemTime};

    /// One HTTP/1.1 GET over a plain socket; returns the status line, the headers (lower-cased
    /// names) and the body.
    fn get(addr: SocketAddr, path: &str) -> (String, Vec<(String, String)>, String) {
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
        )
        .expect("request");
        let mut raw = String::new();
        stream.read_to_string(&mut raw).expect("response");
        let (head, body) = raw.split_once("\r\n\r\n").expect("a head and a body");
        let mut lines = head.lines();
        let status = lines.next().expect("status line").to_owned();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        (status, headers, body.to_owned())
    }

    fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Undoes `Transfer-Encoding: chunked` when the server used it.
    fn dechunk(headers: &[(String, String)], body: &str) -> String {
        if header(headers, "transfer-encoding") != Some("chunked") {
            return body.to_owned();
        }
        let mut out = String::new();
        let mut rest = body;
        loop {
            let (size, tail) = rest.split_once("\r\n").expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
            if size == 0 {
                return out;
            }
            out.push_str(&tail[..size]);
            rest = &tail[size + 2..];
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serves_metrics_and_services_over_http() {
        let metrics = Arc::new(Metrics::new());
        metrics.sync_done(
            true,
            &[IpFamily::V4],
            Duration::from_millis(3),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            &[7],
        );
        let (publish, feed) = watch::channel(None);
        let app = router(metrics.clone(), feed);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("address");
        let server = tokio::spawn(async move { axum::serve(listener, app).await });

        let scrape = |path: &'static str| tokio::task::spawn_blocking(move || get(addr, path));

        // /metrics
        let (status, headers, body) = scrape("/metrics").await.expect("join");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(
            header(&headers, "content-type"),
            Some("text/plain; version=0.0.4")
        );
        let body = dechunk(&headers, &body);
        assert!(
            body.contains(
                "kubeproxy_sync_proxy_rules_last_timestamp_seconds{ip_family=\"IPv4\"} 1700000000\n"
            ),
            "{body}"
        );
        assert!(
            body.contains("kube_nftproxy_transaction_operations_sum 7\n"),
            "{body}"
        );

        // /debug/services before the first computation: 503 with a JSON error.
        let (status, headers, body) = scrape("/debug/services").await.expect("join");
        assert!(status.starts_with("HTTP/1.1 503"), "{status}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let error: serde_json::Value =
            serde_json::from_str(&dechunk(&headers, &body)).expect("JSON body");
        assert!(error["error"].is_string(), "{error}");

        // After it: the node's Services.
        let computed = Arc::new(crate::debug::tests::local_lb());
        publish.send_replace(Some(Arc::downgrade(&computed)));
        let (status, headers, body) = scrape("/debug/services").await.expect("join");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        assert_eq!(header(&headers, "content-type"), Some("application/json"));
        let json: serde_json::Value =
            serde_json::from_str(&dechunk(&headers, &body)).expect("JSON body");
        assert_eq!(
            json["families"]["IPv4"]["service_ports"][0]["service_port"],
            "shop/web:http"
        );
        assert_eq!(
            json["families"]["IPv4"]["service_ports"][0]["health_check"]["local_endpoints"],
            2
        );

        // While a sync updates them in place (the published reference is dead), it waits for
        // the sync to publish them again.
        let updating = Arc::try_unwrap(computed).expect("the only strong reference");
        let waiting = scrape("/debug/services");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!waiting.is_finished(), "answered while a sync was updating");
        let updated = Arc::new(updating);
        publish.send_replace(Some(Arc::downgrade(&updated)));
        let (status, _, _) = waiting.await.expect("join");
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");

        // Anything else: 404.
        let (status, _, _) = scrape("/nothing").await.expect("join");
        assert!(status.starts_with("HTTP/1.1 404"), "{status}");

        server.abort();
    }
}
