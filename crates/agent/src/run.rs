//! `kube-nftproxy run`, `cleanup` and `config`: program this node's rules (once from manifests,
//! or continuously from the API server or a manifest path), remove them, show the effective
//! configuration.

use crate::config::{self, Config, FlagOverrides};
use crate::daemon::{self, Source};
use crate::render::{compute, InputArgs};
use crate::sync::{cleanup, sync_once};
use anyhow::{Context, Result};
use clap::Args;
use std::io::Write;
use std::path::PathBuf;

/// Arguments of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Read Services, EndpointSlices and Nodes from this manifest file or directory (read again
    /// when it changes) instead of the API server.
    #[arg(long)]
    manifests: Option<PathBuf>,
    /// This node's name (overrides `node_name` from the configuration).
    #[arg(long)]
    node: Option<String>,
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The kubeconfig file to reach the API server (overrides `kubeconfig` from the
    /// configuration).
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Sync once from `--manifests`, print a one-line summary, and exit.
    #[arg(long, requires = "manifests")]
    once: bool,
}

/// Arguments of `cleanup` and `config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// The configuration file (default: /etc/kube-nftproxy/config.toml when present).
    #[arg(long)]
    config: Option<PathBuf>,
    /// This node's name (overrides `node_name` from the configuration).
    #[arg(long)]
    node: Option<String>,
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").context("writing to standard output")
}

fn load(config: Option<&std::path::Path>, flags: FlagOverrides) -> Result<Config> {
    Ok(config::load(config, &flags)?)
}

fn node_flag(node: Option<&str>) -> FlagOverrides {
    FlagOverrides {
        node_name: node.map(str::to_owned),
        ..FlagOverrides::default()
    }
}

/// Runs `run`.
pub fn run(args: &RunArgs) -> Result<()> {
    if let (true, Some(manifests)) = (args.once, &args.manifests) {
        let input = InputArgs {
            manifests: manifests.clone(),
            node: args.node.clone(),
            config: args.config.clone(),
        };
        let (services, config) = compute(&input)?;
        let options = config.ruleset_options();
        let desired = ruleset::desired(&services, &options);
        let report = sync_once(
            config.backend.backend().as_ref(),
            &options.table_name,
            &desired,
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
    let flags = FlagOverrides {
        node_name: args.node.clone(),
        kubeconfig: args
            .kubeconfig
            .as_ref()
            .map(|p| p.to_string_lossy().into_owned()),
    };
    let config = load(args.config.as_deref(), flags)?;
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

/// Runs `cleanup`.
pub fn run_cleanup(args: &ConfigArgs) -> Result<()> {
    let config = load(args.config.as_deref(), node_flag(args.node.as_deref()))?;
    let options = config.ruleset_options();
    let deleted = cleanup(config.backend.backend().as_ref(), &options.table_name)?;
    if deleted.is_empty() {
        say(&format!("no {} tables to delete", options.table_name))
    } else {
        say(&format!("deleted table {}", deleted.join(", table ")))
    }
}

/// Runs `config`: prints the effective configuration as TOML (defaults, file, environment and
/// flags merged), which is also a valid configuration file.
pub fn run_config(args: &ConfigArgs) -> Result<()> {
    let config = load(args.config.as_deref(), node_flag(args.node.as_deref()))?;
    let text = toml::to_string(&config).context("printing the configuration")?;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .context("writing to standard output")
}
