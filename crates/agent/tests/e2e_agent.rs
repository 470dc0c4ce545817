//! The agent binary end to end: `kube-nftproxy run` (no `--manifests`) inside the node namespace
//! of a [`TestCluster`], against the [`FakeApiServer`] listening in that namespace, with real
//! connections from pods and from the external client, and HTTP checks of `/healthz`, `/livez`,
//! `/metrics`, `/debug/services` and a healthCheckNodePort.
//!
//! Every "eventually" is a bounded poll ([`eventually`]: up to [`EVENTUALLY`], every 100 ms);
//! nothing asserts on timing. A failure message carries the agent's log (stderr).

use fake_apiserver::FakeApiServer;
use k8s_openapi::api::core::v1::{Node, Taint};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use model::fixtures::{ep, node, service, slice};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testbed::cluster::{CLIENT_IPV4, NODE_IPV4};
use testbed::{connect, require_kernel, NetNs, Proto, Reply, Session, TestCluster};

/// This node, as EndpointSlices name it.
const NODE_A: &str = "node-a";
/// The "other" node of the remote pods.
const NODE_B: &str = "node-b";
/// The echo servers' port (the endpoints' target port).
const ECHO_PORT: u16 = 8080;
/// Socket timeout when an answer is expected.
const ANSWER: Duration = Duration::from_secs(2);
/// How long an "eventually" may take.
const EVENTUALLY: Duration = Duration::from_secs(10);
/// The agent's sync period in these tests: `/healthz` fails once a change has waited 2 s.
const SYNC_PERIOD_SECONDS: f64 = 1.0;
/// Where the agent serves `/healthz` and `/livez` (inside the node namespace).
const HEALTHZ: &str = "127.0.0.1:10256";
/// Where the agent serves `/metrics` and `/debug/services` (inside the node namespace).
const METRICS: &str = "127.0.0.1:10249";

/// The agent's binary.
const BIN: &str = env!("CARGO_BIN_EXE_kube-nftproxy");

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// Pods `client` (10.244.1.2), `a1`, `a2` (10.244.1.10, .11, this node) and `b1`
/// (10.244.2.10, "node-b").
fn cluster() -> TestCluster {
    TestCluster::builder()
        .local_pod("client", 2)
        .local_pod("a1", 10)
        .local_pod("a2", 11)
        .remote_pod("b1", 10)
        .build()
        .unwrap_or_else(|e| panic!("building the test cluster: {e}"))
}

fn netns_path(ns: &NetNs) -> PathBuf {
    Path::new("/var/run/netns").join(ns.name())
}

/// The fake API server, listening on 127.0.0.1 inside the node namespace (where the agent runs).
fn api_server(cluster: &TestCluster) -> FakeApiServer {
    let listener = nft::in_netns(&netns_path(cluster.node()), || {
        TcpListener::bind("127.0.0.1:0")
    })
    .and_then(|bound| bound)
    .unwrap_or_else(|e| panic!("binding the API server's port in the node namespace: {e}"));
    FakeApiServer::start(listener)
}

/// A scratch directory (config file, logs, `$HOME` of the agent), deleted on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("knp-e2e-agent-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("creating {}: {e}", dir.display()));
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent's configuration for node-a of the test cluster, against `api_server`.
fn write_config(dir: &Path, api_server: &str) -> PathBuf {
    let text = format!(
        "node_name = \"{NODE_A}\"\n\
         node_ips = [\"192.0.2.1\", \"2001:db8:1::1\"]\n\
         cluster_cidrs = [\"10.244.0.0/16\", \"fd00:10:244::/56\"]\n\
         api_server = \"{api_server}\"\n\
         min_sync_period_seconds = 0.1\n\
         sync_period_seconds = {SYNC_PERIOD_SECONDS:.1}\n\
         healthz_bind_address = \"0.0.0.0:10256\"\n\
         metrics_bind_address = \"{METRICS}\"\n"
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    path
}

/// `kube-nftproxy run --config FILE` in the node namespace; SIGTERM (then SIGKILL after 10 s)
/// and reaped on drop. Its stderr goes to a file ([`Agent::log`]).
struct Agent {
    child: Option<Child>,
    log: PathBuf,
    config: PathBuf,
    ns: String,
}

static STARTS: AtomicUsize = AtomicUsize::new(0);

impl Agent {
    fn start(cluster: &TestCluster, scratch: &Scratch, config: &Path) -> Agent {
        let n = STARTS.fetch_add(1, Ordering::Relaxed);
        let log = scratch.0.join(format!("agent-{n}.log"));
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        let config_arg = config.to_string_lossy().into_owned();
        // `ip netns exec` execs the agent: the child's pid is the agent's.
        let child = Command::new("ip")
            .args(["netns", "exec", cluster.node().name(), BIN])
            .args(["run", "--config", &config_arg])
            // No kubeconfig to find: the agent connects to `api_server` without credentials.
            .env_remove("KUBECONFIG")
            .env_remove("KUBERNETES_SERVICE_HOST")
            .env("HOME", &scratch.0)
            .env("RUST_LOG", "info,agent=debug")
            // Plain text in the log file (it is shown in failure messages).
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {BIN}: {e}"));
        Agent {
            child: Some(child),
            log,
            config: config.to_owned(),
            ns: cluster.node().name().to_owned(),
        }
    }

    /// What the agent wrote to stderr so far.
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics if the agent has exited (with its status and log).
    fn assert_running(&mut self) {
        if let Some(child) = self.child.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the agent exited ({status}) in {} with config {}; log:\n{}",
                    self.ns,
                    self.config.display(),
                    self.log()
                );
            }
        }
    }

    /// Sends SIGTERM and waits for the exit (up to 10 s, then SIGKILL); returns the status.
    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        let pid = child.id().to_string();
        let _ = Command::new("kill")
            .args(["-TERM", &pid])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Polls `check` every 100 ms until it returns Ok, for up to [`EVENTUALLY`]; panics with the
/// last error and the agent's log otherwise. The agent must keep running meanwhile.
#[track_caller]
fn eventually<T>(agent: &mut Agent, what: &str, mut check: impl FnMut() -> Result<T, String>) -> T {
    let deadline = Instant::now() + EVENTUALLY;
    loop {
        agent.assert_running();
        let last = match check() {
            Ok(value) => return value,
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!(
                "{what}: not within {EVENTUALLY:?}; last: {last}\nagent log:\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An HTTP answer: status code and body.
#[derive(Debug, Clone)]
struct Http {
    status: u16,
    body: String,
}

impl Http {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.body))
    }
}

/// Decodes a chunked transfer-encoded body.
fn unchunk(mut raw: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = raw.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        raw = rest[size..].trim_start_matches("\r\n");
    }
    out
}

/// `GET path` from inside `ns` to `addr` (HTTP/1.1, one connection, 2 s timeouts).
fn http_get(ns: &NetNs, addr: SocketAddr, path: &str) -> Result<Http, String> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    let raw = nft::in_netns(&netns_path(ns), move || -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, ANSWER)?;
        stream.set_read_timeout(Some(ANSWER))?;
        stream.set_write_timeout(Some(ANSWER))?;
        stream.write_all(request.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(String::from_utf8_lossy(&raw).into_owned())
    })
    .map_err(|e| format!("entering {}: {e}", ns.name()))?
    .map_err(|e| format!("GET http://{addr}{path} from {}: {e}", ns.name()))?;
    let (head, body) = raw
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: no HTTP response: {raw:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("GET http://{addr}{path}: bad status line: {head:?}"))?;
    let chunked = head.lines().any(|l| {
        l.to_ascii_lowercase()
            .starts_with("transfer-encoding: chunked")
    });
    let body = if chunked {
        unchunk(body)
    } else {
        body.to_owned()
    };
    Ok(Http { status, body })
}

fn addr(text: &str) -> SocketAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not an address: {e}"))
}

fn healthz(cluster: &TestCluster, path: &str) -> Result<Http, String> {
    http_get(cluster.node(), addr(HEALTHZ), path)
}

/// The value of the sample `name` (with exactly these labels, in the exposition's order, e.g.
/// `{ip_family="IPv4"}`, or `""`) in a Prometheus text exposition.
fn sample(metrics: &str, name: &str, labels: &str) -> Option<f64> {
    let series = format!("{name}{labels} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse().ok())
}

fn metrics(cluster: &TestCluster) -> Result<String, String> {
    let answer = http_get(cluster.node(), addr(METRICS), "/metrics")?;
    if answer.status != 200 {
        return Err(format!(
            "/metrics answered {}: {}",
            answer.status, answer.body
        ));
    }
    Ok(answer.body)
}

/// One TCP connection to `vip:port` from `from`, answered by an echo server.
fn reach(from: &NetNs, vip: IpAddr, port: u16) -> Result<Reply, String> {
    connect(from, Proto::Tcp, vip, port, ANSWER)
        .map_err(|e| format!("TCP from {} to {vip}:{port}: {e}", from.name()))
}

/// Echo servers (TCP on [`ECHO_PORT`]) in the named pods.
fn serve(cluster: &TestCluster, pods: &[&str]) -> Vec<testbed::EchoServer> {
    pods.iter()
        .map(|name| {
            testbed::EchoServer::start_protos(cluster.pod(name).ns(), ECHO_PORT, &[Proto::Tcp])
                .unwrap_or_else(|e| panic!("echo server in {name}: {e}"))
        })
        .collect()
}

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or_else(|e| panic!("{text:?} is not an IP address: {e}"))
}

fn this_node() -> Node {
    node(NODE_A, &["192.0.2.1", "2001:db8:1::1"], None)
}

/// `default/web`: ClusterIP 10.96.0.10 port 80.
fn web_service() -> k8s_openapi::api::core::v1::Service {
    service("default", "web", "10.96.0.10")
        .port("http", "TCP", 80)
        .build()
}

/// `default/web`'s slice with one endpoint.
fn web_slice(addr: &str, node_name: &str) -> EndpointSlice {
    slice("default", "web-1", "web", "IPv4")
        .port("http", "TCP", i32::from(ECHO_PORT))
        .endpoint(ep(addr, node_name))
        .build()
}

/// Everything a test needs: the cluster, the fake API server in its node, a config for the
/// agent.
struct Bed {
    cluster: TestCluster,
    api: FakeApiServer,
    config: PathBuf,
    // Dropped last: the agents' logs live here.
    scratch: Scratch,
}

impl Bed {
    fn new() -> Bed {
        let cluster = cluster();
        let api = api_server(&cluster);
        let scratch = Scratch::new();
        let config = write_config(&scratch.0, &api.url());
        Bed {
            cluster,
            api,
            config,
            scratch,
        }
    }

    fn start_agent(&self) -> Agent {
        Agent::start(&self.cluster, &self.scratch, &self.config)
    }

    fn listing(&self) -> String {
        let text = self
            .cluster
            .node()
            .nft_list_ruleset()
            .unwrap_or_else(|e| panic!("listing the node's ruleset: {e}"));
        testbed::normalize_nft_listing(&text)
    }
}

/// Waits until the agent has programmed `web` to reach `expected` from the client pod.
fn wait_for_web(bed: &Bed, agent: &mut Agent, expected: IpAddr) {
    let client = bed.cluster.pod("client").ns();
    eventually(
        agent,
        &format!("web (10.96.0.10:80) reaches {expected}"),
        || {
            let reply = reach(client, ip("10.96.0.10"), 80)?;
            if reply.server == expected {
                Ok(())
            } else {
                Err(format!("answered by {}", reply.server))
            }
        },
    );
}

/// Scenarios 1 and 2: a Service, its EndpointSlice and the Node created in the API server after
/// the agent started are programmed (a pod reaches the ClusterIP); moving the endpoint moves
/// new connections.
#[test]
fn services_and_endpoint_changes_from_the_api_server_are_programmed() {
    if !require_kernel() {
        return;
    }
    let bed = Bed::new();
    let _servers = serve(&bed.cluster, &["a1", "b1"]);
    let (a1, b1) = (bed.cluster.pod("a1").ipv4(), bed.cluster.pod("b1").ipv4());
    let mut agent = bed.start_agent();
    // Created while the agent watches, so they arrive as watch events.
    eventually(
        &mut agent,
        "the agent watches the three kinds",
        || match bed.api.open_watches() {
            n if n >= 3 => Ok(()),
            n => Err(format!(
                "{n} watches open; requests: {:?}",
                bed.api.requests()
            )),
        },
    );
    bed.api.apply(&this_node());
    bed.api.apply(&web_service());
    bed.api.apply(&web_slice("10.244.1.10", NODE_A));
    wait_for_web(&bed, &mut agent, a1.into());
    let client = bed.cluster.pod("client").ns();
    for i in 0..5 {
        let reply = reach(client, ip("10.96.0.10"), 80)
            .unwrap_or_else(|e| panic!("connection {i}: {e}\nagent log:\n{}", agent.log()));
        assert_eq!(reply.server, IpAddr::from(a1), "{reply:?}");
    }

    // Scenario 2: the endpoint moves to b1 (remote).
    bed.api.apply(&web_slice("10.244.2.10", NODE_B));
    wait_for_web(&bed, &mut agent, b1.into());
    for i in 0..10 {
        let reply = reach(client, ip("10.96.0.10"), 80)
            .unwrap_or_else(|e| panic!("connection {i}: {e}\nagent log:\n{}", agent.log()));
        assert_eq!(
            reply.server,
            IpAddr::from(b1),
            "a new connection after the change reached the old endpoint: {reply:?}"
        );
    }
    let requests = bed.api.requests();
    assert!(
        requests
            .iter()
            .any(|r| r.starts_with("/api/v1/services?") && r.contains("watch=")),
        "the agent never watched Services: {requests:#?}"
    );
    let status = agent.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: the agent exits 0, got {status:?}; log:\n{}",
        agent.log()
    );
}

/// `default/lb`: LoadBalancer 203.0.113.7, NodePort 30080, externalTrafficPolicy Local,
/// healthCheckNodePort 32000.
fn lb_service() -> k8s_openapi::api::core::v1::Service {
    service("default", "lb", "10.96.0.20")
        .type_("LoadBalancer")
        .node_port("http", "TCP", 80, 30080)
        .lb_ingress("203.0.113.7", None)
        .etp_local()
        .health_check_node_port(32000)
        .build()
}

/// `default/lb`'s endpoints: a1 on this node (ready, or serving-terminating) and b1 elsewhere.
fn lb_slice(a1_terminating: bool) -> EndpointSlice {
    let local = ep("10.244.1.10", NODE_A);
    let local = if a1_terminating {
        local.serving_terminating()
    } else {
        local
    };
    slice("default", "lb-1", "lb", "IPv4")
        .port("http", "TCP", i32::from(ECHO_PORT))
        .endpoint(local)
        .endpoint(ep("10.244.2.10", NODE_B))
        .build()
}

/// The health check from the external client: (status, localEndpoints).
fn health_check(cluster: &TestCluster) -> Result<(u16, Value), String> {
    let answer = http_get(
        cluster.client(),
        SocketAddr::new(NODE_IPV4.into(), 32000),
        "/",
    )?;
    let body: Value = serde_json::from_str(&answer.body)
        .map_err(|e| format!("health check body is not JSON ({e}): {:?}", answer.body))?;
    Ok((answer.status, body))
}

/// Scenarios 3 and 7: the healthCheckNodePort of an eTP Local LoadBalancer Service answers 200
/// with `localEndpoints` 1 while its local endpoint is ready, 503 once it is terminating (while
/// the external client's connections still reach it), 200 again when it is ready; `/metrics`
/// then has the last sync's timestamp and `/debug/services` the Service with its local endpoint.
#[test]
fn health_check_node_port_follows_the_local_endpoint() {
    if !require_kernel() {
        return;
    }
    let bed = Bed::new();
    let _servers = serve(&bed.cluster, &["a1", "b1"]);
    let a1: IpAddr = bed.cluster.pod("a1").ipv4().into();
    let lb = ip("203.0.113.7");
    // The network in front of the node routes the LoadBalancer IP to it.
    bed.cluster
        .client()
        .run(
            "ip",
            &["route", "add", "203.0.113.7/32", "via", "192.0.2.1"],
        )
        .unwrap_or_else(|e| panic!("route to the LB IP in the client: {e}"));
    bed.api.apply(&this_node());
    bed.api.apply(&lb_service());
    bed.api.apply(&lb_slice(false));
    let mut agent = bed.start_agent();

    let (status, body) =
        eventually(
            &mut agent,
            "the health check answers 200",
            || match health_check(&bed.cluster)? {
                (200, body) => Ok((200, body)),
                (status, body) => Err(format!("{status} {body}")),
            },
        );
    assert_eq!(
        (status, &body["localEndpoints"]),
        (200, &Value::from(1)),
        "{body}"
    );
    assert_eq!(body["serviceProxyHealthy"], true, "{body}");
    assert_eq!(body["service"]["namespace"], "default", "{body}");
    assert_eq!(body["service"]["name"], "lb", "{body}");
    // eTP Local: the external client reaches only the local endpoint, with its own address.
    let client = bed.cluster.client();
    for (vip, port) in [(bed.cluster.node_ip(false), 30080), (lb, 80)] {
        let reply = eventually(&mut agent, &format!("{vip}:{port} from the client"), || {
            reach(client, vip, port)
        });
        assert_eq!(reply.server, a1, "{vip}:{port}: {reply:?}");
        assert_eq!(
            reply.peer,
            IpAddr::from(CLIENT_IPV4),
            "{vip}:{port}: {reply:?}"
        );
    }

    // Scenario 3: a1 terminating but still serving.
    bed.api.apply(&lb_slice(true));
    let body = eventually(
        &mut agent,
        "the health check answers 503",
        || match health_check(&bed.cluster)? {
            (503, body) => Ok(body),
            (status, body) => Err(format!("{status} {body}")),
        },
    );
    assert_eq!(body["localEndpoints"], 0, "{body}");
    for (vip, port) in [(bed.cluster.node_ip(false), 30080), (lb, 80)] {
        for i in 0..3 {
            let reply = reach(client, vip, port).unwrap_or_else(|e| {
                panic!(
                    "{vip}:{port} connection {i} while a1 terminates: {e}\nagent log:\n{}",
                    agent.log()
                )
            });
            assert_eq!(
                reply.server, a1,
                "{vip}:{port}: eTP Local falls back to the serving-terminating local endpoint: \
                 {reply:?}"
            );
        }
    }

    // Ready again: 200 again.
    bed.api.apply(&lb_slice(false));
    eventually(
        &mut agent,
        "the health check answers 200 again",
        || match health_check(&bed.cluster)? {
            (200, body) if body["localEndpoints"] == 1 => Ok(()),
            (status, body) => Err(format!("{status} {body}")),
        },
    );

    // Scenario 7: metrics and the debug view after these events.
    let text = metrics(&bed.cluster).unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
    let last = sample(
        &text,
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
        "{ip_family=\"IPv4\"}",
    );
    assert!(
        last.is_some_and(|t| t > 0.0),
        "kubeproxy_sync_proxy_rules_last_timestamp_seconds{{ip_family=\"IPv4\"}} = {last:?}:\n{text}"
    );
    let debug = http_get(bed.cluster.node(), addr(METRICS), "/debug/services")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(debug.status, 200, "{}", debug.body);
    let json = debug.json();
    let ports = json["families"]["IPv4"]["service_ports"]
        .as_array()
        .unwrap_or_else(|| panic!("no IPv4 service_ports in /debug/services: {json:#}"));
    let lb_port = ports
        .iter()
        .find(|p| p["service"] == "default/lb")
        .unwrap_or_else(|| panic!("default/lb not in /debug/services: {json:#}"));
    assert_eq!(lb_port["external_traffic_policy"], "Local", "{lb_port:#}");
    let local: Vec<&str> = lb_port["local_endpoints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["address"].as_str())
        .collect();
    assert_eq!(local, ["10.244.1.10:8080"], "{lb_port:#}");
    assert_eq!(lb_port["health_check"]["node_port"], 32000, "{lb_port:#}");
    assert_eq!(lb_port["health_check"]["local_endpoints"], 1, "{lb_port:#}");
}

/// Scenario 4: a Node tainted `ToBeDeletedByClusterAutoscaler`, or being deleted, fails
/// `/healthz` (503) but not `/livez` (200).
#[test]
fn a_node_being_deleted_fails_healthz_but_not_livez() {
    if !require_kernel() {
        return;
    }
    let bed = Bed::new();
    bed.api.apply(&this_node());
    bed.api.apply(&web_service());
    bed.api.apply(&web_slice("10.244.1.10", NODE_A));
    let mut agent = bed.start_agent();
    let cluster = &bed.cluster;
    eventually(&mut agent, "/healthz answers 200", || {
        match healthz(cluster, "/healthz")? {
            Http { status: 200, .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });

    let mut tainted = this_node();
    tainted.spec.get_or_insert_with(Default::default).taints = Some(vec![Taint {
        key: "ToBeDeletedByClusterAutoscaler".into(),
        value: Some("1700000000".into()),
        effect: "NoSchedule".into(),
        ..Taint::default()
    }]);
    bed.api.apply(&tainted);
    let body = eventually(
        &mut agent,
        "/healthz answers 503 for a tainted Node",
        || match healthz(cluster, "/healthz")? {
            Http { status: 503, body } => Ok(body),
            other => Err(format!("{other:?}")),
        },
    );
    assert!(body.contains("\"nodeEligible\":false"), "{body}");
    let livez = healthz(cluster, "/livez").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(livez.status, 200, "/livez ignores the Node: {livez:?}");

    // Untainted: eligible again.
    bed.api.apply(&this_node());
    eventually(
        &mut agent,
        "/healthz answers 200 again",
        || match healthz(cluster, "/healthz")? {
            Http { status: 200, .. } => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    // Being deleted (a deletionTimestamp, no taint).
    let mut deleting = this_node();
    deleting.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    bed.api.apply(&deleting);
    eventually(
        &mut agent,
        "/healthz answers 503 for a Node being deleted",
        || match healthz(cluster, "/healthz")? {
            Http { status: 503, .. } => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );
    let livez = healthz(cluster, "/livez").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(livez.status, 200, "/livez ignores the Node: {livez:?}");
}

/// Scenario 5: the API server goes away. The rules stay (traffic flows) and `/healthz` stays
/// 200: health fails only once a *change* has waited for more than 2 × the sync period, and
/// with the API server gone no change can arrive, so none is pending. (That a pending change
/// does turn `/healthz` to 503 is covered by the health module's unit tests, which can move
/// time; here it cannot be produced.) Checked over 5 s, more than 2 × the 1 s sync period.
#[test]
fn when_the_api_server_is_gone_the_rules_stay_and_healthz_stays_200() {
    if !require_kernel() {
        return;
    }
    let bed = Bed::new();
    let _servers = serve(&bed.cluster, &["a1"]);
    let a1: IpAddr = bed.cluster.pod("a1").ipv4().into();
    bed.api.apply(&this_node());
    bed.api.apply(&web_service());
    bed.api.apply(&web_slice("10.244.1.10", NODE_A));
    let mut agent = bed.start_agent();
    wait_for_web(&bed, &mut agent, a1);
    let cluster = &bed.cluster;
    eventually(&mut agent, "/healthz answers 200", || {
        match healthz(cluster, "/healthz")? {
            Http { status: 200, .. } => Ok(()),
            other => Err(format!("{other:?}")),
        }
    });
    let before = bed.listing();

    bed.api.stop();
    let until = Instant::now() + Duration::from_secs_f64(5.0 * SYNC_PERIOD_SECONDS);
    while Instant::now() < until {
        agent.assert_running();
        for path in ["/healthz", "/livez"] {
            let answer = healthz(cluster, path)
                .unwrap_or_else(|e| panic!("{e}\nagent log:\n{}", agent.log()));
            assert_eq!(
                answer.status,
                200,
                "{path} with the API server gone and nothing pending: {answer:?}\nagent log:\n{}",
                agent.log()
            );
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let client = bed.cluster.pod("client").ns();
    for i in 0..5 {
        let reply = reach(client, ip("10.96.0.10"), 80)
            .unwrap_or_else(|e| panic!("connection {i}: {e}\nagent log:\n{}", agent.log()));
        assert_eq!(reply.server, a1, "{reply:?}");
    }
    assert_eq!(
        bed.listing(),
        before,
        "the rules changed with the API server gone"
    );
}

/// Scenario 6: restarting the agent with nothing changed applies nothing (its first sync's
/// transaction is empty: `kube_nftproxy_transaction_operations`, which observes every non-empty
/// transaction, has no observation while the sync timestamp is set) and flushes nothing: an
/// established connection survives the stop, the gap and the restart, and the ruleset is
/// unchanged.
#[test]
fn a_restarted_agent_applies_nothing_and_keeps_established_connections() {
    if !require_kernel() {
        return;
    }
    let bed = Bed::new();
    let _servers = serve(&bed.cluster, &["a1"]);
    let a1: IpAddr = bed.cluster.pod("a1").ipv4().into();
    bed.api.apply(&this_node());
    bed.api.apply(&web_service());
    bed.api.apply(&web_slice("10.244.1.10", NODE_A));
    let mut first = bed.start_agent();
    wait_for_web(&bed, &mut first, a1);
    let client = bed.cluster.pod("client").ns();
    let (mut session, greeting) = Session::open(client, ip("10.96.0.10"), 80, ANSWER)
        .unwrap_or_else(|e| panic!("opening a connection: {e}\nagent log:\n{}", first.log()));
    assert_eq!(greeting.server, a1, "{greeting:?}");
    // The first agent did program something.
    let text = metrics(&bed.cluster).unwrap_or_else(|e| panic!("{e}"));
    let programmed = sample(&text, "kube_nftproxy_transaction_operations_sum", "");
    assert!(
        programmed.is_some_and(|n| n > 0.0),
        "the first agent's transactions: {programmed:?}\n{text}"
    );
    let before = bed.listing();

    let status = first.stop();
    assert!(
        status.is_some_and(|s| s.success()),
        "SIGTERM: the agent exits 0, got {status:?}; log:\n{}",
        first.log()
    );
    assert_eq!(
        bed.listing(),
        before,
        "stopping the agent changed the rules"
    );
    let reply = session
        .exchange()
        .unwrap_or_else(|e| panic!("the connection broke while no agent ran: {e}"));
    assert_eq!(reply.server, a1);

    let mut second = bed.start_agent();
    let text = eventually(&mut second, "the restarted agent's first sync", || {
        let text = metrics(&bed.cluster)?;
        let last = sample(
            &text,
            "kubeproxy_sync_proxy_rules_last_timestamp_seconds",
            "{ip_family=\"IPv4\"}",
        );
        match last {
            Some(t) if t > 0.0 => Ok(text),
            other => Err(format!("last sync timestamp {other:?}")),
        }
    });
    let count = sample(&text, "kube_nftproxy_transaction_operations_count", "");
    let sum = sample(&text, "kube_nftproxy_transaction_operations_sum", "");
    assert_eq!(
        (count, sum),
        (Some(0.0), Some(0.0)),
        "the restarted agent applied a transaction although nothing changed:\n{text}\nlog:\n{}",
        second.log()
    );
    for i in 0..3 {
        let reply = session.exchange().unwrap_or_else(|e| {
            panic!(
                "the established connection broke across the restart (exchange {i}): {e}\nlog:\n{}",
                second.log()
            )
        });
        assert_eq!(reply.server, a1, "{reply:?}");
    }
    assert_eq!(
        bed.listing(),
        before,
        "the restarted agent changed the rules"
    );
    let new = reach(client, ip("10.96.0.10"), 80)
        .unwrap_or_else(|e| panic!("{e}\nlog:\n{}", second.log()));
    assert_eq!(new.server, a1);
}
