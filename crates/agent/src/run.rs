//! `kube-nftproxy run`, `cleanup` and `config`: program this node's rules (once from manifests,
//! or continuously from the API server or a manifest path), remove them (or kube-proxy's),
//! show the effective configuration and where each value came from.

use crate::cleanup_kube_proxy;
use crate::config::{self, Config, FlagOverrides, Loaded};
use crate::daemon::{self, Source};
use crate::kube_proxy_config::append_port;
use crate::manifests;
use crate::sync::{cleanup, sync_once, STAGE_SERVICES};
use anyhow::{bail, Context, Result};
use clap::Args;
use model::{node_view, NodeServices};
use std::io::Write;
use std::path::{Path, PathBuf};

/// kube-proxy's configuration file, and kube-proxy's most used flags, accepted as aliases of
/// our keys (flags override every other source).
#[derive(Debug, Default, Args)]
pub struct KubeProxyArgs {
    /// kube-proxy's configuration file (a `KubeProxyConfiguration`, YAML or JSON, as
    /// kube-proxy's ConfigMap holds it, or that ConfigMap): its settings apply below
    /// kube-nftproxy's own configuration. The key `kube_proxy_config`.
    #[arg(long, value_name = "FILE")]
    kube_proxy_config: Option<PathBuf>,
    /// The kubeconfig file to reach the API server (`kubeconfig`).
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// As kube-proxy's: the cluster's pod CIDRs, comma-separated (`cluster_cidrs`).
    #[arg(long, value_name = "CIDRS", value_delimiter = ',')]
    cluster_cidr: Option<Vec<String>>,
    /// As kube-proxy's: ClusterCIDR or NodeCIDR (`detect_local_mode`).
    #[arg(long, value_name = "MODE", value_parser = detect_local_mode)]
    detect_local_mode: Option<String>,
    /// As kube-proxy's: `primary`, or CIDRs (and `all`), comma-separated
    /// (`node_port_addresses`).
    #[arg(long, value_name = "ADDRESSES", value_delimiter = ',')]
    nodeport_addresses: Option<Vec<String>>,
    /// As kube-proxy's: masquerade all ClusterIP traffic (`masquerade_all`);
    /// `--masquerade-all=false` turns it off.
    #[arg(long, value_name = "BOOL", num_args = 0..=1, require_equals = true,
          default_missing_value = "true")]
    masquerade_all: Option<bool>,
    /// As kube-proxy's: where /healthz listens, IP[:PORT] (`healthz_bind_address`).
    #[arg(long, value_name = "ADDRESS")]
    healthz_bind_address: Option<String>,
    /// As kube-proxy's: where /metrics listens, IP[:PORT] (`metrics_bind_address`).
    #[arg(long, value_name = "ADDRESS")]
    metrics_bind_address: Option<String>,
}

/// `--detect-local-mode`: the modes we implement; the others are refused with the reason.
fn detect_local_mode(value: &str) -> Result<String, String> {
    match value {
        "ClusterCIDR" | "NodeCIDR" => Ok(value.to_owned()),
        "BridgeInterface" | "InterfaceNamePrefix" => Err(format!(
            "{value}: telling pod traffic by the interface it arrives on is not implemented \
             (ClusterCIDR or NodeCIDR)"
        )),
        _ => Err("expected ClusterCIDR or NodeCIDR".to_owned()),
    }
}

impl KubeProxyArgs {
    /// The flags as configuration values (`node` is `--node`/`--hostname-override`).
    fn overrides(&self, node: Option<&str>) -> Result<FlagOverrides> {
        let path = |p: &Option<PathBuf>| p.as_ref().map(|p| p.to_string_lossy().into_owned());
        let node_port_addresses = match &self.nodeport_addresses {
            None => None,
            Some(entries) => {
                let mut out = Vec::new();
                for entry in entries.iter().map(|e| e.trim()) {
                    match entry {
                        "all" => out.extend(["0.0.0.0/0".to_owned(), "::/0".to_owned()]),
                        "localhost" => bail!(
                            "--nodeport-addresses localhost: NodePorts are never served on \
                             loopback addresses"
                        ),
                        other => out.push(other.to_owned()),
                    }
                }
                Some(out)
            }
        };
        Ok(FlagOverrides {
            node_name: node.map(str::to_owned),
            kubeconfig: path(&self.kubeconfig),
            kube_proxy_config: path(&self.kube_proxy_config),
            cluster_cidrs: self.cluster_cidr.clone(),
            detect_local_mode: self.detect_local_mode.clone(),
            node_port_addresses,
            masquerade_all: self.masquerade_all,
            healthz_bind_address: self
                .healthz_bind_address
                .as_deref()
                .map(|a| append_port(a, 10256)),
            metrics_bind_address: self
                .metrics_bind_address
                .as_deref()
                .map(|a| append_port(a, 10249)),
        })
    }
}

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read Services, EndpointSlices and Nodes from this manifest file or directory (read again
    /// when it changes) instead of the API server.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// This node's name (overrides `node_name` from the configuration).
    #[arg(long, visible_alias = "hostname-override")]
    node: Option<String>,
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    #[command(flatten)]
    kube_proxy: KubeProxyArgs,
    /// Sync once from `--manifests`, print a one-line summary, and exit.
    #[arg(long, requires = "manifests")]
    once: bool,
}

/// Arguments of `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's name (overrides `node_name` from the configuration).
    #[arg(long, visible_alias = "hostname-override")]
    node: Option<String>,
    #[command(flatten)]
    kube_proxy: KubeProxyArgs,
    /// After each key, a comment saying where its value came from (default, a file, an
    /// environment variable, a flag, or a field of kube-proxy's configuration).
    #[arg(long)]
    show_origin: bool,
}

/// Arguments of `cleanup`.
#[derive(Debug, Args)]
pub struct CleanupArgs {
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Remove what kube-proxy left in the kernel (every mode: the `ip`/`ip6` `kube-proxy`
    /// nftables tables; the `KUBE-*` iptables chains and the rules jumping to them in nat,
    /// filter and mangle, through iptables-nft and iptables-legacy; the `kube-ipvs0` interface
    /// and its IPVS virtual servers) instead of kube-nftproxy's tables.
    #[arg(long)]
    kube_proxy: bool,
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to standard output")
}

/// Loads the configuration, logs what became of kube-proxy's (once).
fn load(config: Option<&Path>, flags: &FlagOverrides) -> Result<Loaded> {
    let loaded = config::load_with_origins(config, flags)?;
    loaded.log();
    Ok(loaded)
}

/// The node's view computed from manifests, with the configuration already loaded (`run
/// --once`); every problem in the input is logged as a warning naming the object.
///
/// Each object goes into the cluster view as soon as it is parsed ([`manifests::ViewSink`]):
/// the parsed Kubernetes objects never all exist at once, only the view's share of them.
fn compute(manifests_path: &Path, config: &Config) -> Result<NodeServices> {
    let node_config = config.node_config()?;
    let mut sink = manifests::ViewSink::new(&node_config.node_name, |problem| {
        tracing::warn!(%problem, "skipped a manifest document");
    });
    manifests::load_path_into(manifests_path, &mut sink)
        .with_context(|| format!("loading manifests from {}", manifests_path.display()))?;
    let view = sink.into_view();
    if view.node().is_none() {
        tracing::warn!(node = %node_config.node_name, "no Node object with this name in the manifests");
    }
    let services = node_view(&view, &node_config);
    for error in &services.errors {
        tracing::warn!(reason = error.reason(), "{error}");
    }
    Ok(services)
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<()> {
    let flags = args.kube_proxy.overrides(args.node.as_deref())?;
    let config = load(args.config.as_deref(), &flags)?.config;
    if let (true, Some(manifests)) = (args.once, &args.manifests) {
        let services = compute(manifests, &config)?;
        let options = config.ruleset_options();
        let desired = ruleset::desired(&services, &options);
        // Not needed any more: the sync holds the desired ruleset and what it plans.
        drop(services);
        let report = sync_once(
            config.backend.backend().as_ref(),
            &options.table_name,
            &desired,
            STAGE_SERVICES,
        )?;
        if report.operations > 0 {
            tracing::info!(
                operations = report.operations,
                services = ?report.services,
                "programmed the node's rules"
            );
        }
        return say(&report.to_string());
    }
    let source = match &args.manifests {
        Some(path) => Source::Manifests(path.clone()),
        None => Source::Kube,
    };
    tracing::info!(
        node = %config.effective_node_name(),
        backend = ?config.backend,
        source = ?source,
        "starting"
    );
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(daemon::run(config, source))
}

/// Runs `cleanup`: kube-nftproxy's tables, or with `--kube-proxy` kube-proxy's leftovers.
pub fn run_cleanup(args: &CleanupArgs) -> Result<()> {
    // Only the backend and the table name matter here: kube-proxy's configuration is not read
    // (a field we cannot honour must not stop a cleanup).
    let flags = FlagOverrides {
        kube_proxy_config: Some(String::new()),
        ..FlagOverrides::default()
    };
    let config = load(args.config.as_deref(), &flags)?.config;
    let backend = config.backend.backend();
    if args.kube_proxy {
        let report = cleanup_kube_proxy::cleanup(backend.as_ref());
        for line in &report.removed {
            say(line)?;
        }
        if report.removed.is_empty() && report.errors.is_empty() {
            say("nothing of kube-proxy's to remove")?;
        }
        for note in &report.notes {
            tracing::info!("{note}");
        }
        if !report.errors.is_empty() {
            bail!(
                "removing kube-proxy's leftovers:{}",
                report
                    .errors
                    .iter()
                    .map(|e| format!("\n  - {e}"))
                    .collect::<String>()
            );
        }
        return Ok(());
    }
    let options = config.ruleset_options();
    let deleted = cleanup(backend.as_ref(), &options.table_name)?;
    if deleted.is_empty() {
        say(&format!("no {} tables to delete", options.table_name))
    } else {
        say(&format!("deleted table {}", deleted.join(", table ")))
    }
}

/// Runs `config`: prints the effective configuration as TOML (defaults, kube-proxy's
/// configuration, file, environment and flags merged), which is also a valid configuration
/// file; with `--show-origin`, each key followed by a comment naming its source.
pub fn run_config(args: &ConfigArgs) -> Result<()> {
    let flags = args.kube_proxy.overrides(args.node.as_deref())?;
    let loaded = load(args.config.as_deref(), &flags)?;
    let mut text = toml::to_string(&loaded.config).context("printing the configuration")?;
    if args.show_origin {
        text = with_origins(&text, &loaded);
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to standard output")
}

/// `key = value` lines followed by `  # <origin>`; kube-proxy's ignored fields listed at the end.
fn with_origins(text: &str, loaded: &Loaded) -> String {
    let mut out = String::new();
    for line in text.lines() {
        out.push_str(line);
        let key = line.split_once(" = ").map(|(k, _)| k.trim());
        if let Some(origin) = key.and_then(|k| loaded.origins.get(k)) {
            out.push_str("  # ");
            out.push_str(origin);
        }
        out.push('\n');
    }
    if let Some(kube_proxy) = &loaded.kube_proxy {
        if !kube_proxy.ignored.is_empty() || !loaded.overridden.is_empty() {
            out.push_str(&format!(
                "\n# kube-proxy configuration {} (mode {}):\n",
                kube_proxy.path.display(),
                kube_proxy.mode
            ));
        }
        for ignored in &kube_proxy.ignored {
            out.push_str(&format!("# ignored {ignored}\n"));
        }
        for line in &loaded.overridden {
            out.push_str(&format!("# {line}\n"));
        }
    }
    out
}
