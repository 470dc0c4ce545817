//! `kube-nftproxy`: a Kubernetes Service proxy for one node, on nftables.

use agent::{render, run};

use anyhow::Result;
use clap::{Parser, Subcommand, ValueEnum};

/// A Kubernetes node agent that implements Services with nftables, in place of kube-proxy.
#[derive(Debug, Parser)]
#[command(name = "kube-nftproxy", version, about)]
struct Cli {
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the ruleset a node would get from manifests of Services, EndpointSlices and Nodes.
    Render(render::RenderArgs),
    /// Run the agent: program this node's rules from the API server (or `--manifests`) and keep
    /// them up to date; serve health checks and metrics. `--once --manifests PATH` syncs once.
    Run(run::RunArgs),
    /// Delete kube-nftproxy's tables (and nothing else) from the kernel; with `--kube-proxy`,
    /// what kube-proxy left there instead (its nftables tables, iptables chains, IPVS).
    Cleanup(run::CleanupArgs),
    /// Print the effective configuration (defaults < kube-proxy's configuration < file <
    /// environment < flags) as TOML; `--show-origin` says where each value came from.
    Config(run::ConfigArgs),
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only on a terminal (journald and log files get plain text).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> Result<()> {
    heap::configure();
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Render(args) => render::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Cleanup(args) => run::run_cleanup(&args),
        Command::Config(args) => run::run_config(&args),
    }
}
