//! The answer of a per-Service health check (`spec.healthCheckNodePort` of a LoadBalancer
//! Service with `externalTrafficPolicy: Local`), as kube-proxy's `service_health.go` writes it.

use axum::http::header::{HeaderName, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use model::ServiceRef;
use serde::Serialize;

/// The header that tells a load balancer how many local endpoints this node has.
pub const ENDPOINT_WEIGHT_HEADER: &str = "x-load-balancing-endpoint-weight";

/// The JSON body of a per-Service health check:
/// `{"service":{"namespace":…,"name":…},"localEndpoints":N,"serviceProxyHealthy":bool}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceHealthBody {
    /// The Service.
    pub service: ServiceRef,
    /// The number of distinct ready endpoint IPs of the Service on this node.
    pub local_endpoints: usize,
    /// Whether the agent is healthy (no change late; the Node's eligibility is not considered).
    pub service_proxy_healthy: bool,
}

/// A per-Service health check answer: status code, headers and JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceHealthResponse {
    /// 200 when the Service has local endpoints and the agent is healthy, else 503.
    pub status: StatusCode,
    /// The JSON body.
    pub body: ServiceHealthBody,
}

impl ServiceHealthResponse {
    /// The response headers: `Content-Type: application/json`, `X-Content-Type-Options:
    /// nosniff` and `X-Load-Balancing-Endpoint-Weight: <localEndpoints>`.
    pub fn headers(&self) -> [(HeaderName, HeaderValue); 3] {
        let [content_type, nosniff] = super::json_headers();
        [
            content_type,
            nosniff,
            (
                HeaderName::from_static(ENDPOINT_WEIGHT_HEADER),
                HeaderValue::from(self.body.local_endpoints),
            ),
        ]
    }

    /// The body as compact JSON.
    pub fn body_json(&self) -> String {
        // A struct of strings, an integer and a bool always serializes.
        serde_json::to_string(&self.body).unwrap_or_default()
    }
}

impl IntoResponse for ServiceHealthResponse {
    fn into_response(self) -> Response {
        let headers = self.headers();
        let body = self.body_json();
        (self.status, headers, body).into_response()
    }
}

/// The answer for `service` with `local_endpoints` ready local endpoint IPs, given whether the
/// agent is healthy ([`super::ProxyHealth::is_healthy`]): 200 iff `local_endpoints > 0` and
/// `proxy_healthy`, else 503.
pub fn service_response(
    service: &ServiceRef,
    local_endpoints: usize,
    proxy_healthy: bool,
) -> ServiceHealthResponse {
    let status = if local_endpoints > 0 && proxy_healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    ServiceHealthResponse {
        status,
        body: ServiceHealthBody {
            service: service.clone(),
            local_endpoints,
            service_proxy_healthy: proxy_healthy,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::header::CONTENT_TYPE;
    use serde_json::Value;

    fn header(response: &ServiceHealthResponse, name: &str) -> String {
        let headers = response.headers();
        let matching: Vec<_> = headers
            .iter()
            .filter(|(n, _)| n.as_str().eq_ignore_ascii_case(name))
            .collect();
        assert_eq!(matching.len(), 1, "exactly one {name} header");
        matching[0]
            .1
            .to_str()
            .expect("the header is ASCII")
            .to_owned()
    }

    fn svc() -> ServiceRef {
        ServiceRef::new("shop", "front")
    }

    #[test]
    fn no_local_endpoints_is_503_with_weight_0() {
        let response = service_response(&svc(), 0, true);
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response, "X-Load-Balancing-Endpoint-Weight"), "0");
        assert_eq!(header(&response, "Content-Type"), "application/json");
        assert_eq!(header(&response, "X-Content-Type-Options"), "nosniff");
        assert_eq!(
            response.body_json(),
            r#"{"service":{"namespace":"shop","name":"front"},"localEndpoints":0,"serviceProxyHealthy":true}"#
        );
    }

    #[test]
    fn local_endpoints_is_200_with_weight() {
        let response = service_response(&svc(), 2, true);
        assert_eq!(response.status, StatusCode::OK);
        assert_eq!(header(&response, "X-Load-Balancing-Endpoint-Weight"), "2");
        let body: Value = serde_json::from_str(&response.body_json()).expect("JSON");
        assert_eq!(body["service"]["namespace"], "shop");
        assert_eq!(body["service"]["name"], "front");
        assert_eq!(body["localEndpoints"], 2);
        assert_eq!(body["serviceProxyHealthy"], true);
        assert_eq!(body.as_object().map(|o| o.len()), Some(3));
    }

    #[test]
    fn unhealthy_proxy_is_503_even_with_endpoints() {
        let response = service_response(&svc(), 3, false);
        assert_eq!(response.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(header(&response, "X-Load-Balancing-Endpoint-Weight"), "3");
        let body: Value = serde_json::from_str(&response.body_json()).expect("JSON");
        assert_eq!(body["localEndpoints"], 3);
        assert_eq!(body["serviceProxyHealthy"], false);
    }

    #[tokio::test]
    async fn into_response_carries_status_and_headers() {
        let response = service_response(&svc(), 1, true).into_response();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers();
        assert_eq!(headers[CONTENT_TYPE], "application/json");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["x-load-balancing-endpoint-weight"], "1");
    }
}
