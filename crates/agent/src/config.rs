//! The agent's configuration: built-in defaults < kube-proxy's configuration file (when
//! `kube_proxy_config` names one) < config file < `KUBE_NFTPROXY_*` environment < command-line
//! flags (figment). Unknown keys and bad values are errors that name the key and where its value
//! came from; [`Loaded::origins`] says where every effective value came from.

use crate::kube_proxy_config::{self, KubeProxyConfig, KubeProxyConfigError, ProxyMode};
use figment::providers::{Env, Format, Toml};
use figment::value::{Dict, Map as FigmentMap};
use figment::{Figment, Metadata, Profile, Provider};
use ipnet::IpNet;
use model::{NodeConfig, NodePortAddresses};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The config file read when `--config` is not given (skipped when absent).
pub const DEFAULT_CONFIG_PATH: &str = "/etc/kube-nftproxy/config.toml";
/// The prefix of configuration environment variables.
pub const ENV_PREFIX: &str = "KUBE_NFTPROXY_";

/// The name of the built-in defaults' layer (figment metadata).
const DEFAULTS_LAYER: &str = "built-in defaults";
/// The name of the kube-proxy configuration's layer.
const KUBE_PROXY_LAYER: &str = "kube-proxy configuration";
/// The name of the command-line flags' layer.
const FLAGS_LAYER: &str = "command-line flags";

/// Every configuration key, with its default. `config/kube-nftproxy.toml` documents each one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// This node's name (as EndpointSlices' `nodeName`); empty means the host name.
    pub node_name: String,
    /// This node's addresses, primary first per family; empty means from the Node object.
    pub node_ips: Vec<IpAddr>,
    /// The cluster's pod CIDRs (one per family), to tell pod traffic from other traffic.
    pub cluster_cidrs: Vec<IpNet>,
    /// How pod traffic is told apart: by `cluster_cidrs` (`ClusterCIDR`) or by this Node's
    /// `spec.podCIDRs` (`NodeCIDR`), as kube-proxy's `detectLocalMode`.
    pub detect_local_mode: DetectLocalMode,
    /// Which node addresses accept NodePorts: `["primary"]`, or CIDRs.
    pub node_port_addresses: Vec<String>,
    /// Masquerade all ClusterIP traffic.
    pub masquerade_all: bool,
    /// The packet-mark bit that asks for masquerade (0-31).
    pub masquerade_bit: u8,
    /// How rules reach the kernel: `netlink` (libnftnl, one batch) or `nft` (`nft -f`).
    pub backend: BackendKind,
    /// Seconds between a change and the sync that programs it, at least (0: at once).
    pub min_sync_period_seconds: f64,
    /// Seconds before a failed sync is retried; `/healthz` fails when a change has waited for
    /// twice this.
    pub sync_period_seconds: f64,
    /// Seconds between full syncs (the kernel's tables read back and diffed).
    pub full_sync_period_seconds: f64,
    /// Where `/healthz` and `/livez` listen (`0.0.0.0`: both families, see
    /// [`crate::listen::bind_tcp`]).
    pub healthz_bind_address: String,
    /// Where `/metrics` and `/debug/services` listen; empty: nowhere.
    pub metrics_bind_address: String,
    /// A kubeconfig file for the API server; empty: the kubeconfig `$KUBECONFIG` or
    /// `~/.kube/config` names, else the in-cluster environment.
    pub kubeconfig: String,
    /// The API server's URL, overriding the kubeconfig's and the in-cluster one.
    pub api_server: String,
    /// Delete the conntrack entries of UDP flows whose endpoint went away.
    pub conntrack_cleanup: bool,
    /// kube-proxy's configuration file (`KubeProxyConfiguration`) to take settings from, below
    /// this configuration; empty: none.
    pub kube_proxy_config: String,
}

/// How pod traffic is told apart from other traffic (kube-proxy's `detectLocalMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DetectLocalMode {
    /// Sources inside `cluster_cidrs`.
    #[serde(rename = "ClusterCIDR")]
    ClusterCidr,
    /// Sources inside this Node's `spec.podCIDRs`.
    #[serde(rename = "NodeCIDR")]
    NodeCidr,
}

/// How often the agent syncs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncPeriods {
    /// At least this long between two syncs.
    pub min: std::time::Duration,
    /// A failed sync is retried after this; a change pending for twice this fails `/healthz`.
    pub retry: std::time::Duration,
    /// A full sync (read back from the kernel) at least this often.
    pub full: std::time::Duration,
}

/// The kernel backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Netlink batches built with libnftnl (the default).
    Netlink,
    /// The `nft` program (`nft -f -`), for debugging and cross-checks.
    Nft,
}

impl BackendKind {
    /// An instance of the backend.
    pub fn backend(self) -> Box<dyn nft::Backend> {
        match self {
            BackendKind::Netlink => Box::new(nft::Netlink),
            BackendKind::Nft => Box::new(nft::NftCommand::default()),
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            node_name: String::new(),
            node_ips: Vec::new(),
            cluster_cidrs: Vec::new(),
            detect_local_mode: DetectLocalMode::ClusterCidr,
            node_port_addresses: vec!["primary".into()],
            masquerade_all: false,
            masquerade_bit: 14,
            backend: BackendKind::Netlink,
            min_sync_period_seconds: 1.0,
            sync_period_seconds: 30.0,
            full_sync_period_seconds: 3600.0,
            healthz_bind_address: "0.0.0.0:10256".into(),
            metrics_bind_address: "127.0.0.1:10249".into(),
            kubeconfig: String::new(),
            api_server: String::new(),
            conntrack_cleanup: true,
            kube_proxy_config: String::new(),
        }
    }
}

/// figment's message without the name of its profile in keys (`for key "default.node_nmae"`
/// names the key `node_nmae`): the configuration has no profiles, so it would only confuse.
fn without_profile(error: &figment::Error) -> String {
    error.to_string().replace(
        &format!("for key \"{}.", figment::Profile::Default),
        "for key \"",
    )
}

/// A configuration error: which key, what is wrong, where the value came from.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Reading or decoding failed (figment's message names the key and the source).
    #[error("configuration: {}", without_profile(.0))]
    Load(#[from] Box<figment::Error>),
    /// A value decoded but is not acceptable.
    #[error("configuration key {key}: {reason}")]
    Invalid {
        /// The key.
        key: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// kube-proxy's configuration file cannot be read.
    #[error(transparent)]
    KubeProxy(#[from] KubeProxyConfigError),
    /// kube-proxy's configuration asks for what kube-nftproxy cannot do, changing where packets
    /// go.
    #[error(
        "kube-proxy configuration {}: fields that would change where packets go and that \
         kube-nftproxy cannot honour:{}",
        path.display(),
        fields.iter().map(|f| format!("\n  - {f}")).collect::<String>()
    )]
    KubeProxyUnsupported {
        /// The file.
        path: PathBuf,
        /// Each field and why.
        fields: Vec<String>,
    },
}

/// Values given as command-line flags (highest precedence).
#[derive(Debug, Clone, Default, Serialize)]
pub struct FlagOverrides {
    /// `--node` (`--hostname-override`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_name: Option<String>,
    /// `--kubeconfig`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kubeconfig: Option<String>,
    /// `--kube-proxy-config`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kube_proxy_config: Option<String>,
    /// `--cluster-cidr` (comma-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster_cidrs: Option<Vec<String>>,
    /// `--detect-local-mode`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detect_local_mode: Option<String>,
    /// `--nodeport-addresses` (comma-separated).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_port_addresses: Option<Vec<String>>,
    /// `--masquerade-all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub masquerade_all: Option<bool>,
    /// `--healthz-bind-address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub healthz_bind_address: Option<String>,
    /// `--metrics-bind-address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics_bind_address: Option<String>,
}

/// The flag that sets `key` (for [`Loaded::origins`]).
fn flag_of(key: &str) -> &'static str {
    match key {
        "node_name" => "--node (--hostname-override)",
        "kubeconfig" => "--kubeconfig",
        "kube_proxy_config" => "--kube-proxy-config",
        "cluster_cidrs" => "--cluster-cidr",
        "detect_local_mode" => "--detect-local-mode",
        "node_port_addresses" => "--nodeport-addresses",
        "masquerade_all" => "--masquerade-all",
        "healthz_bind_address" => "--healthz-bind-address",
        "metrics_bind_address" => "--metrics-bind-address",
        _ => "a command-line flag",
    }
}

/// One layer of the configuration: values under our keys, with a name (and a file) that
/// figment reports in errors and [`Loaded::origins`] shows.
struct Layer {
    name: &'static str,
    file: Option<PathBuf>,
    values: serde_json::Value,
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let metadata = Metadata::named(self.name);
        match &self.file {
            Some(path) => metadata.source(path.as_path()),
            None => metadata,
        }
    }

    fn data(&self) -> Result<FigmentMap<Profile, Dict>, figment::Error> {
        let value = figment::value::Value::serialize(&self.values)?;
        let dict = value
            .into_dict()
            .ok_or_else(|| figment::Error::from(format!("{}: not a dictionary", self.name)))?;
        Ok(Profile::Default.collect(dict))
    }
}

/// The effective configuration, where each value came from, and what happened to kube-proxy's
/// configuration when one was read.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// The configuration.
    pub config: Config,
    /// Every key's origin: `default`, `from FILE`, `from KUBE_NFTPROXY_KEY`, `from --flag`,
    /// `from FIELD in KUBE-PROXY-FILE`.
    pub origins: BTreeMap<String, String>,
    /// kube-proxy's configuration, mapped, when `kube_proxy_config` names one.
    pub kube_proxy: Option<KubeProxyConfig>,
    /// kube-proxy fields whose key our own configuration sets (ours wins), one line each.
    pub overridden: Vec<String>,
}

impl Loaded {
    /// Logs, once, what became of kube-proxy's configuration: each ignored field with the
    /// reason, each field overridden by our configuration.
    pub fn log(&self) {
        let Some(kube_proxy) = &self.kube_proxy else {
            return;
        };
        let path = kube_proxy.path.display().to_string();
        tracing::info!(
            path,
            mode = %kube_proxy.mode,
            honoured = kube_proxy.mapped.len(),
            ignored = kube_proxy.ignored.len(),
            "read kube-proxy's configuration"
        );
        for ignored in &kube_proxy.ignored {
            tracing::warn!(path, "kube-proxy configuration: ignored {ignored}");
        }
        for line in &self.overridden {
            tracing::info!(path, "kube-proxy configuration: {line}");
        }
        if kube_proxy.mode != ProxyMode::Nftables {
            tracing::info!(
                mode = %kube_proxy.mode,
                "kube-proxy in {} mode leaves its rules behind: `kube-nftproxy cleanup --kube-proxy` removes them",
                kube_proxy.mode
            );
        }
    }
}

/// Loads the configuration from defaults, kube-proxy's configuration (when `kube_proxy_config`
/// names one), `file` (or the default path when it exists), the environment and the flags, and
/// logs what became of kube-proxy's configuration ([`Loaded::log`]).
pub fn load(file: Option<&Path>, flags: &FlagOverrides) -> Result<Config, ConfigError> {
    let loaded = load_with_origins(file, flags)?;
    loaded.log();
    Ok(loaded.config)
}

/// [`load`], without logging, also returning where each value came from.
pub fn load_with_origins(
    file: Option<&Path>,
    flags: &FlagOverrides,
) -> Result<Loaded, ConfigError> {
    let defaults = Layer {
        name: DEFAULTS_LAYER,
        file: None,
        values: to_json(&Config::default()),
    };
    let file = match file {
        Some(path) => Some(path.to_owned()),
        None if Path::new(DEFAULT_CONFIG_PATH).exists() => Some(PathBuf::from(DEFAULT_CONFIG_PATH)),
        None => None,
    };
    let ours = |figment: Figment| {
        let figment = match &file {
            Some(path) => figment.merge(Toml::file_exact(path)),
            None => figment,
        };
        figment.merge(Env::prefixed(ENV_PREFIX)).merge(Layer {
            name: FLAGS_LAYER,
            file: None,
            values: to_json(flags),
        })
    };
    // Which kube-proxy file (if any): a key of our own layers.
    let kube_proxy_path = ours(Figment::new())
        .find_value("kube_proxy_config")
        .ok()
        .and_then(|v| v.into_string())
        .filter(|p| !p.is_empty());
    let kube_proxy = match kube_proxy_path {
        Some(path) => Some(kube_proxy_config::read(Path::new(&path))?),
        None => None,
    };
    let mut figment = Figment::from(defaults);
    if let Some(kp) = &kube_proxy {
        figment = figment.merge(Layer {
            name: KUBE_PROXY_LAYER,
            file: Some(kp.path.clone()),
            values: serde_json::Value::Object(kp.values()),
        });
    }
    let figment = ours(figment);
    let config: Config = figment.extract().map_err(Box::new)?;
    let keys = to_json(&config);
    let origins: BTreeMap<String, String> = keys
        .as_object()
        .map(|o| o.keys().cloned().collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .map(|key| {
            let origin = origin(&figment, &key, kube_proxy.as_ref());
            (key, origin)
        })
        .collect();
    if let Err(error) = config.validate() {
        return Err(match error {
            ConfigError::Invalid { key, reason } => {
                let from = origins.get(key).cloned().unwrap_or_default();
                ConfigError::Invalid {
                    key,
                    reason: format!("{reason} ({from})"),
                }
            }
            other => other,
        });
    }
    let mut overridden = Vec::new();
    if let Some(kp) = &kube_proxy {
        let layer_of = |key: &str| figment.find_metadata(key).map(|m| m.name.to_string());
        let ours_set = |key: &str| {
            layer_of(key).is_some_and(|name| name != DEFAULTS_LAYER && name != KUBE_PROXY_LAYER)
        };
        let mut errors = Vec::new();
        for unsupported in &kp.unsupported {
            match unsupported.unless.filter(|key| ours_set(key)) {
                Some(key) => overridden.push(format!(
                    "{} is not honoured, but {key} is set ({}) and replaces it",
                    unsupported.field,
                    origins.get(key).cloned().unwrap_or_default()
                )),
                None => errors.push(unsupported.to_string()),
            }
        }
        if !errors.is_empty() {
            return Err(ConfigError::KubeProxyUnsupported {
                path: kp.path.clone(),
                fields: errors,
            });
        }
        for mapped in &kp.mapped {
            if ours_set(mapped.key) {
                overridden.push(format!(
                    "{} ({}) is overridden by {} ({})",
                    mapped.field,
                    mapped.value,
                    mapped.key,
                    origins.get(mapped.key).cloned().unwrap_or_default()
                ));
            }
        }
    }
    Ok(Loaded {
        config,
        origins,
        kube_proxy,
        overridden,
    })
}

/// A layer's values as JSON (plain data: this cannot fail).
fn to_json<T: Serialize>(value: &T) -> serde_json::Value {
    serde_json::to_value(value).unwrap_or_default()
}

/// Where `key`'s effective value came from.
fn origin(figment: &Figment, key: &str, kube_proxy: Option<&KubeProxyConfig>) -> String {
    let Some(metadata) = figment.find_metadata(key) else {
        return "default".into();
    };
    match metadata.name.as_ref() {
        DEFAULTS_LAYER => "default".into(),
        FLAGS_LAYER => format!("from {}", flag_of(key)),
        KUBE_PROXY_LAYER => match kube_proxy {
            Some(kp) => format!(
                "from {} in {}",
                kp.field_of(key).unwrap_or("kube-proxy's configuration"),
                kp.path.display()
            ),
            None => "from kube-proxy's configuration".into(),
        },
        name if name.contains("environment") => {
            format!("from {ENV_PREFIX}{}", key.to_ascii_uppercase())
        }
        name => match metadata.source.as_ref().and_then(|s| s.file_path()) {
            Some(path) => format!("from {}", path.display()),
            None => format!("from {name}"),
        },
    }
}

impl Config {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.masquerade_bit > 31 {
            return Err(ConfigError::Invalid {
                key: "masquerade_bit",
                reason: format!(
                    "{} is not a bit of a 32-bit mark (0-31)",
                    self.masquerade_bit
                ),
            });
        }
        self.node_port_addresses()?;
        for (key, value, min) in [
            ("min_sync_period_seconds", self.min_sync_period_seconds, 0.0),
            ("sync_period_seconds", self.sync_period_seconds, 0.1),
            (
                "full_sync_period_seconds",
                self.full_sync_period_seconds,
                1.0,
            ),
        ] {
            if !(value.is_finite() && value >= min) {
                return Err(ConfigError::Invalid {
                    key,
                    reason: format!("{value} is not a number of seconds of at least {min}"),
                });
            }
        }
        self.healthz_address()?;
        self.metrics_address()?;
        let url_ok =
            self.api_server.starts_with("https://") || self.api_server.starts_with("http://");
        if !(self.api_server.is_empty() || url_ok) {
            return Err(ConfigError::Invalid {
                key: "api_server",
                reason: format!("{:?} is not an http:// or https:// URL", self.api_server),
            });
        }
        Ok(())
    }

    /// `healthz_bind_address` as a socket address.
    pub fn healthz_address(&self) -> Result<std::net::SocketAddr, ConfigError> {
        self.healthz_bind_address
            .parse()
            .map_err(|_| ConfigError::Invalid {
                key: "healthz_bind_address",
                reason: format!("{:?} is not an address:port", self.healthz_bind_address),
            })
    }

    /// `metrics_bind_address` as a socket address (None: metrics are not served).
    pub fn metrics_address(&self) -> Result<Option<std::net::SocketAddr>, ConfigError> {
        if self.metrics_bind_address.is_empty() {
            return Ok(None);
        }
        self.metrics_bind_address
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::Invalid {
                key: "metrics_bind_address",
                reason: format!("{:?} is not an address:port", self.metrics_bind_address),
            })
    }

    /// The minimum, retry and full sync periods.
    pub fn sync_periods(&self) -> SyncPeriods {
        let secs = std::time::Duration::from_secs_f64;
        SyncPeriods {
            min: secs(self.min_sync_period_seconds),
            retry: secs(self.sync_period_seconds),
            full: secs(self.full_sync_period_seconds),
        }
    }

    /// `node_port_addresses` as the model takes it.
    pub fn node_port_addresses(&self) -> Result<NodePortAddresses, ConfigError> {
        let entries = &self.node_port_addresses;
        if entries.is_empty() || entries.iter().any(|e| e == "primary") {
            if entries.len() > 1 {
                return Err(ConfigError::Invalid {
                    key: "node_port_addresses",
                    reason: "\"primary\" cannot be combined with CIDRs".into(),
                });
            }
            return Ok(NodePortAddresses::Primary);
        }
        let mut cidrs = Vec::new();
        for e in entries {
            let net = e.parse::<IpNet>().map_err(|_| ConfigError::Invalid {
                key: "node_port_addresses",
                reason: format!("{e:?} is neither \"primary\" nor a CIDR"),
            })?;
            cidrs.push(net);
        }
        Ok(NodePortAddresses::Cidrs(cidrs))
    }

    /// The node name: configured, else the host name.
    pub fn effective_node_name(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_lowercase())
            .unwrap_or_default()
    }

    /// The part of the configuration the model needs.
    pub fn node_config(&self) -> Result<NodeConfig, ConfigError> {
        Ok(NodeConfig {
            node_name: self.effective_node_name(),
            node_ips: self.node_ips.clone(),
            cluster_cidrs: self.cluster_cidrs.clone(),
            pod_cidrs_from_node: self.detect_local_mode == DetectLocalMode::NodeCidr,
            node_port_addresses: self.node_port_addresses()?,
            masquerade_all: self.masquerade_all,
        })
    }

    /// The part of the configuration the ruleset needs.
    pub fn ruleset_options(&self) -> ruleset::Options {
        ruleset::Options {
            masquerade_bit: self.masquerade_bit,
            ..ruleset::Options::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // figment's Jail closures return figment::Error
mod tests {
    use super::*;
    use figment::Jail;

    #[test]
    fn precedence_defaults_file_env_flags() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "node_name = \"from-file\"\nmasquerade_bit = 3\n")?;
            let c = load(Some(Path::new("c.toml")), &FlagOverrides::default()).expect("load");
            assert_eq!((c.node_name.as_str(), c.masquerade_bit), ("from-file", 3));
            assert!(!c.masquerade_all, "default kept");
            jail.set_env("KUBE_NFTPROXY_NODE_NAME", "from-env");
            let c = load(Some(Path::new("c.toml")), &FlagOverrides::default()).expect("load");
            assert_eq!(c.node_name, "from-env");
            let flags = FlagOverrides {
                node_name: Some("from-flag".into()),
                kubeconfig: Some("/from/flag".into()),
                ..FlagOverrides::default()
            };
            let c = load(Some(Path::new("c.toml")), &flags).expect("load");
            assert_eq!(c.node_name, "from-flag");
            assert_eq!(c.kubeconfig, "/from/flag");
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_named_with_its_source() {
        Jail::expect_with(|jail| {
            jail.create_file("c.toml", "node_nmae = \"typo\"\n")?;
            let err = load(Some(Path::new("c.toml")), &FlagOverrides::default())
                .expect_err("unknown key");
            let msg = err.to_string();
            assert!(msg.contains("for key \"node_nmae\""), "{msg}");
            assert!(msg.contains("c.toml"), "{msg}");
            Ok(())
        });
    }

    #[test]
    fn bad_values_name_the_key() {
        Jail::expect_with(|jail| {
            jail.create_file("a.toml", "cluster_cidrs = [\"10.0.0.0/33\"]\n")?;
            let msg = load(Some(Path::new("a.toml")), &FlagOverrides::default())
                .expect_err("bad cidr")
                .to_string();
            assert!(msg.contains("cluster_cidrs"), "{msg}");
            jail.create_file(
                "b.toml",
                "node_port_addresses = [\"primary\", \"10.0.0.0/8\"]\n",
            )?;
            let msg = load(Some(Path::new("b.toml")), &FlagOverrides::default())
                .expect_err("primary and cidr")
                .to_string();
            assert!(msg.contains("node_port_addresses"), "{msg}");
            jail.create_file("m.toml", "masquerade_bit = 40\n")?;
            let msg = load(Some(Path::new("m.toml")), &FlagOverrides::default())
                .expect_err("bit")
                .to_string();
            assert!(msg.contains("masquerade_bit"), "{msg}");
            jail.create_file("k.toml", "backend = \"iptables\"\n")?;
            let msg = load(Some(Path::new("k.toml")), &FlagOverrides::default())
                .expect_err("backend")
                .to_string();
            assert!(msg.contains("backend") && msg.contains("iptables"), "{msg}");
            jail.set_env("KUBE_NFTPROXY_BACKEND", "nft");
            let config = load(None, &FlagOverrides::default()).expect("backend from env");
            assert_eq!(config.backend, BackendKind::Nft);
            Ok(())
        });
    }

    #[test]
    fn documented_default_file_holds_every_key_with_its_default() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config/kube-nftproxy.toml");
        let text = std::fs::read_to_string(&path).expect("config/kube-nftproxy.toml");
        let from_file: Config = figment::Figment::from(Toml::string(&text))
            .extract()
            .expect("documented config parses");
        assert_eq!(from_file, Config::default());
        let defaults = serde_json::to_value(Config::default()).expect("json");
        for key in defaults.as_object().expect("object").keys() {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{key} = "))),
                "config/kube-nftproxy.toml does not document {key}"
            );
        }
    }

    #[test]
    fn cidrs_for_node_ports() {
        let c = Config {
            node_port_addresses: vec!["10.0.0.0/8".into(), "fd00::/64".into()],
            ..Config::default()
        };
        assert!(matches!(c.node_port_addresses(), Ok(NodePortAddresses::Cidrs(v)) if v.len() == 2));
    }
}
