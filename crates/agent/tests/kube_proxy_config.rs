//! kube-proxy's configuration (`--kube-proxy-config`): a realistic `KubeProxyConfiguration` read
//! field by field; unknown, ignored and unsupported fields named; the precedence defaults <
//! kube-proxy's file < our file < environment < flags, with `config --show-origin` naming each
//! value's source; kube-proxy's flags as aliases; and the agent run with nothing but kube-proxy's
//! file, against the kernel (`run --once`) and against an API server (`run`).

use agent::config::{self, DetectLocalMode, FlagOverrides};
use agent::kube_proxy_config::{self, KubeProxyConfig, ProxyMode};
use fake_apiserver::FakeApiServer;
use model::fixtures::{ep, service, slice};
use model::NodePortAddresses;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use testbed::{require_kernel, NetNs};

const BIN: &str = env!("CARGO_BIN_EXE_kube-nftproxy");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

fn example() -> PathBuf {
    repo().join("examples/kube-proxy-config.yaml")
}

static SCRATCH: AtomicUsize = AtomicUsize::new(0);

/// A scratch directory, deleted on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let n = SCRATCH.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("knp-kpc-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        Scratch(dir)
    }

    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn parse(text: &str) -> KubeProxyConfig {
    kube_proxy_config::parse(text, Path::new("kp.yaml"))
        .unwrap_or_else(|e| panic!("parsing: {e}\n{text}"))
}

/// A minimal v1alpha1 document with `body` (YAML lines) added.
fn doc(body: &str) -> String {
    format!("apiVersion: kubeproxy.config.k8s.io/v1alpha1\nkind: KubeProxyConfiguration\n{body}")
}

fn ignored_fields(kp: &KubeProxyConfig) -> Vec<&str> {
    kp.ignored.iter().map(|i| i.field.as_str()).collect()
}

fn unsupported_fields(kp: &KubeProxyConfig) -> Vec<&str> {
    kp.unsupported.iter().map(|u| u.field.as_str()).collect()
}

#[test]
fn a_realistic_configuration_is_read_field_by_field() {
    let kp = kube_proxy_config::read(&example()).expect("examples/kube-proxy-config.yaml");
    assert_eq!(kp.mode, ProxyMode::Nftables);
    let mapped: Vec<(&str, Value, &str)> = kp
        .mapped
        .iter()
        .map(|m| (m.key, m.value.clone(), m.field.as_str()))
        .collect();
    assert_eq!(
        mapped,
        vec![
            ("node_name", json!("node-a"), "hostnameOverride"),
            (
                "healthz_bind_address",
                json!("0.0.0.0:10256"),
                "healthzBindAddress"
            ),
            (
                "metrics_bind_address",
                json!("127.0.0.1:10249"),
                "metricsBindAddress"
            ),
            (
                "kubeconfig",
                json!("/var/lib/kube-proxy/kubeconfig.conf"),
                "clientConnection.kubeconfig"
            ),
            ("masquerade_all", json!(true), "nftables.masqueradeAll"),
            ("masquerade_bit", json!(14), "nftables.masqueradeBit"),
            ("sync_period_seconds", json!(45.0), "nftables.syncPeriod"),
            (
                "min_sync_period_seconds",
                json!(2.0),
                "nftables.minSyncPeriod"
            ),
            ("detect_local_mode", json!("NodeCIDR"), "detectLocalMode"),
            (
                "cluster_cidrs",
                json!(["10.244.0.0/16", "fd00:10:244::/56"]),
                "clusterCIDR"
            ),
            (
                "node_port_addresses",
                json!(["primary"]),
                "nodePortAddresses"
            ),
        ]
    );
    // kubeadm's zero values (iptables.*, ipvs.*, logging, winkernel, …) are unset, so not
    // named; what kube-proxy does by default at start (sysctls, OOM score) is.
    assert_eq!(
        ignored_fields(&kp),
        [
            "conntrack.maxPerCore",
            "conntrack.min",
            "conntrack.tcpEstablishedTimeout",
            "conntrack.tcpCloseWaitTimeout",
            "oomScoreAdj"
        ]
    );
    assert!(kp.ignored.iter().all(|i| !i.reason.is_empty()));
    assert_eq!(kp.unsupported, vec![]);

    // Into our configuration (nothing else given; no /etc/kube-nftproxy/config.toml read).
    let flags = FlagOverrides {
        kube_proxy_config: Some(example().to_string_lossy().into_owned()),
        ..FlagOverrides::default()
    };
    let loaded = config::load_with_origins(Some(Path::new("/dev/null")), &flags).expect("load");
    let c = &loaded.config;
    assert_eq!(c.detect_local_mode, DetectLocalMode::NodeCidr);
    assert_eq!(
        (c.min_sync_period_seconds, c.sync_period_seconds),
        (2.0, 45.0)
    );
    let node = c.node_config().expect("node config");
    assert_eq!(node.node_name, "node-a");
    assert!(node.pod_cidrs_from_node);
    assert!(node.masquerade_all);
    assert_eq!(node.node_port_addresses, NodePortAddresses::Primary);
    assert_eq!(c.ruleset_options().masquerade_bit, 14);
    let origin = |key: &str| loaded.origins.get(key).cloned().unwrap_or_default();
    assert_eq!(
        origin("sync_period_seconds"),
        format!("from nftables.syncPeriod in {}", example().display())
    );
    assert_eq!(origin("backend"), "default");
    assert_eq!(origin("kube_proxy_config"), "from --kube-proxy-config");
    assert!(loaded.overridden.is_empty(), "{:?}", loaded.overridden);
}

#[test]
fn unknown_ignored_and_unsupported_fields_are_named() {
    let text = doc(r#"mode: iptables
hostnameOverrde: typo
enableProfiling: true
clientConnection:
  qps: 50
  burst: 10
  kubeconfg: /x
detectLocalMode: BridgeInterface
detectLocal:
  bridgeInterface: cni0
iptables:
  snatNodeInternalIP: true
  masqueradeAl: true
  localhostNodePorts: false
nftables:
  masqueradeAll: true
ipvs:
  scheduler: sh
featureGates:
  PreferSameTrafficDistribution: false
  SomeOtherGate: true
  MultiCIDRServiceAllocator: true
nodePortAddresses: [primary, 10.0.0.0/8]
conntrack:
  maxPerCore: 0
  udpTimeout: 30s
configSyncPeriod: 15m0s
"#);
    let kp = parse(&text);
    let ignored = ignored_fields(&kp);
    for field in [
        "hostnameOverrde",
        "enableProfiling",
        "clientConnection.qps",
        "clientConnection.kubeconfg",
        "iptables.masqueradeAl",
        "nftables.masqueradeAll",
        "ipvs.scheduler",
        "featureGates.SomeOtherGate",
        "featureGates.MultiCIDRServiceAllocator",
        "conntrack.udpTimeout",
    ] {
        assert!(ignored.contains(&field), "{field} not in {ignored:?}");
    }
    // Defaults and zero values are not named: burst 10, configSyncPeriod 15m, maxPerCore 0
    // (so neither min), localhostNodePorts false.
    for field in [
        "clientConnection.burst",
        "configSyncPeriod",
        "conntrack.maxPerCore",
        "conntrack.min",
        "iptables.localhostNodePorts",
    ] {
        assert!(!ignored.contains(&field), "{field} in {ignored:?}");
    }
    let unknown = |field: &str| {
        kp.ignored
            .iter()
            .find(|i| i.field == field)
            .is_some_and(|i| i.reason.starts_with("unknown field"))
    };
    assert!(unknown("hostnameOverrde") && unknown("iptables.masqueradeAl"));
    assert!(!unknown("enableProfiling"));
    assert_eq!(
        unsupported_fields(&kp),
        [
            "featureGates.PreferSameTrafficDistribution",
            "iptables.snatNodeInternalIP",
            "detectLocalMode",
            "nodePortAddresses",
        ]
    );

    // As a configuration: an error naming every unsupported field …
    let scratch = Scratch::new();
    let path = scratch.file("kp.yaml", &text);
    let flags = FlagOverrides {
        kube_proxy_config: Some(path.to_string_lossy().into_owned()),
        ..FlagOverrides::default()
    };
    let err = config::load_with_origins(Some(Path::new("/dev/null")), &flags)
        .expect_err("unsupported fields")
        .to_string();
    for field in [
        "featureGates.PreferSameTrafficDistribution",
        "iptables.snatNodeInternalIP",
        "detectLocalMode: BridgeInterface (bridge cni0)",
        "nodePortAddresses",
        "kp.yaml",
    ] {
        assert!(err.contains(field), "{field}: {err}");
    }
    // … except those our own configuration replaces.
    let ours = scratch.file(
        "ours.toml",
        "detect_local_mode = \"ClusterCIDR\"\nnode_port_addresses = [\"primary\"]\n",
    );
    let err = config::load_with_origins(Some(&ours), &flags)
        .expect_err("still unsupported")
        .to_string();
    assert!(
        !err.contains("detectLocalMode") && !err.contains("nodePortAddresses"),
        "{err}"
    );
    assert!(err.contains("snatNodeInternalIP"), "{err}");
    let fixed = path.to_string_lossy().into_owned();
    let clean = text
        .replace("  snatNodeInternalIP: true\n", "")
        .replace("  PreferSameTrafficDistribution: false\n", "");
    std::fs::write(&fixed, clean).expect("rewrite");
    let loaded = config::load_with_origins(Some(&ours), &flags).expect("replaced by ours");
    assert_eq!(
        loaded.config.detect_local_mode,
        DetectLocalMode::ClusterCidr
    );
    assert!(
        loaded
            .overridden
            .iter()
            .any(|l| l.starts_with("detectLocalMode is not honoured, but detect_local_mode is set")),
        "{:?}",
        loaded.overridden
    );
}

#[test]
fn the_mode_decides_sections_and_defaults() {
    // iptables (also when mode is empty): iptables.* are read; NodePorts on every address by
    // default, and localhost NodePorts (not served) named.
    let kp = parse(&doc(
        "mode: \"\"\niptables:\n  masqueradeAll: true\n  syncPeriod: 1m\n  minSyncPeriod: 500ms\n\
         nftables:\n  syncPeriod: 10s\n",
    ));
    assert_eq!(kp.mode, ProxyMode::Iptables);
    assert_eq!(kp.value("masquerade_all"), Some(&json!(true)));
    assert_eq!(kp.value("sync_period_seconds"), Some(&json!(60.0)));
    assert_eq!(kp.value("min_sync_period_seconds"), Some(&json!(0.5)));
    assert_eq!(
        kp.value("node_port_addresses"),
        Some(&json!(["0.0.0.0/0", "::/0"]))
    );
    assert!(kp
        .field_of("node_port_addresses")
        .is_some_and(|f| f.contains("unset: all")));
    let ignored = ignored_fields(&kp);
    assert!(ignored.contains(&"nftables.syncPeriod"), "{ignored:?}");
    assert!(
        ignored.contains(&"iptables.localhostNodePorts"),
        "{ignored:?}"
    );
    // Written out, kube-proxy's default is no different from unset; listing loopback
    // addresses asks for localhost NodePorts, which cannot be honoured.
    let kp = parse(&doc("iptables:\n  localhostNodePorts: true\n"));
    assert_eq!(unsupported_fields(&kp), Vec::<&str>::new());
    assert!(kp.is_ignored("iptables.localhostNodePorts"));
    let kp = parse(&doc("nodePortAddresses: [127.0.0.1/32, 10.0.0.0/8]\n"));
    assert_eq!(unsupported_fields(&kp), ["nodePortAddresses"]);
    let kp = parse(&doc(
        "nodePortAddresses: [localhost]\niptables:\n  localhostNodePorts: false\n",
    ));
    assert_eq!(unsupported_fields(&kp), Vec::<&str>::new());

    // ipvs: masquerading from iptables.*, sync periods from ipvs.* (minimum 0 by default).
    let kp = parse(&doc(
        "mode: ipvs\niptables:\n  masqueradeBit: 13\nipvs:\n  syncPeriod: 20s\n  strictARP: true\n",
    ));
    assert_eq!(kp.value("masquerade_bit"), Some(&json!(13)));
    assert_eq!(kp.value("sync_period_seconds"), Some(&json!(20.0)));
    assert_eq!(kp.value("min_sync_period_seconds"), Some(&json!(0.0)));
    let ignored = ignored_fields(&kp);
    assert!(ignored.contains(&"ipvs.scheduler") && ignored.contains(&"ipvs.strictARP"));

    // nftables: nodePortAddresses unset is primary, ours too: nothing mapped.
    let kp = parse(&doc("mode: nftables\n"));
    assert_eq!(kp.value("node_port_addresses"), None);
    // CIDRs (and `all`) become CIDRs; the difference for non-Node addresses is named.
    let kp = parse(&doc(
        "mode: nftables\nnodePortAddresses: [10.0.0.0/8, all]\n",
    ));
    assert_eq!(
        kp.value("node_port_addresses"),
        Some(&json!(["10.0.0.0/8", "0.0.0.0/0", "::/0"]))
    );
    assert!(kp.is_ignored("nodePortAddresses"));
    // localhost with the nftables gate is a loopback NodePort: not served.
    let kp = parse(&doc(
        "mode: nftables\nnodePortAddresses: [localhost]\nfeatureGates:\n  \
         KubeProxyNFTablesLocalhostNodePorts: true\n",
    ));
    assert_eq!(
        unsupported_fields(&kp),
        ["featureGates.KubeProxyNFTablesLocalhostNodePorts"]
    );

    // An IPv6 bindAddress: the node's primary address, and IPv6 default listeners.
    let kp = parse(&doc("mode: nftables\nbindAddress: fd00::11\n"));
    assert_eq!(kp.value("node_ips"), Some(&json!(["fd00::11"])));
    assert_eq!(kp.value("healthz_bind_address"), Some(&json!("[::]:10256")));
    assert_eq!(
        kp.value("metrics_bind_address"),
        Some(&json!("[::1]:10249"))
    );
    // … which on a dual-stack cluster would lose the other family's Node address.
    let kp = parse(&doc(
        "mode: nftables\nbindAddress: 10.0.0.11\nclusterCIDR: 10.244.0.0/16,fd00:10:244::/56\n",
    ));
    assert_eq!(unsupported_fields(&kp), ["bindAddress"]);
    // Addresses without a port get kube-proxy's.
    let kp = parse(&doc(
        "healthzBindAddress: 127.0.0.1\nmetricsBindAddress: \"::\"\n",
    ));
    assert_eq!(
        kp.value("healthz_bind_address"),
        Some(&json!("127.0.0.1:10256"))
    );
    assert_eq!(kp.value("metrics_bind_address"), Some(&json!("[::]:10249")));
    // A bad CIDR, or three, is an error naming the field.
    let kp = parse(&doc("clusterCIDR: 10.0.0.0/33\n"));
    assert_eq!(unsupported_fields(&kp), ["clusterCIDR"]);
    let kp = parse(&doc("clusterCIDR: 10.0.0.0/8,10.1.0.0/16\n"));
    assert_eq!(unsupported_fields(&kp), ["clusterCIDR"]);
    // Windows' mode.
    let kp = parse(&doc("mode: kernelspace\n"));
    assert_eq!(unsupported_fields(&kp), ["mode"]);
}

#[test]
fn json_a_whole_configmap_and_wrong_documents() {
    let kp = parse(
        r#"{"apiVersion": "kubeproxy.config.k8s.io/v1alpha1", "kind": "KubeProxyConfiguration",
            "mode": "nftables", "hostnameOverride": " Node-A ", "clusterCIDR": "10.244.0.0/16"}"#,
    );
    assert_eq!(
        kp.value("node_name"),
        Some(&json!("node-a")),
        "trimmed, lower-cased"
    );
    let inner = std::fs::read_to_string(example()).expect("example");
    let config_map = serde_json::to_string(&json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "kube-proxy", "namespace": "kube-system"},
        "data": {"config.conf": inner, "kubeconfig.conf": "apiVersion: v1\nkind: Config\n"},
    }))
    .expect("json");
    let kp = parse(&config_map);
    assert_eq!(kp.value("detect_local_mode"), Some(&json!("NodeCIDR")));
    for (text, expected) in [
        (
            "apiVersion: kubeproxy.config.k8s.io/v1alpha2\nkind: KubeProxyConfiguration\n",
            "apiVersion",
        ),
        (
            "apiVersion: v1\nkind: Service\n",
            "not a KubeProxyConfiguration",
        ),
        ("", "empty"),
        ("mode: [", "YAML"),
    ] {
        let err = kube_proxy_config::parse(text, Path::new("x.yaml"))
            .expect_err(text)
            .to_string();
        assert!(err.contains(expected) && err.contains("x.yaml"), "{err}");
    }
}

fn config_cmd(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.arg("config").args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("running kube-nftproxy config")
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[track_caller]
fn has_line(out: &str, line: &str) {
    assert!(
        out.lines().any(|l| l == line),
        "no line {line:?} in:\n{out}"
    );
}

#[test]
fn precedence_kube_proxy_file_then_ours_then_environment_then_flags() {
    let scratch = Scratch::new();
    let kp = example().to_string_lossy().into_owned();
    // Our file names kube-proxy's (the key, not the flag) and sets one of its values.
    let ours = scratch.file(
        "ours.toml",
        &format!(
            "kube_proxy_config = \"{kp}\"\nmin_sync_period_seconds = 0.5\nmasquerade_bit = 13\n"
        ),
    );
    let ours_text = ours.to_string_lossy().into_owned();
    let out = config_cmd(
        &[
            "--config",
            &ours_text,
            "--show-origin",
            "--hostname-override",
            "from-flag",
        ],
        &[
            ("KUBE_NFTPROXY_SYNC_PERIOD_SECONDS", "20"),
            ("KUBE_NFTPROXY_MASQUERADE_BIT", "12"),
        ],
    );
    let text = stdout(&out);
    has_line(
        &text,
        "node_name = \"from-flag\"  # from --node (--hostname-override)",
    );
    has_line(
        &text,
        "sync_period_seconds = 20.0  # from KUBE_NFTPROXY_SYNC_PERIOD_SECONDS",
    );
    has_line(
        &text,
        "masquerade_bit = 12  # from KUBE_NFTPROXY_MASQUERADE_BIT",
    );
    has_line(
        &text,
        &format!("min_sync_period_seconds = 0.5  # from {ours_text}"),
    );
    has_line(
        &text,
        &format!("kube_proxy_config = \"{kp}\"  # from {ours_text}"),
    );
    has_line(
        &text,
        &format!("masquerade_all = true  # from nftables.masqueradeAll in {kp}"),
    );
    has_line(
        &text,
        &format!("detect_local_mode = \"NodeCIDR\"  # from detectLocalMode in {kp}"),
    );
    has_line(&text, "backend = \"netlink\"  # default");
    // The fields overridden, and those ignored, are listed after the values.
    assert!(
        text.contains("# nftables.syncPeriod (45.0) is overridden by sync_period_seconds (from KUBE_NFTPROXY_SYNC_PERIOD_SECONDS)"),
        "{text}"
    );
    assert!(
        text.contains("# ignored oomScoreAdj = -999 (kube-proxy's default): "),
        "{text}"
    );
    // They are also logged, once each, at start.
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(log.matches("ignored conntrack.min").count(), 1, "{log}");

    // kube-proxy's flags, as aliases, over everything.
    let out = config_cmd(
        &[
            "--config",
            &ours_text,
            "--cluster-cidr",
            "10.1.0.0/16,fd00:1::/48",
            "--detect-local-mode",
            "ClusterCIDR",
            "--nodeport-addresses",
            "10.0.0.0/8,fd00::/8",
            "--masquerade-all=false",
            "--healthz-bind-address",
            "127.0.0.1",
            "--metrics-bind-address",
            "[::1]:9999",
            "--kubeconfig",
            "/k",
        ],
        &[],
    );
    let text = stdout(&out);
    has_line(&text, "cluster_cidrs = [\"10.1.0.0/16\", \"fd00:1::/48\"]");
    has_line(&text, "detect_local_mode = \"ClusterCIDR\"");
    has_line(
        &text,
        "node_port_addresses = [\"10.0.0.0/8\", \"fd00::/8\"]",
    );
    has_line(&text, "masquerade_all = false");
    has_line(&text, "healthz_bind_address = \"127.0.0.1:10256\"");
    has_line(&text, "metrics_bind_address = \"[::1]:9999\"");
    has_line(&text, "kubeconfig = \"/k\"");
    // Without --show-origin the output is plain TOML and a valid configuration file.
    assert!(!text.contains('#'), "{text}");
    let again = scratch.file("again.toml", &text);
    let again = stdout(&config_cmd(&["--config", &again.to_string_lossy()], &[]));
    assert_eq!(text, again);

    // The interface-based modes are refused by the flag too, with the reason.
    let out = config_cmd(
        &[
            "--config",
            "/dev/null",
            "--detect-local-mode",
            "BridgeInterface",
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not implemented"), "{err}");
    // An unsupported field is an error naming it, from `config` too.
    let bad = scratch.file("bad.yaml", &doc("detectLocalMode: InterfaceNamePrefix\n"));
    let out = config_cmd(
        &[
            "--config",
            "/dev/null",
            "--kube-proxy-config",
            &bad.to_string_lossy(),
        ],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("detectLocalMode: InterfaceNamePrefix"),
        "{err}"
    );
    // A bad value from kube-proxy's file names the key and the field.
    let bad = scratch.file(
        "bit.yaml",
        &doc("mode: nftables\nnftables:\n  masqueradeBit: 40\n"),
    );
    let out = config_cmd(
        &[
            "--config",
            "/dev/null",
            "--kube-proxy-config",
            &bad.to_string_lossy(),
        ],
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nftables.masqueradeBit") && err.contains("40"),
        "{err}"
    );
}

/// Runs the binary in `ns` with `args`; stdout, panicking with stderr on failure.
fn agent_in(ns: &NetNs, args: &[&str]) -> String {
    let out = ns
        .exec(BIN, args)
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"));
    assert!(
        out.status.success(),
        "kube-nftproxy {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `run --once` with nothing but kube-proxy's file programs what our own configuration saying
/// the same (node-a, node-a's pod CIDRs, primary NodePort addresses, masquerade all) does.
#[test]
fn run_once_with_only_kube_proxy_s_file_behaves_as_that_kube_proxy() {
    if !require_kernel() {
        return;
    }
    let scratch = Scratch::new();
    let manifests = repo().join("examples/cluster.yaml");
    let manifests = manifests.to_string_lossy();
    let kp = example().to_string_lossy().into_owned();
    let from_kube_proxy = NetNs::new("kpc").unwrap_or_else(|e| panic!("netns: {e}"));
    let summary = agent_in(
        &from_kube_proxy,
        &[
            "run",
            "--once",
            "--manifests",
            &manifests,
            "--kube-proxy-config",
            &kp,
        ],
    );
    assert!(summary.starts_with("applied "), "{summary}");
    let ours = scratch.file(
        "ours.toml",
        "node_name = \"node-a\"\n\
         cluster_cidrs = [\"10.244.1.0/24\", \"fd00:10:244:1::/64\"]\n\
         node_port_addresses = [\"primary\"]\n\
         masquerade_all = true\n",
    );
    let from_ours = NetNs::new("kpc").unwrap_or_else(|e| panic!("netns: {e}"));
    agent_in(
        &from_ours,
        &[
            "run",
            "--once",
            "--manifests",
            &manifests,
            "--config",
            &ours.to_string_lossy(),
        ],
    );
    let listing = |ns: &NetNs| {
        ns.nft_list_ruleset()
            .unwrap_or_else(|e| panic!("listing: {e}"))
    };
    let got = listing(&from_kube_proxy);
    assert_eq!(got, listing(&from_ours));
    // Local detection by node-a's pod CIDRs (NodeCIDR), not the cluster's.
    assert!(
        got.contains("10.244.1.0/24") && got.contains("fd00:10:244:1::/64"),
        "{got}"
    );
    assert!(!got.contains("10.244.0.0/16"), "{got}");
    assert!(got.contains("masquerade all ClusterIP traffic"), "{got}");
    // NodePorts on node-a's primary addresses only.
    assert!(
        got.contains("10.0.0.11") && got.contains("fd00:10::11"),
        "{got}"
    );
    assert!(!got.contains("10.0.0.12"), "{got}");
}

/// `kube-nftproxy run --kube-proxy-config FILE` and nothing else, against an API server named
/// by the file's kubeconfig: the node's rules appear, and /healthz answers where the file says.
#[test]
fn run_with_only_kube_proxy_s_file_against_an_api_server() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("kpcd").unwrap_or_else(|e| panic!("netns: {e}"));
    ns.run("ip", &["link", "set", "lo", "up"])
        .unwrap_or_else(|e| panic!("lo up: {e}"));
    let listener = nft::in_netns(&Path::new("/var/run/netns").join(ns.name()), || {
        TcpListener::bind("127.0.0.1:0")
    })
    .and_then(|bound| bound)
    .unwrap_or_else(|e| panic!("binding the API server's port: {e}"));
    let server = FakeApiServer::start(listener);
    let mut node = model::fixtures::node("node-a", &["10.0.0.11", "fd00:10::11"], None);
    if let Some(spec) = node.spec.as_mut() {
        spec.pod_cidrs = Some(vec!["10.244.1.0/24".into(), "fd00:10:244:1::/64".into()]);
    }
    server.apply(&node);
    server.apply(
        &service("shop", "web", "10.96.0.20")
            .node_port("http", "TCP", 80, 30080)
            .type_("NodePort")
            .etp_local()
            .0,
    );
    server.apply(
        &slice("shop", "web-1", "web", "IPv4")
            .endpoint(ep("10.244.1.10", "node-a"))
            .port("http", "TCP", 8080)
            .0,
    );
    let scratch = Scratch::new();
    let kubeconfig = scratch.file(
        "kubeconfig.conf",
        &format!(
            "apiVersion: v1\nkind: Config\ncurrent-context: test\n\
             clusters:\n- name: test\n  cluster:\n    server: {}\n\
             users:\n- name: test\n  user: {{}}\n\
             contexts:\n- name: test\n  context:\n    cluster: test\n    user: test\n",
            server.url()
        ),
    );
    let healthz: SocketAddr = "127.0.0.1:10266".parse().expect("address");
    let text = std::fs::read_to_string(example())
        .expect("example")
        .replace(
            "/var/lib/kube-proxy/kubeconfig.conf",
            &kubeconfig.to_string_lossy(),
        )
        .replace("0.0.0.0:10256", &healthz.to_string())
        .replace("127.0.0.1:10249", "127.0.0.1:10259")
        .replace("minSyncPeriod: 2s", "minSyncPeriod: 100ms");
    let kp = scratch.file("config.conf", &text);
    let log = scratch.0.join("agent.log");
    let stderr = std::fs::File::create(&log).expect("log file");
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            BIN,
            "run",
            "--kube-proxy-config",
        ])
        .arg(&kp)
        .env_remove("KUBECONFIG")
        .env_remove("KUBERNETES_SERVICE_HOST")
        .env("HOME", &scratch.0)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .expect("starting the agent");
    let mut agent = Running(Some(child));
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = String::new();
    let ok = loop {
        agent.assert_running(&log);
        last = ns.nft_list_ruleset().unwrap_or(last);
        let programmed = last.contains("10.96.0.20")
            && last.contains("10.244.1.0/24")
            && last.contains("masquerade all ClusterIP traffic")
            && last.contains("10.0.0.11");
        if programmed && http_status(&ns, healthz, "/healthz") == Some(200) {
            break true;
        }
        if Instant::now() > deadline {
            break false;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let text = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        ok,
        "not programmed (or /healthz not 200) in time; ruleset:\n{last}\nlog:\n{text}"
    );
    assert!(text.contains("read kube-proxy's configuration"), "{text}");
    drop(agent);
    server.stop();
}

/// The agent process, stopped (SIGTERM, then SIGKILL) on drop.
struct Running(Option<Child>);

impl Running {
    fn assert_running(&mut self, log: &Path) {
        if let Some(child) = self.0.as_mut() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the agent exited ({status}):\n{}",
                    std::fs::read_to_string(log).unwrap_or_default()
                );
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let Some(mut child) = self.0.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The status of `GET path` at `addr` inside `ns`.
fn http_status(ns: &NetNs, addr: SocketAddr, path: &str) -> Option<u16> {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    nft::in_netns(&Path::new("/var/run/netns").join(ns.name()), move || {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(request.as_bytes()).ok()?;
        let mut raw = String::new();
        stream.read_to_string(&mut raw).ok()?;
        raw.split_whitespace().nth(1)?.parse().ok()
    })
    .ok()
    .flatten()
}
