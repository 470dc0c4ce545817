//! The HTTP side: URL paths to collections, query parameters, list, get and watch responses.

use crate::selector::{FieldSelector, LabelSelector};
use crate::store::{
    bookmark_line, ApiError, KindInfo, ListOptions, Msg, Query, ResourceType, Store, WatchGuard,
    WatchOptions,
};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};
use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;
use tokio::time::Instant;

/// The router: every request goes to [`handle`].
pub fn router(store: Arc<Store>) -> Router {
    Router::new().fallback(handle).with_state(store)
}

/// What a URL path names.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    /// A collection, maybe of one namespace.
    Collection {
        rtype: ResourceType,
        namespace: Option<String>,
    },
    /// One object.
    Object {
        rtype: ResourceType,
        namespace: Option<String>,
        name: String,
    },
    /// `/version`.
    Version,
    /// `/healthz`, `/livez`, `/readyz`.
    Health,
}

/// `/api/v1/…`, `/apis/GROUP/VERSION/…`; then `PLURAL`, `PLURAL/NAME`,
/// `namespaces/NS/PLURAL`, `namespaces/NS/PLURAL/NAME`.
fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return Some(Target::Version),
        ["healthz" | "livez" | "readyz"] => return Some(Target::Health),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    let rtype = |plural: &str| ResourceType {
        group: group.to_owned(),
        version: version.to_owned(),
        plural: plural.to_owned(),
    };
    Some(match rest {
        ["namespaces", ns, plural] => Target::Collection {
            rtype: rtype(plural),
            namespace: Some((*ns).to_owned()),
        },
        ["namespaces", ns, plural, name] => Target::Object {
            rtype: rtype(plural),
            namespace: Some((*ns).to_owned()),
            name: (*name).to_owned(),
        },
        [plural] => Target::Collection {
            rtype: rtype(plural),
            namespace: None,
        },
        [plural, name] => Target::Object {
            rtype: rtype(plural),
            namespace: None,
            name: (*name).to_owned(),
        },
        _ => return None,
    })
}

fn json_response(code: StatusCode, body: &Value) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn error_response(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    json_response(code, &error.status())
}

fn not_found() -> ApiError {
    ApiError::not_found("the server could not find the requested resource")
}

/// Query parameters (the last of each name wins).
fn params(uri: &Uri) -> BTreeMap<String, String> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0.into_iter().collect())
        .unwrap_or_default()
}

fn flag(params: &BTreeMap<String, String>, name: &str) -> bool {
    params.get(name).is_some_and(|v| v == "true" || v == "1")
}

/// `resourceVersion`: None when unset, empty or `0` (any / most recent).
fn resource_version(params: &BTreeMap<String, String>) -> Result<Option<u64>, ApiError> {
    match params.get("resourceVersion").map(String::as_str) {
        None | Some("") => Ok(None),
        Some(text) => match text.parse::<u64>() {
            Ok(0) => Ok(None),
            Ok(n) => Ok(Some(n)),
            Err(_) => Err(ApiError::bad_request(format!(
                "invalid resourceVersion {text:?}"
            ))),
        },
    }
}

async fn handle(State(store): State<Arc<Store>>, method: Method, uri: Uri) -> Response {
    store.record(uri.to_string());
    tracing::debug!(%method, %uri, "fake API server request");
    match respond(&store, &method, &uri) {
        Ok(response) => response,
        Err(error) => error_response(&error),
    }
}

fn respond(store: &Arc<Store>, method: &Method, uri: &Uri) -> Result<Response, ApiError> {
    let target = parse_path(uri.path()).ok_or_else(not_found)?;
    if method != Method::GET {
        return Err(ApiError {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!("the fake API server only reads; {method} is not supported"),
        });
    }
    let params = params(uri);
    match target {
        Target::Version => Ok(json_response(
            StatusCode::OK,
            &json!({
                "major": "1",
                "minor": "33",
                "gitVersion": "v1.33.0-fake",
                "platform": "linux/amd64",
            }),
        )),
        Target::Health => Ok((StatusCode::OK, "ok").into_response()),
        Target::Object {
            rtype,
            namespace,
            name,
        } => {
            let info = store.kind(&rtype).ok_or_else(not_found)?;
            if namespace.is_some() != info.namespaced {
                return Err(not_found());
            }
            let object = store
                .get(&rtype, namespace.as_deref().unwrap_or(""), &name)
                .ok_or_else(|| {
                    ApiError::not_found(format!("{} \"{name}\" not found", rtype.plural))
                })?;
            Ok(json_response(StatusCode::OK, &object))
        }
        Target::Collection { rtype, namespace } => {
            let info = store.kind(&rtype).ok_or_else(not_found)?;
            if namespace.is_some() && !info.namespaced {
                return Err(not_found());
            }
            let query = Query {
                rtype,
                namespace,
                labels: LabelSelector::parse(params.get("labelSelector").map_or("", |s| s))
                    .map_err(ApiError::bad_request)?,
                fields: FieldSelector::parse(params.get("fieldSelector").map_or("", |s| s))
                    .map_err(ApiError::bad_request)?,
            };
            let rv = resource_version(&params)?;
            if flag(&params, "watch") {
                let timeout = match params.get("timeoutSeconds") {
                    Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                        ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
                    })?)),
                    None => None,
                };
                let options = WatchOptions {
                    resource_version: rv,
                    bookmarks: flag(&params, "allowWatchBookmarks"),
                    send_initial_events: flag(&params, "sendInitialEvents"),
                };
                watch(store, &query, &options, info, timeout)
            } else {
                let limit = match params.get("limit") {
                    Some(l) => l
                        .parse()
                        .map_err(|_| ApiError::bad_request(format!("invalid limit {l:?}")))?,
                    None => 0,
                };
                let options = ListOptions {
                    resource_version: rv,
                    exact: params.get("resourceVersionMatch").map(String::as_str) == Some("Exact"),
                    limit,
                    continue_token: params.get("continue").filter(|c| !c.is_empty()).cloned(),
                };
                let list = store.list(&query, &options)?;
                Ok(json_response(StatusCode::OK, &list))
            }
        }
    }
}

/// A watch response being streamed.
struct WatchStream {
    query: Query,
    info: KindInfo,
    backlog: VecDeque<String>,
    end_after_backlog: bool,
    feed: broadcast::Receiver<Msg>,
    position: u64,
    bookmarks: bool,
    deadline: Option<Instant>,
    _guard: WatchGuard,
}

impl WatchStream {
    /// The next line, or None to end the response.
    async fn next_line(&mut self) -> Option<String> {
        if let Some(line) = self.backlog.pop_front() {
            return Some(line);
        }
        if self.end_after_backlog {
            return None;
        }
        loop {
            let msg = match self.deadline {
                Some(deadline) => tokio::select! {
                    msg = self.feed.recv() => msg,
                    () = tokio::time::sleep_until(deadline) => return None,
                },
                None => self.feed.recv().await,
            };
            match msg {
                Ok(Msg::Change(change)) => {
                    if let Some(line) = self.query_event(&change) {
                        return Some(line);
                    }
                }
                Ok(Msg::Bookmark { last_change }) => {
                    self.position = self.position.max(last_change);
                    if self.bookmarks {
                        return Some(bookmark_line(&self.info, self.position, false));
                    }
                }
                // Closed on purpose, the server is stopping, or this watch fell too far behind
                // (its client resumes from its last resource version).
                Ok(Msg::Close) | Err(_) => return None,
            }
        }
    }

    fn query_event(&mut self, change: &crate::store::Change) -> Option<String> {
        let line = self.query.event(change)?;
        self.position = self.position.max(change.rv());
        Some(line)
    }
}

fn watch(
    store: &Arc<Store>,
    query: &Query,
    options: &WatchOptions,
    info: KindInfo,
    timeout: Option<Duration>,
) -> Result<Response, ApiError> {
    let start = store.watch(query, options)?;
    let stream = WatchStream {
        query: query.clone(),
        info,
        backlog: start.backlog,
        end_after_backlog: start.end_after_backlog,
        feed: start.feed,
        position: start.position,
        bookmarks: options.bookmarks,
        deadline: timeout.map(|t| Instant::now() + t),
        _guard: store.watch_guard(),
    };
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let line = stream.next_line().await?;
        Some((Ok::<_, Infallible>(Bytes::from(line)), stream))
    });
    Ok((
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        Body::from_stream(body),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        let rt = |g: &str, p: &str| ResourceType {
            group: g.into(),
            version: "v1".into(),
            plural: p.into(),
        };
        assert_eq!(
            parse_path("/api/v1/services"),
            Some(Target::Collection {
                rtype: rt("", "services"),
                namespace: None
            })
        );
        assert_eq!(
            parse_path("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices"),
            Some(Target::Collection {
                rtype: rt("discovery.k8s.io", "endpointslices"),
                namespace: Some("default".into())
            })
        );
        assert_eq!(
            parse_path("/api/v1/nodes/node-a"),
            Some(Target::Object {
                rtype: rt("", "nodes"),
                namespace: None,
                name: "node-a".into()
            })
        );
        assert_eq!(parse_path("/version"), Some(Target::Version));
        assert_eq!(parse_path("/metrics"), None);
    }
}
