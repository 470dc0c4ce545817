//! The Kubernetes deployment of the agent (`packaging/kubernetes`), the kind clusters of the e2e
//! tests (`packaging/kind`) and the e2e scripts (`tests/e2e`), checked without a cluster:
//!
//! * every manifest parses into its k8s-openapi type, and serializing that back loses no field
//!   and changes no value (k8s-openapi ignores unknown fields, so a misspelt or misplaced key
//!   would otherwise go unnoticed here and be dropped by the API server);
//! * the DaemonSet keeps what the agent needs and nothing more (NET_ADMIN only, host network,
//!   node name from the downward API, probes on `/livez`, …), each assertion saying why;
//! * `config.toml` loads with the agent's own loader as the pod sees it (with the DaemonSet's
//!   environment), and names the API server explicitly;
//! * the ClusterRole grants exactly what the agent's watchers request, as recorded by the
//!   in-process fake API server while `agent::source::kube::run` lists and watches;
//! * with `kubectl` (or `kustomize`) installed, `kustomize build` of the base and of the e2e
//!   overlay (`tests/e2e/lib.sh` `write_overlay`) give the objects expected; without, those two
//!   checks say so and pass;
//! * the e2e scripts parse (`bash -n`) and, when shellcheck is installed, pass it.

use agent::config::{load, Config, FlagOverrides};
use agent::state::{Shared, SourceKind};
use fake_apiserver::FakeApiServer;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Container, PodSpec, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The namespace of everything namespaced.
const NAMESPACE: &str = "kube-system";
/// The name of the ServiceAccount, ClusterRole, ClusterRoleBinding and DaemonSet.
const NAME: &str = "kube-nftproxy";
/// The ConfigMap's name before kustomize appends the hash of its content.
const CONFIG_MAP: &str = "kube-nftproxy-config";
/// Where the pod reads its configuration.
const CONFIG_DIR: &str = "/etc/kube-nftproxy";
/// The e2e cluster's default name (`$KIND_CLUSTER` in tests/e2e/lib.sh).
const KIND_CLUSTER: &str = "kube-nftproxy-e2e";
/// kind's default pod subnets.
const POD_CIDR_V4: &str = "10.244.0.0/16";
const POD_CIDR_V6: &str = "fd00:10:244::/56";

/// The tests that change the process's environment or working directory (figment's `Jail`) or
/// start processes (which inherit both) take this lock, so that they never overlap.
static PROCESS: Mutex<()> = Mutex::new(());

fn process_lock() -> MutexGuard<'static, ()> {
    PROCESS.lock().unwrap_or_else(|p| p.into_inner())
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Every document of a YAML text (empty documents skipped).
fn yaml_documents(text: &str, what: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{what}: not YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The fields of kustomization.yaml we use; any other field is an error.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Kustomization {
    api_version: String,
    kind: String,
    namespace: String,
    resources: Vec<String>,
    config_map_generator: Vec<Generator>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Generator {
    name: String,
    files: Vec<String>,
    options: Option<GeneratorOptions>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GeneratorOptions {
    labels: BTreeMap<String, String>,
}

fn base_dir() -> PathBuf {
    repo().join("packaging/kubernetes")
}

fn kustomization() -> Kustomization {
    let path = base_dir().join("kustomization.yaml");
    let text = read(&path);
    let k: Kustomization =
        serde_norway::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(k.api_version, "kustomize.config.k8s.io/v1beta1");
    assert_eq!(k.kind, "Kustomization");
    k
}

/// The paths (`.spec.template…`) of `original` that `round_trip` lacks or holds another value
/// at.
fn lost_fields(original: &Value, round_trip: &Value, path: &str, lost: &mut Vec<String>) {
    match (original, round_trip) {
        (Value::Object(a), Value::Object(b)) => {
            for (key, value) in a {
                let here = format!("{path}.{key}");
                match b.get(key) {
                    Some(other) => lost_fields(value, other, &here, lost),
                    None => lost.push(format!("{here} (unknown to the type: dropped)")),
                }
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (value, other)) in a.iter().zip(b).enumerate() {
                lost_fields(value, other, &format!("{path}[{i}]"), lost);
            }
        }
        (a, b) if a == b => {}
        (a, b) => lost.push(format!("{path}: {a} came back as {b}")),
    }
}

/// `value` as a `T`, requiring that serializing the `T` gives back every field and value.
fn typed<T: DeserializeOwned + Serialize>(value: &Value, what: &str) -> T {
    let object: T = serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("{what}: not a valid {}: {e}", std::any::type_name::<T>()));
    let back = serde_json::to_value(&object).unwrap_or_else(|e| panic!("{what}: {e}"));
    let mut lost = Vec::new();
    lost_fields(value, &back, "", &mut lost);
    assert!(
        lost.is_empty(),
        "{what}: fields lost in a round trip: {lost:#?}"
    );
    object
}

/// The objects of a rendered or listed set, by kind.
#[derive(Debug, Default)]
struct Objects {
    service_accounts: Vec<ServiceAccount>,
    cluster_roles: Vec<ClusterRole>,
    cluster_role_bindings: Vec<ClusterRoleBinding>,
    daemon_sets: Vec<DaemonSet>,
    config_maps: Vec<ConfigMap>,
}

impl Objects {
    fn add(&mut self, value: &Value, what: &str) {
        let api_version = value["apiVersion"].as_str().unwrap_or_default();
        let kind = value["kind"].as_str().unwrap_or_default();
        let what = format!("{what}: {kind} {}", value["metadata"]["name"]);
        match (api_version, kind) {
            ("v1", "ServiceAccount") => self.service_accounts.push(typed(value, &what)),
            ("rbac.authorization.k8s.io/v1", "ClusterRole") => {
                self.cluster_roles.push(typed(value, &what))
            }
            ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding") => {
                self.cluster_role_bindings.push(typed(value, &what))
            }
            ("apps/v1", "DaemonSet") => self.daemon_sets.push(typed(value, &what)),
            ("v1", "ConfigMap") => self.config_maps.push(typed(value, &what)),
            _ => panic!("{what}: unexpected apiVersion {api_version:?} kind {kind:?}"),
        }
    }

    fn from_documents(documents: &[Value], what: &str) -> Objects {
        let mut objects = Objects::default();
        for document in documents {
            objects.add(document, what);
        }
        objects
    }

    fn daemon_set(&self) -> &DaemonSet {
        match self.daemon_sets.as_slice() {
            [one] => one,
            other => panic!("expected one DaemonSet, found {}", other.len()),
        }
    }

    fn cluster_role(&self) -> &ClusterRole {
        match self.cluster_roles.as_slice() {
            [one] => one,
            other => panic!("expected one ClusterRole, found {}", other.len()),
        }
    }
}

/// The objects of the base's resource files (the ConfigMap is generated by kustomize, so it is
/// not among them).
fn base_objects() -> Objects {
    let mut objects = Objects::default();
    for file in kustomization().resources {
        let path = base_dir().join(&file);
        for document in yaml_documents(&read(&path), &file) {
            objects.add(&document, &file);
        }
    }
    objects
}

fn pod_spec(ds: &DaemonSet) -> &PodSpec {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .expect("the DaemonSet has a pod template spec")
}

fn container(ds: &DaemonSet) -> &Container {
    match pod_spec(ds).containers.as_slice() {
        [one] => one,
        other => panic!("expected one container, found {}", other.len()),
    }
}

fn config_path() -> PathBuf {
    base_dir().join("config.toml")
}

/// Loads a configuration text with the agent's loader, in a jail whose environment is exactly
/// the DaemonSet's `KUBE_NFTPROXY_*` variables (the downward API's `spec.nodeName` given as
/// `node_name`), as the pod's process sees it.
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
fn load_as_the_pod(text: &str, ds: &DaemonSet, node_name: &str) -> Config {
    let _guard = process_lock();
    let mut loaded = None;
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        for var in container(ds).env.iter().flatten() {
            if !var.name.starts_with(agent::config::ENV_PREFIX) {
                continue;
            }
            let from_node_name = var
                .value_from
                .as_ref()
                .and_then(|v| v.field_ref.as_ref())
                .is_some_and(|f| f.field_path == "spec.nodeName");
            let value = match (&var.value, from_node_name) {
                (Some(value), _) => value.clone(),
                (None, true) => node_name.to_owned(),
                (None, false) => panic!("{}: neither a value nor spec.nodeName", var.name),
            };
            jail.set_env(&var.name, value);
        }
        jail.create_file("config.toml", text)?;
        let config = load(Some(Path::new("config.toml")), &FlagOverrides::default())
            .unwrap_or_else(|e| panic!("the agent's loader rejects the configuration: {e}"));
        loaded = Some(config);
        Ok(())
    });
    loaded.expect("the jail ran")
}

/// Runs `kustomize build DIR` (kubectl's built-in one, or a standalone kustomize); None when
/// neither is installed.
fn kustomize_build(dir: &Path) -> Option<String> {
    let _guard = process_lock();
    let attempts: [(&str, &[&str]); 2] = [("kubectl", &["kustomize"]), ("kustomize", &["build"])];
    for (program, args) in attempts {
        let output = match Command::new(program).args(args).arg(dir).output() {
            Ok(output) => output,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => panic!("running {program}: {e}"),
        };
        assert!(
            output.status.success(),
            "{program} {} {}: {}",
            args.join(" "),
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        );
        return Some(String::from_utf8(output.stdout).expect("UTF-8 output"));
    }
    None
}

/// Every YAML file of the base is a resource or the kustomization; each parses into its type
/// with no field lost; namespaced objects live in kube-system, as the kustomization says.
#[test]
fn every_manifest_is_listed_and_parses_without_losing_a_field() {
    let k = kustomization();
    assert_eq!(k.namespace, NAMESPACE);
    let mut on_disk: BTreeSet<String> = std::fs::read_dir(base_dir())
        .expect("packaging/kubernetes")
        .map(|entry| {
            entry
                .expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".yaml") || name.ends_with(".yml"))
        .collect();
    assert!(on_disk.remove("kustomization.yaml"));
    let listed: BTreeSet<String> = k.resources.iter().cloned().collect();
    assert_eq!(
        on_disk, listed,
        "YAML files not listed in kustomization.yaml, or missing"
    );

    let objects = base_objects();
    assert_eq!(objects.service_accounts.len(), 1);
    assert_eq!(objects.cluster_roles.len(), 1);
    assert_eq!(objects.cluster_role_bindings.len(), 1);
    assert_eq!(objects.daemon_sets.len(), 1);
    assert!(objects.config_maps.is_empty(), "the ConfigMap is generated");
    let sa = &objects.service_accounts[0];
    let ds = objects.daemon_set();
    for (kind, meta) in [
        ("ServiceAccount", &sa.metadata),
        ("DaemonSet", &ds.metadata),
    ] {
        assert_eq!(meta.name.as_deref(), Some(NAME), "{kind}");
        assert_eq!(meta.namespace.as_deref(), Some(NAMESPACE), "{kind}");
    }

    // The generated ConfigMap: config.toml, under the name the DaemonSet mounts.
    match k.config_map_generator.as_slice() {
        [generator] => {
            assert_eq!(generator.name, CONFIG_MAP);
            assert_eq!(generator.files, ["config.toml"]);
            assert!(config_path().is_file());
            let labels = generator.options.as_ref().map(|o| &o.labels);
            assert_eq!(
                labels
                    .and_then(|l| l.get("app.kubernetes.io/name"))
                    .map(String::as_str),
                Some(NAME)
            );
        }
        other => panic!("expected one configMapGenerator, found {other:?}"),
    }
}

/// NET_ADMIN is the one capability the agent needs (nf_tables, conntrack over netlink,
/// SO_RCVBUFFORCE); everything else is dropped and the container is not privileged. It runs as
/// root because Kubernetes gives added capabilities to root only; its root filesystem is
/// read-only (it writes nothing) and it cannot gain privileges.
#[test]
fn the_agent_runs_with_net_admin_only() {
    let objects = base_objects();
    let sc = container(objects.daemon_set())
        .security_context
        .as_ref()
        .expect("a security context");
    assert_ne!(sc.privileged, Some(true), "must not be privileged");
    let caps = sc.capabilities.as_ref().expect("capabilities");
    assert_eq!(caps.add.as_deref(), Some(&["NET_ADMIN".to_owned()][..]));
    assert_eq!(caps.drop.as_deref(), Some(&["ALL".to_owned()][..]));
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.run_as_user,
        Some(0),
        "added capabilities are given to root only"
    );
    assert_ne!(sc.run_as_non_root, Some(true));
    assert_eq!(
        sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
        Some("RuntimeDefault")
    );
    let pod_sc = pod_spec(objects.daemon_set()).security_context.as_ref();
    assert!(
        pod_sc.and_then(|s| s.run_as_non_root).is_none(),
        "a pod-level runAsNonRoot would forbid root"
    );
    // No host path at all: no /lib/modules (nf_tables autoloads), no xtables.lock.
    for volume in pod_spec(objects.daemon_set()).volumes.iter().flatten() {
        assert!(
            volume.host_path.is_none(),
            "hostPath volume {}",
            volume.name
        );
    }
}

/// The pod of a node's service proxy: the host's network namespace (its rules are the node's),
/// every node including tainted ones, node-critical priority, Linux nodes only, its own service
/// account with the token mounted. DNS is the node's: the agent resolves the API server's name
/// before any Service works (the cluster DNS is a Service). No service links: the agent reads
/// every KUBE_NFTPROXY_* variable as a configuration key and rejects unknown ones.
#[test]
fn the_pod_is_a_node_critical_host_network_pod_on_every_node() {
    let objects = base_objects();
    let pod = pod_spec(objects.daemon_set());
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(pod.dns_policy.as_deref(), Some("Default"));
    assert_eq!(pod.enable_service_links, Some(false));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    let tolerations = pod.tolerations.as_deref().expect("tolerations");
    let everything = serde_json::json!([{"operator": "Exists"}]);
    assert_eq!(
        serde_json::to_value(tolerations).expect("JSON"),
        everything,
        "tolerate every taint, as kube-proxy does"
    );
    assert_eq!(
        pod.node_selector
            .as_ref()
            .and_then(|s| s.get("kubernetes.io/os"))
            .map(String::as_str),
        Some("linux")
    );
    let sa = objects.service_accounts[0].metadata.name.as_deref();
    assert_eq!(pod.service_account_name.as_deref(), sa);
    assert_ne!(pod.automount_service_account_token, Some(false));
    assert_ne!(
        objects.service_accounts[0].automount_service_account_token,
        Some(false),
        "the in-cluster configuration needs the token"
    );
    let grace = pod
        .termination_grace_period_seconds
        .expect("a grace period");
    assert!(
        (1..=30).contains(&grace),
        "SIGTERM stops the agent at once: {grace}"
    );

    // The pod template's labels are selected, and only by the DaemonSet's selector.
    let ds = objects.daemon_set();
    let spec = ds.spec.as_ref().expect("spec");
    let template_labels = spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref());
    for (key, value) in spec.selector.match_labels.iter().flatten() {
        assert_eq!(
            template_labels.and_then(|l| l.get(key)),
            Some(value),
            "{key}"
        );
    }
}

/// The node's name comes from the downward API (spec.nodeName), so it always matches
/// EndpointSlices' nodeName, and under the variable the agent's loader reads.
#[test]
fn the_node_name_comes_from_the_downward_api() {
    let objects = base_objects();
    let env = container(objects.daemon_set()).env.as_deref().expect("env");
    let var = env
        .iter()
        .find(|v| v.name == "KUBE_NFTPROXY_NODE_NAME")
        .expect("KUBE_NFTPROXY_NODE_NAME");
    assert_eq!(var.value, None);
    let field = var
        .value_from
        .as_ref()
        .and_then(|v| v.field_ref.as_ref())
        .expect("a fieldRef");
    assert_eq!(field.field_path, "spec.nodeName");
    assert_eq!(
        format!("{}node_name", agent::config::ENV_PREFIX).to_uppercase(),
        var.name
    );
}

/// Liveness and readiness both probe /livez on the healthz port the configuration binds (not
/// /healthz: it fails while the Node is being deleted, which must drain load balancers, not
/// restart the agent or stall a rollout).
#[test]
fn probes_are_on_livez_of_the_healthz_port() {
    let objects = base_objects();
    let ds = objects.daemon_set();
    let c = container(ds);
    let config = load_as_the_pod(&read(&config_path()), ds, "kind-worker");
    let port = config
        .healthz_address()
        .expect("healthz_bind_address")
        .port();
    assert_eq!(port, 10256);
    for (which, probe) in [
        ("liveness", &c.liveness_probe),
        ("readiness", &c.readiness_probe),
    ] {
        let get = probe
            .as_ref()
            .and_then(|p| p.http_get.as_ref())
            .unwrap_or_else(|| panic!("{which}: an httpGet probe"));
        assert_eq!(get.path.as_deref(), Some("/livez"), "{which}");
        assert_eq!(get.port, IntOrString::Int(i32::from(port)), "{which}");
        assert!(
            get.host.is_none(),
            "{which}: the pod's (the node's) address"
        );
        assert!(
            matches!(get.scheme.as_deref(), None | Some("HTTP")),
            "{which}"
        );
    }
    let declared = c
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect::<Vec<_>>();
    assert_eq!(declared, [i32::from(port)], "the declared (host) port");
}

/// CPU and memory are requested, memory is limited; the DaemonSet rolls one node at a time,
/// without surge (the old and new pods would both bind the node's port 10256).
#[test]
fn resources_are_requested_and_updates_roll_one_node_at_a_time() {
    let objects = base_objects();
    let ds = objects.daemon_set();
    let resources = container(ds).resources.as_ref().expect("resources");
    let requests = resources.requests.as_ref().expect("requests");
    assert!(
        requests.contains_key("cpu") && requests.contains_key("memory"),
        "{requests:?}"
    );
    let limits = resources.limits.as_ref().expect("limits");
    assert!(limits.contains_key("memory"), "{limits:?}");
    assert!(
        !limits.contains_key("cpu"),
        "no CPU limit: throttling delays rule syncs"
    );

    let strategy = ds
        .spec
        .as_ref()
        .and_then(|s| s.update_strategy.as_ref())
        .expect("an update strategy");
    assert_eq!(strategy.type_.as_deref(), Some("RollingUpdate"));
    let rolling = strategy.rolling_update.as_ref().expect("rollingUpdate");
    assert_eq!(rolling.max_unavailable, Some(IntOrString::Int(1)));
    assert!(matches!(
        rolling.max_surge,
        None | Some(IntOrString::Int(0))
    ));
}

/// The image the e2e loads into kind (never pulled), the `run` command with the configuration
/// file from the generated ConfigMap, mounted read-only.
#[test]
fn the_container_runs_the_agent_with_the_config_map() {
    let objects = base_objects();
    let ds = objects.daemon_set();
    let c = container(ds);
    assert_eq!(c.image.as_deref(), Some("kube-nftproxy:dev"));
    assert_eq!(c.image_pull_policy.as_deref(), Some("IfNotPresent"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["kube-nftproxy".to_owned()][..])
    );
    let config_file = format!("{CONFIG_DIR}/config.toml");
    assert_eq!(
        c.args.as_deref(),
        Some(&["run".to_owned(), "--config".to_owned(), config_file][..])
    );
    let mount = c
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.mount_path == CONFIG_DIR)
        .expect("a mount at /etc/kube-nftproxy");
    assert_eq!(mount.read_only, Some(true));
    let volume = pod_spec(ds)
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == mount.name)
        .expect("the mounted volume");
    let source = volume.config_map.as_ref().expect("a configMap volume");
    assert_eq!(
        source.name, CONFIG_MAP,
        "the generator's name (kustomize adds the hash)"
    );
    assert!(
        source.items.is_none(),
        "every key: config.toml is the file's name"
    );
}

/// The binary accepts the DaemonSet's command line (`run --config FILE`: checked with `--help`
/// appended, which clap honours only once everything before it parsed), and its `config`
/// command prints the effective configuration of config.toml with the pod's node name.
#[test]
fn the_binary_accepts_the_daemon_sets_command_line() {
    const BIN: &str = env!("CARGO_BIN_EXE_kube-nftproxy");
    let objects = base_objects();
    let args = container(objects.daemon_set())
        .args
        .clone()
        .unwrap_or_default();
    let _guard = process_lock();
    let output = Command::new(BIN)
        .args(&args)
        .arg("--help")
        .env_clear()
        .output()
        .expect("running kube-nftproxy");
    assert!(
        output.status.success(),
        "kube-nftproxy {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    let output = Command::new(BIN)
        .arg("config")
        .arg("--config")
        .arg(config_path())
        .env_clear()
        .env("KUBE_NFTPROXY_NODE_NAME", "kind-worker")
        .output()
        .expect("running kube-nftproxy config");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "kube-nftproxy config: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    for line in [
        "node_name = \"kind-worker\"",
        &format!("api_server = \"https://{KIND_CLUSTER}-control-plane:6443\""),
    ] {
        assert!(stdout.lines().any(|l| l == line), "{line} in:\n{stdout}");
    }
}

/// config.toml loads with the agent's own loader, with the pod's environment: no unknown key,
/// the node name from the environment, the API server named explicitly (the `kubernetes`
/// ClusterIP works only once the agent has programmed it), kind's pod CIDR. The e2e overlay
/// rewrites the api_server and cluster_cidrs lines with sed: each is one line of its own.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
fn the_configuration_loads_as_the_pod_sees_it() {
    let objects = base_objects();
    let ds = objects.daemon_set();
    let text = read(&config_path());
    let config = load_as_the_pod(&text, ds, "kind-worker");
    assert_eq!(
        config.node_name, "kind-worker",
        "from KUBE_NFTPROXY_NODE_NAME"
    );
    assert_eq!(
        config.api_server,
        format!("https://{KIND_CLUSTER}-control-plane:6443")
    );
    assert_eq!(
        config.cluster_cidrs,
        [POD_CIDR_V4.parse::<ipnet::IpNet>().expect("a CIDR")]
    );
    assert_eq!(config.healthz_bind_address, "0.0.0.0:10256");
    let metrics = config
        .metrics_address()
        .expect("metrics address")
        .expect("served");
    assert!(
        metrics.ip().is_loopback(),
        "metrics on the node's loopback only"
    );
    assert!(
        config.kubeconfig.is_empty(),
        "the service account's credentials"
    );

    for key in ["api_server", "cluster_cidrs"] {
        let lines = text
            .lines()
            .filter(|l| l.starts_with(&format!("{key} = ")))
            .count();
        assert_eq!(
            lines, 1,
            "config.toml: one `{key} = …` line (the e2e overlay rewrites it)"
        );
    }
    assert!(
        !text.lines().any(|l| l.starts_with("node_name")),
        "node_name comes from the environment"
    );

    // The loader is strict: a misspelt key is an error, not a default.
    let typo = format!("{text}\napi_servre = \"https://elsewhere:6443\"\n");
    let _guard = process_lock();
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("typo.toml", &typo)?;
        let error = load(Some(Path::new("typo.toml")), &FlagOverrides::default())
            .expect_err("an unknown key");
        assert!(error.to_string().contains("api_servre"), "{error}");
        Ok(())
    });
}

/// One (group, resource, verb) a request or a rule is about.
type Access = (String, String, String);

fn granted(rules: &[PolicyRule]) -> BTreeSet<Access> {
    let mut set = BTreeSet::new();
    for rule in rules {
        assert!(rule.resource_names.is_none(), "no resourceNames: {rule:?}");
        assert!(
            rule.non_resource_urls.is_none(),
            "no nonResourceURLs: {rule:?}"
        );
        for group in rule.api_groups.iter().flatten() {
            for resource in rule.resources.iter().flatten() {
                for verb in &rule.verbs {
                    assert!(
                        ![group, resource, verb].iter().any(|s| s.contains('*')),
                        "no wildcards: {rule:?}"
                    );
                    set.insert((group.clone(), resource.clone(), verb.clone()));
                }
            }
        }
    }
    set
}

fn access(group: &str, resource: &str, verb: &str) -> Access {
    (group.to_owned(), resource.to_owned(), verb.to_owned())
}

/// The ClusterRole: list and watch of Services and EndpointSlices, get, list and watch of
/// Nodes, nothing else (no writes, no Events: the agent emits none); bound to the agent's
/// service account.
#[test]
fn the_cluster_role_grants_reads_of_services_endpoint_slices_and_nodes() {
    let objects = base_objects();
    let role = objects.cluster_role();
    assert_eq!(role.metadata.name.as_deref(), Some(NAME));
    let expected: BTreeSet<Access> = [
        access("", "services", "list"),
        access("", "services", "watch"),
        access("discovery.k8s.io", "endpointslices", "list"),
        access("discovery.k8s.io", "endpointslices", "watch"),
        access("", "nodes", "get"),
        access("", "nodes", "list"),
        access("", "nodes", "watch"),
    ]
    .into_iter()
    .collect();
    assert_eq!(granted(role.rules.as_deref().unwrap_or_default()), expected);
    assert!(role.aggregation_rule.is_none());

    let binding = &objects.cluster_role_bindings[0];
    assert_eq!(binding.role_ref.api_group, "rbac.authorization.k8s.io");
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(
        Some(binding.role_ref.name.as_str()),
        role.metadata.name.as_deref()
    );
    let subjects = binding.subjects.as_deref().expect("subjects");
    match subjects {
        [s] => {
            assert_eq!(s.kind, "ServiceAccount");
            assert_eq!(
                Some(s.name.as_str()),
                objects.service_accounts[0].metadata.name.as_deref()
            );
            assert_eq!(s.namespace.as_deref(), Some(NAMESPACE));
        }
        other => panic!("expected one subject: {other:?}"),
    }
}

/// The access a request URI of the fake API server is: `/api/v1/RESOURCE` and
/// `/apis/GROUP/VERSION/RESOURCE` (list, or watch with `watch=true`), `…/RESOURCE/NAME` (get).
fn access_of(uri: &str) -> Access {
    let (path, query) = uri.split_once('?').unwrap_or((uri, ""));
    let watch = query
        .split('&')
        .any(|pair| pair == "watch=true" || pair == "watch=1");
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("", rest),
        ["apis", group, _version, rest @ ..] => (*group, rest),
        _ => panic!("unexpected request {uri}"),
    };
    let rest = match rest {
        ["namespaces", _, rest @ ..] => rest,
        rest => rest,
    };
    match (rest, watch) {
        ([resource], true) => access(group, resource, "watch"),
        ([resource], false) => access(group, resource, "list"),
        ([resource, _name], false) => access(group, resource, "get"),
        _ => panic!("unexpected request {uri}"),
    }
}

/// What the agent's watchers really request, recorded by the fake API server while
/// `agent::source::kube::run` lists and watches: every request is allowed by the ClusterRole,
/// and the ClusterRole grants nothing unused besides `get` on nodes (kept from kube-proxy's
/// system:node-proxier). The Node is listed and watched with a field selector on its name:
/// that needs `list`, not `get`.
#[tokio::test]
async fn the_cluster_role_allows_every_request_the_agent_makes() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a local port");
    let server = FakeApiServer::start(listener);
    let url: http::Uri = server.url().parse().expect("a URL");
    let client = kube::Client::try_from(kube::Config::new(url)).expect("a client");
    let shared = Arc::new(Shared::new());
    let errors: Arc<Mutex<Vec<(SourceKind, String)>>> = Arc::default();
    let seen = errors.clone();
    let hook: agent::source::ErrorHook = Arc::new(move |kind, message: &str| {
        seen.lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, message.to_owned()));
    });
    let task = tokio::spawn(agent::source::kube::run(
        client,
        "node-a".to_owned(),
        shared.clone(),
        hook,
    ));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(shared.initialized() && server.open_watches() >= 3) {
        assert!(
            Instant::now() < deadline,
            "the agent did not list and watch: {:?}",
            server.requests()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    task.abort();
    server.stop();
    let errors = errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
    assert!(errors.is_empty(), "watch errors: {errors:?}");

    let requests = server.requests();
    let used: BTreeSet<Access> = requests.iter().map(|uri| access_of(uri)).collect();
    let objects = base_objects();
    let allowed = granted(objects.cluster_role().rules.as_deref().unwrap_or_default());
    let denied: Vec<&Access> = used.difference(&allowed).collect();
    assert!(
        denied.is_empty(),
        "requests the ClusterRole does not allow: {denied:?}"
    );
    let unused: Vec<&Access> = allowed.difference(&used).collect();
    assert_eq!(
        unused,
        [&access("", "nodes", "get")],
        "grants the agent does not use"
    );
    assert!(
        requests
            .iter()
            .filter(|uri| uri.starts_with("/api/v1/nodes"))
            .all(|uri| uri.contains("fieldSelector=metadata.name%3Dnode-a")),
        "the Node is selected by name: {requests:?}"
    );
}

fn kind_cluster(file: &str) -> Value {
    let path = repo().join("packaging/kind").join(file);
    match yaml_documents(&read(&path), file).as_slice() {
        [one] => one.clone(),
        other => panic!("{file}: expected one document, found {}", other.len()),
    }
}

/// The kind clusters: v1alpha4, no kube-proxy, one control plane and two workers on one node
/// image pinned by digest, kind's default subnets written out (the configuration's
/// cluster_cidrs and the e2e overlay's dual-stack CIDRs must match podSubnet).
#[test]
fn the_kind_clusters_run_without_kube_proxy() {
    for (file, family, pods, services) in [
        (
            "cluster.yaml",
            "ipv4",
            vec![POD_CIDR_V4],
            vec!["10.96.0.0/16"],
        ),
        (
            "cluster-dual.yaml",
            "dual",
            vec![POD_CIDR_V4, POD_CIDR_V6],
            vec!["10.96.0.0/16", "fd00:10:96::/112"],
        ),
    ] {
        let cluster = kind_cluster(file);
        assert_eq!(cluster["kind"], "Cluster", "{file}");
        assert_eq!(cluster["apiVersion"], "kind.x-k8s.io/v1alpha4", "{file}");
        let net = &cluster["networking"];
        assert_eq!(net["kubeProxyMode"], "none", "{file}");
        assert_eq!(net["ipFamily"], family, "{file}");
        assert_eq!(net["podSubnet"], pods.join(","), "{file}");
        assert_eq!(net["serviceSubnet"], services.join(","), "{file}");
        assert!(
            cluster.get("name").is_none(),
            "{file}: the name comes from $KIND_CLUSTER"
        );
        let nodes = cluster["nodes"].as_array().expect("nodes");
        let roles: Vec<&str> = nodes
            .iter()
            .map(|n| n["role"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(roles, ["control-plane", "worker", "worker"], "{file}");
        let images: BTreeSet<&str> = nodes
            .iter()
            .map(|n| n["image"].as_str().unwrap_or(""))
            .collect();
        assert_eq!(images.len(), 1, "{file}: one node image");
        let image = images.iter().next().copied().unwrap_or_default();
        assert!(
            image.starts_with("kindest/node:v1.33.") && image.contains("@sha256:"),
            "{file}: a v1.33 node image pinned by digest (k8s-openapi's v1_33): {image}"
        );
    }
    let lib = read(&repo().join("tests/e2e/lib.sh"));
    for line in [
        format!("POD_CIDR_V4=\"{POD_CIDR_V4}\""),
        format!("POD_CIDR_V6=\"{POD_CIDR_V6}\""),
        format!("KIND_CLUSTER=${{KIND_CLUSTER:-{KIND_CLUSTER}}}"),
    ] {
        assert!(lib.lines().any(|l| l == line), "tests/e2e/lib.sh: {line}");
    }
}

/// `kustomize build packaging/kubernetes`: the same objects, plus the ConfigMap holding
/// config.toml verbatim under the hashed name the DaemonSet now mounts.
#[test]
fn kustomize_builds_the_base() {
    let Some(built) = kustomize_build(&base_dir()) else {
        eprintln!("neither kubectl nor kustomize is installed: kustomize build not checked");
        return;
    };
    let objects = Objects::from_documents(&yaml_documents(&built, "kustomize build"), "built");
    let ds = objects.daemon_set();
    let cm = match objects.config_maps.as_slice() {
        [one] => one,
        other => panic!("expected one ConfigMap, found {}", other.len()),
    };
    let name = cm.metadata.name.as_deref().expect("a name");
    assert!(
        name.starts_with(&format!("{CONFIG_MAP}-")),
        "{name}: hashed"
    );
    assert_eq!(cm.metadata.namespace.as_deref(), Some(NAMESPACE));
    let data = cm.data.as_ref().expect("data");
    assert_eq!(data.keys().collect::<Vec<_>>(), ["config.toml"]);
    assert_eq!(data["config.toml"], read(&config_path()));
    let mounted: Vec<&str> = pod_spec(ds)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.config_map.as_ref().map(|c| c.name.as_str()))
        .collect();
    assert_eq!(mounted, [name]);
    assert_eq!(objects.service_accounts.len(), 1);
    assert_eq!(objects.cluster_role_bindings.len(), 1);
}

/// The overlay `just e2e-up` applies (tests/e2e/lib.sh `write_overlay`, here for a dual-stack
/// cluster and an image of another registry): its config.toml points at that cluster's
/// control plane with both pod CIDRs and loads with the agent's loader; built with kustomize
/// (when installed), the DaemonSet mounts the replaced ConfigMap and runs that image.
#[test]
fn the_e2e_overlay_points_the_agent_at_the_kind_control_plane() {
    let cluster = format!("knp-manifests-{}", std::process::id());
    let image = "localhost:5000/kube-nftproxy:e2e-test";
    /// Deletes the overlay's work directory, also when an assertion fails.
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let workdir = repo().join("target/e2e").join(&cluster);
    let _cleanup = Cleanup(workdir.clone());
    let overlay = {
        let _guard = process_lock();
        let output = Command::new("bash")
            .arg("-c")
            .arg("set -euo pipefail; source tests/e2e/lib.sh; write_overlay")
            .current_dir(repo())
            .env("KIND_CLUSTER", &cluster)
            .env("E2E_IP_FAMILY", "dual")
            .env("E2E_IMAGE", image)
            .env("CONTAINER_ENGINE", "docker")
            .output()
            .expect("running bash");
        assert!(
            output.status.success(),
            "write_overlay: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        PathBuf::from(String::from_utf8(output.stdout).expect("UTF-8").trim())
    };
    assert_eq!(
        overlay.canonicalize().expect("the overlay"),
        workdir
            .join("overlay")
            .canonicalize()
            .expect("the work directory")
    );

    let objects = base_objects();
    let text = read(&overlay.join("config.toml"));
    let config = load_as_the_pod(&text, objects.daemon_set(), "w");
    assert_eq!(
        config.api_server,
        format!("https://{cluster}-control-plane:6443")
    );
    let cidrs: Vec<String> = config.cluster_cidrs.iter().map(|c| c.to_string()).collect();
    assert_eq!(cidrs, [POD_CIDR_V4, POD_CIDR_V6]);

    let Some(built) = kustomize_build(&overlay) else {
        eprintln!("neither kubectl nor kustomize is installed: the overlay's build not checked");
        return;
    };
    let objects = Objects::from_documents(&yaml_documents(&built, "overlay"), "overlay");
    let cm = match objects.config_maps.as_slice() {
        [one] => one,
        other => panic!("expected one ConfigMap, found {}", other.len()),
    };
    let data = cm.data.as_ref().expect("data");
    assert_eq!(
        data.get("config.toml"),
        Some(&text),
        "the overlay's config.toml"
    );
    let ds = objects.daemon_set();
    let mounted: Vec<&str> = pod_spec(ds)
        .volumes
        .iter()
        .flatten()
        .filter_map(|v| v.config_map.as_ref().map(|c| c.name.as_str()))
        .collect();
    assert_eq!(mounted, [cm.metadata.name.as_deref().expect("a name")]);
    assert_eq!(container(ds).image.as_deref(), Some(image));
}

/// The e2e scripts parse, and pass shellcheck when it is installed.
#[test]
fn the_e2e_scripts_parse() {
    let dir = repo().join("tests/e2e");
    let mut scripts = Vec::new();
    for sub in [dir.clone(), dir.join("scenarios")] {
        for entry in std::fs::read_dir(&sub).expect("tests/e2e") {
            let path = entry.expect("an entry").path();
            if path.extension().is_some_and(|e| e == "sh") {
                scripts.push(path);
            }
        }
    }
    scripts.sort();
    assert!(scripts.len() >= 9, "{scripts:?}");
    let _guard = process_lock();
    for script in &scripts {
        let status = Command::new("bash")
            .arg("-n")
            .arg(script)
            .status()
            .expect("bash");
        assert!(status.success(), "bash -n {}", script.display());
    }
    let relative: Vec<PathBuf> = scripts
        .iter()
        .map(|s| s.strip_prefix(repo()).unwrap_or(s).to_owned())
        .collect();
    match Command::new("shellcheck")
        .arg("-x")
        .args(&relative)
        .current_dir(repo())
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "shellcheck:\n{}",
            String::from_utf8_lossy(&output.stdout)
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!("shellcheck is not installed: the e2e scripts were only parsed");
        }
        Err(e) => panic!("running shellcheck: {e}"),
    }
}
