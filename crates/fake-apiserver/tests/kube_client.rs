//! kube 5's client and runtime watcher against the fake API server: lists with selectors and
//! pages, watches of each kind, relisting after 410 Gone, bookmarks, timeouts, stopping.

use fake_apiserver::FakeApiServer;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{Node, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::runtime::watcher::{self, Event};
use kube::{Client, ResourceExt};
use model::fixtures::{ep, node, service, slice};
use serde::de::DeserializeOwned;
use std::fmt::Debug;
use std::time::Duration;

/// Bound on every wait for an event.
const WAIT: Duration = Duration::from_secs(10);

fn start() -> FakeApiServer {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap_or_else(|e| panic!("binding a loopback port: {e}"));
    FakeApiServer::start(listener)
}

fn client(server: &FakeApiServer) -> Client {
    let url = server
        .url()
        .parse()
        .unwrap_or_else(|e| panic!("url {}: {e}", server.url()));
    Client::try_from(kube::Config::new(url)).unwrap_or_else(|e| panic!("client: {e}"))
}

/// The next item of a stream, within [`WAIT`]; None when the stream ended.
async fn next<S: Stream + Unpin>(stream: &mut S) -> Option<S::Item> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))
}

/// A watcher event as text: `Init`, `InitApply(name)`, `InitDone`, `Apply(name)`,
/// `Delete(name)`, or `Err(message)`.
fn describe<K: kube::Resource>(event: Option<Result<Event<K>, watcher::Error>>) -> String {
    match event {
        None => "end".into(),
        Some(Ok(Event::Init)) => "Init".into(),
        Some(Ok(Event::InitApply(o))) => format!("InitApply({})", o.name_any()),
        Some(Ok(Event::InitDone)) => "InitDone".into(),
        Some(Ok(Event::Apply(o))) => format!("Apply({})", o.name_any()),
        Some(Ok(Event::Delete(o))) => format!("Delete({})", o.name_any()),
        Some(Err(e)) => format!("Err({e})"),
    }
}

fn names<K: kube::Resource + Clone>(list: &kube::core::ObjectList<K>) -> Vec<String> {
    list.items.iter().map(ResourceExt::name_any).collect()
}

#[tokio::test]
async fn lists_each_kind_with_selectors_and_pages() {
    let server = start();
    let client = client(&server);
    server.apply(&service("default", "web", "10.96.0.10").build());
    server.apply(
        &service("default", "other-proxy", "10.96.0.11")
            .label("service.kubernetes.io/service-proxy-name", "other")
            .build(),
    );
    server.apply(&service("kube-system", "dns", "10.96.0.53").build());
    server.apply(
        &slice("default", "web-1", "web", "IPv4")
            .endpoint(ep("10.244.1.10", "node-a"))
            .build(),
    );
    server.apply(
        &slice("default", "headless-1", "headless", "IPv4")
            .label("service.kubernetes.io/headless", "")
            .build(),
    );
    server.apply(&node("node-a", &["192.0.2.1"], None));
    server.apply(&node("node-b", &["192.0.2.2"], Some("zone-b")));

    let services = Api::<Service>::all(client.clone());
    let all = services
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&all), ["other-proxy", "web", "dns"]);
    assert_eq!(
        all.metadata.resource_version.as_deref(),
        Some(server.resource_version().to_string().as_str())
    );
    let ours = services
        .list(&ListParams::default().labels("!service.kubernetes.io/service-proxy-name"))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&ours), ["web", "dns"]);
    let in_ns = Api::<Service>::namespaced(client.clone(), "kube-system")
        .list(&ListParams::default())
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&in_ns), ["dns"]);
    let by_field = services
        .list(&ListParams::default().fields("metadata.namespace=default,metadata.name!=web"))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&by_field), ["other-proxy"]);

    // Pages of one snapshot: a Service added between pages is not in them.
    let first = services
        .list(&ListParams::default().limit(2))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&first), ["other-proxy", "web"]);
    let token = first
        .metadata
        .continue_
        .clone()
        .unwrap_or_else(|| panic!("a continue token: {:?}", first.metadata));
    server.apply(&service("default", "zzz", "10.96.0.12").build());
    let second = services
        .list(&ListParams::default().limit(2).continue_token(&token))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&second), ["dns"]);
    assert_eq!(second.metadata.continue_, None);

    let slices =
        Api::<EndpointSlice>::all(client.clone())
            .list(&ListParams::default().labels(
                "!service.kubernetes.io/service-proxy-name,!service.kubernetes.io/headless",
            ))
            .await
            .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&slices), ["web-1"]);
    assert_eq!(slices.items[0].endpoints[0].addresses, ["10.244.1.10"]);

    let nodes = Api::<Node>::all(client.clone());
    let mine = nodes
        .list(&ListParams::default().fields("metadata.name=node-b"))
        .await
        .unwrap_or_else(|e| panic!("list: {e}"));
    assert_eq!(names(&mine), ["node-b"]);
    let got = nodes
        .get("node-a")
        .await
        .unwrap_or_else(|e| panic!("get: {e}"));
    assert!(got.metadata.uid.is_some() && got.metadata.resource_version.is_some());
    let missing = nodes.get("node-z").await.expect_err("no such node");
    assert!(
        matches!(&missing, kube::Error::Api(s) if s.code == 404),
        "{missing}"
    );

    let requests = server.requests();
    assert!(
        requests.iter().any(|r| r.starts_with("/api/v1/nodes?")
            && r.contains("fieldSelector=metadata.name%3Dnode-b")),
        "{requests:#?}"
    );
}

/// A watcher of `K` sees the objects there at the start, then applies and deletes.
async fn watch_one_kind<K>(server: &FakeApiServer, api: Api<K>, first: K, second: K)
where
    K: kube::Resource + k8s_openapi::Resource + serde::Serialize,
    K: Clone + DeserializeOwned + Debug + Send + 'static,
    <K as k8s_openapi::Resource>::Scope: 'static,
{
    let namespace = first.namespace();
    server.apply(&first);
    let mut events = Box::pin(watcher(api, watcher::Config::default()));
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(describe(next(&mut events).await));
    }
    assert_eq!(
        seen,
        [
            "Init".to_owned(),
            format!("InitApply({})", first.name_any()),
            "InitDone".to_owned()
        ]
    );
    server.apply(&second);
    assert_eq!(
        describe(next(&mut events).await),
        format!("Apply({})", second.name_any())
    );
    assert!(server.delete::<K>(namespace.as_deref(), &first.name_any()));
    assert_eq!(
        describe(next(&mut events).await),
        format!("Delete({})", first.name_any())
    );
}

use kube::runtime::watcher::watcher;

#[tokio::test]
async fn the_watcher_follows_each_kind() {
    let server = start();
    let client = client(&server);
    watch_one_kind(
        &server,
        Api::<Service>::all(client.clone()),
        service("default", "web", "10.96.0.10").build(),
        service("default", "db", "10.96.0.11").build(),
    )
    .await;
    watch_one_kind(
        &server,
        Api::<EndpointSlice>::all(client.clone()),
        slice("default", "web-1", "web", "IPv4").build(),
        slice("default", "web-2", "web", "IPv4").build(),
    )
    .await;
    watch_one_kind(
        &server,
        Api::<Node>::all(client.clone()),
        node("node-a", &["192.0.2.1"], None),
        node("node-b", &["192.0.2.2"], None),
    )
    .await;
}

#[tokio::test]
async fn objects_entering_and_leaving_a_selector_are_added_and_deleted() {
    let server = start();
    let client = client(&server);
    let api = Api::<Service>::all(client);
    let config = watcher::Config::default().labels("!service.kubernetes.io/service-proxy-name");
    let mut events = Box::pin(watcher(api, config));
    for expected in ["Init", "InitDone"] {
        assert_eq!(describe(next(&mut events).await), expected);
    }
    let plain = service("default", "web", "10.96.0.10").build();
    let theirs = service("default", "web", "10.96.0.10")
        .label("service.kubernetes.io/service-proxy-name", "other")
        .build();
    server.apply(&plain);
    assert_eq!(describe(next(&mut events).await), "Apply(web)");
    server.apply(&theirs);
    assert_eq!(describe(next(&mut events).await), "Delete(web)");
    server.apply(&plain);
    assert_eq!(describe(next(&mut events).await), "Apply(web)");
}

#[tokio::test]
async fn after_compaction_a_restarted_watch_gets_410_and_the_watcher_relists() {
    let server = start();
    let client = client(&server);
    server.apply(&service("default", "web", "10.96.0.10").build());
    let api = Api::<Service>::all(client);
    let mut events = Box::pin(watcher(api, watcher::Config::default()));
    for expected in ["Init", "InitApply(web)", "InitDone"] {
        assert_eq!(describe(next(&mut events).await), expected);
    }
    server.apply(&service("default", "db", "10.96.0.11").build());
    assert_eq!(describe(next(&mut events).await), "Apply(db)");
    let watches_before = server
        .requests()
        .iter()
        .filter(|r| r.contains("watch=true"))
        .count();

    server.compact();
    server.close_watches();
    // The watcher watches again from its last resource version, is told 410, and relists.
    let mut seen = Vec::new();
    loop {
        let event = describe(next(&mut events).await);
        let done = event == "InitDone";
        seen.push(event);
        if done || seen.len() > 10 {
            break;
        }
    }
    let gone = seen
        .iter()
        .position(|e| e.starts_with("Err(") && (e.contains("410") || e.contains("Expired")))
        .unwrap_or_else(|| panic!("no 410 error before the relist: {seen:?}"));
    assert_eq!(
        seen[gone + 1..],
        ["Init", "InitApply(db)", "InitApply(web)", "InitDone"],
        "{seen:?}"
    );
    let requests = server.requests();
    assert!(
        requests.iter().filter(|r| r.contains("watch=true")).count() > watches_before,
        "{requests:#?}"
    );
    // And it follows live changes again.
    server.delete::<Service>(Some("default"), "db");
    assert_eq!(describe(next(&mut events).await), "Delete(db)");
}

#[tokio::test]
async fn a_raw_watch_from_a_compacted_version_is_one_410_error_event() {
    let server = start();
    let api = Api::<Service>::all(client(&server));
    let old = server.resource_version().to_string();
    server.apply(&service("default", "web", "10.96.0.10").build());
    // Before compaction: the history from `old` is replayed.
    let mut stream = Box::pin(
        api.watch(&WatchParams::default(), &old)
            .await
            .unwrap_or_else(|e| panic!("watch: {e}")),
    );
    match next(&mut stream).await {
        Some(Ok(WatchEvent::Added(svc))) => assert_eq!(svc.name_any(), "web"),
        other => panic!("expected ADDED web, got {other:?}"),
    }
    drop(stream);
    server.compact();
    let mut stream = Box::pin(
        api.watch(&WatchParams::default(), &old)
            .await
            .unwrap_or_else(|e| panic!("watch: {e}")),
    );
    match next(&mut stream).await {
        Some(Ok(WatchEvent::Error(status))) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"));
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }
    assert!(next(&mut stream).await.is_none(), "the response ends");
}

#[tokio::test]
async fn bookmarks_on_demand_and_periodically_and_timeouts_end_watches() {
    let server = start();
    let api = Api::<Service>::all(client(&server));
    let rv = server.apply(&service("default", "web", "10.96.0.10").build());
    let params = WatchParams::default().timeout(3);
    let mut stream = Box::pin(
        api.watch(&params, &rv.to_string())
            .await
            .unwrap_or_else(|e| panic!("watch: {e}")),
    );
    server.bookmark();
    match next(&mut stream).await {
        Some(Ok(WatchEvent::Bookmark(b))) => {
            assert_eq!(b.metadata.resource_version, rv.to_string())
        }
        other => panic!("expected a bookmark, got {other:?}"),
    }
    // More bookmarks come by themselves (every second), then the timeout ends the response.
    let mut bookmarks = 0;
    while let Some(event) = next(&mut stream).await {
        match event {
            Ok(WatchEvent::Bookmark(_)) => bookmarks += 1,
            other => panic!("expected bookmarks only, got {other:?}"),
        }
    }
    assert!(bookmarks >= 1, "no periodic bookmark");
    let watched = server.requests();
    assert!(
        watched
            .iter()
            .any(|r| r.contains("allowWatchBookmarks=true") && r.contains("timeoutSeconds=3")),
        "{watched:#?}"
    );

    // Without bookmarks allowed, none are sent.
    let mut quiet = Box::pin(
        api.watch(
            &WatchParams::default().disable_bookmarks().timeout(1),
            &rv.to_string(),
        )
        .await
        .unwrap_or_else(|e| panic!("watch: {e}")),
    );
    server.bookmark();
    assert!(
        next(&mut quiet).await.is_none(),
        "no bookmark, then the end"
    );
}

#[tokio::test]
async fn streaming_lists_end_with_the_initial_events_bookmark() {
    let server = start();
    server.apply(&node("node-a", &["192.0.2.1"], None));
    server.apply(&node("node-b", &["192.0.2.2"], None));
    let api = Api::<Node>::all(client(&server));
    let config = watcher::Config::default()
        .fields("metadata.name=node-a")
        .streaming_lists();
    let mut events = Box::pin(watcher(api, config));
    for expected in ["Init", "InitApply(node-a)", "InitDone"] {
        assert_eq!(describe(next(&mut events).await), expected);
    }
    server.apply(&node("node-a", &["192.0.2.1", "2001:db8:1::1"], None));
    assert_eq!(describe(next(&mut events).await), "Apply(node-a)");
    server.apply(&node("node-b", &["192.0.2.3"], None));
    server.delete::<Node>(None, "node-a");
    assert_eq!(describe(next(&mut events).await), "Delete(node-a)");
}

#[tokio::test]
async fn stopping_ends_watches_and_refuses_connections() {
    let server = start();
    let api = Api::<Service>::all(client(&server));
    let mut stream = Box::pin(
        api.watch(&WatchParams::default().disable_bookmarks(), "0")
            .await
            .unwrap_or_else(|e| panic!("watch: {e}")),
    );
    // Wait until the server counts the watch, so stopping is what ends it.
    let deadline = std::time::Instant::now() + WAIT;
    while server.open_watches() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the watch never opened"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.stop();
    // The response ends (or fails): no more events.
    match next(&mut stream).await {
        None | Some(Err(_)) => {}
        Some(Ok(event)) => panic!("an event after stop: {event:?}"),
    }
    let err = api
        .list(&ListParams::default())
        .await
        .expect_err("the server is gone");
    assert!(!matches!(err, kube::Error::Api(_)), "{err}");
    server.stop();
}
