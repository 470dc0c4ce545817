//! What the benchmarks ran on: machine, kernel and versions.

use serde::Serialize;
use std::process::Command;

/// The machine and the software measured.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// CPU model.
    pub cpu: String,
    /// CPUs available to the process.
    pub cpus: usize,
    /// Memory, in MiB.
    pub memory_mib: u64,
    /// The operating system.
    pub os: String,
    /// The kernel release.
    pub kernel: String,
    /// `nft --version`.
    pub nft: String,
    /// The libnftnl package version.
    pub libnftnl: String,
    /// `rustc --version` (the toolchain on the PATH).
    pub rustc: String,
    /// kube-nftproxy's version and commit.
    pub kube_nftproxy: String,
    /// The load average when the run started.
    pub load_at_start: String,
    /// The load average when the run ended.
    pub load_at_end: String,
    /// When the run started (UTC).
    pub date: String,
}

fn command(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn file(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// The load average (1, 5, 15 minutes).
pub fn load() -> String {
    file("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Describes this machine now.
pub fn describe() -> Machine {
    let cpuinfo = file("/proc/cpuinfo");
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map_or_else(|| "unknown".into(), |(_, m)| m.trim().to_owned());
    let memory_mib = file("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse::<u64>().ok())
        .map_or(0, |kib| kib / 1024);
    let os = file("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map_or_else(|| "unknown".into(), |v| v.trim_matches('"').to_owned());
    let unknown = || "unknown".to_owned();
    let commit = command("git", &["describe", "--always", "--dirty", "--abbrev=10"]);
    Machine {
        cpu,
        cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_mib,
        os,
        kernel: file("/proc/sys/kernel/osrelease").trim().to_owned(),
        nft: command("nft", &["--version"]).unwrap_or_else(unknown),
        libnftnl: command("dpkg-query", &["-W", "-f", "${Version}", "libnftnl11"])
            .map_or_else(unknown, |v| format!("libnftnl11 {v}")),
        rustc: command("rustc", &["--version"]).unwrap_or_else(unknown),
        kube_nftproxy: format!(
            "{} ({})",
            env!("CARGO_PKG_VERSION"),
            commit.unwrap_or_else(unknown)
        ),
        load_at_start: load(),
        load_at_end: String::new(),
        date: command("date", &["-u", "+%Y-%m-%d %H:%M UTC"]).unwrap_or_else(unknown),
    }
}
