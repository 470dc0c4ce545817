//! Item 6 for the agent as it runs on a node: a daemon (`run --manifests DIR`, no `--once`)
//! that keeps the cluster view, the model's output and the desired ruleset between syncs.

use crate::measure::{AgentFiles, AgentRun};
use crate::ns::Ns;
use crate::stats::ms;
use anyhow::{bail, Context, Result};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How long the first sync may take before the measurement gives up.
const FIRST_SYNC_TIMEOUT: Duration = Duration::from_secs(900);

/// Starts the agent as a daemon in `ns`, waits for its first sync to be committed (its
/// `applied N operations …` log line), reads its peak RSS so far (VmHWM), and stops it with
/// SIGTERM (the rules stay).
pub fn agent_daemon(ns: &Ns, agent: &Path, files: &AgentFiles) -> Result<AgentRun> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns.name()])
        .arg(agent)
        .arg("run")
        .arg("--manifests")
        .arg(&files.manifests)
        .arg("--config")
        .arg(&files.config)
        // The report of a sync with no operations is a debug line.
        .env("RUST_LOG", "warn,agent=debug")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the agent")?;
    let started = Instant::now();
    let result = first_sync(&mut child).and_then(|summary| {
        // `ip netns exec` execs the agent: the child is the agent itself.
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()))
            .context("reading the agent's /proc status")?;
        let peak_rss_kib = crate::measure::kib_field(&status, "VmHWM:")
            .context("no VmHWM in the agent's /proc status")?;
        Ok(AgentRun {
            peak_rss_kib,
            wall_ms: ms(started.elapsed()),
            operations: operations(&summary),
            summary,
        })
    });
    stop(&mut child);
    result
}

/// The summary of the first sync, from the agent's log.
fn first_sync(child: &mut Child) -> Result<String> {
    let stderr = child.stderr.take().context("the agent's stderr")?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut errors = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // `applied N operations`, not `applied a stage of the sync …`.
            let report_at = line
                .match_indices("applied ")
                .map(|(at, _)| at)
                .find(|at| line[at + "applied ".len()..].starts_with(|c: char| c.is_ascii_digit()));
            if let Some(at) = report_at {
                // The report, without the log line's fields (` operations=… full=…`).
                let report = &line[at..];
                let end = [" operations=", " full="]
                    .iter()
                    .filter_map(|f| report.find(f))
                    .min()
                    .unwrap_or(report.len());
                let _ = tx.send(Ok(report[..end].to_owned()));
                return;
            }
            if line.contains("ERROR") {
                errors.push(line);
            }
        }
        let _ = tx.send(Err(errors.join("\n")));
    });
    match rx.recv_timeout(FIRST_SYNC_TIMEOUT) {
        Ok(Ok(summary)) => Ok(summary),
        Ok(Err(errors)) => bail!("the agent exited before its first sync: {errors}"),
        Err(_) => bail!("no sync within {FIRST_SYNC_TIMEOUT:?}"),
    }
}

/// `N` of `applied N operations`.
fn operations(summary: &str) -> Option<usize> {
    summary
        .strip_prefix("applied ")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// SIGTERM, then SIGKILL if it is still there after a few seconds.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    for _ in 0..100 {
        if matches!(child.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operation_count_is_read_from_the_summary() {
        assert_eq!(
            operations("applied 153874 operations (10000 Services changed) in 1.0 ms"),
            Some(153874)
        );
        assert_eq!(
            operations("applied 0 operations (0 Services changed)"),
            Some(0)
        );
        assert_eq!(operations("nothing"), None);
    }
}
