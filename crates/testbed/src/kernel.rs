//! Detection of whether kernel (namespace / nftables) tests can run.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

const SKIP_VAR: &str = "KNP_SKIP_KERNEL_TESTS";

/// Returns `true` when kernel tests can run: the process is root and both
/// `nft` and `ip` are found in `PATH`.
///
/// When something is missing and `KNP_SKIP_KERNEL_TESTS=1` is set, prints a
/// skip notice to stderr and returns `false`; otherwise panics with a message
/// naming what is missing. Use as `if !testbed::require_kernel() { return; }`.
pub fn require_kernel() -> bool {
    let mut missing = Vec::new();
    match effective_uid() {
        Some(0) => {}
        Some(uid) => missing.push(format!("root (effective uid is {uid})")),
        None => missing.push("root (could not read uid from /proc/self/status)".to_owned()),
    }
    for program in ["nft", "ip"] {
        if !in_path(program) {
            missing.push(format!("`{program}` in PATH"));
        }
    }
    if missing.is_empty() {
        return true;
    }
    if std::env::var(SKIP_VAR).is_ok_and(|v| v == "1") {
        eprintln!("skipping: kernel tests need root, nft and ip ({SKIP_VAR}=1)");
        return false;
    }
    panic!(
        "kernel tests need root, nft and ip; missing: {}. Set {SKIP_VAR}=1 to skip these tests.",
        missing.join(", ")
    );
}

/// Effective uid from the `Uid:` line of `/proc/self/status`.
fn effective_uid() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("Uid:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether an executable file named `program` is in one of the `PATH` directories.
fn in_path(program: &str) -> bool {
    let Some(path) = std::env::var_os("PATH") else {
        return false;
    };
    std::env::split_paths(&path).any(|dir| is_executable(&dir.join(program)))
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}
