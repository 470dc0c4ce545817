//! Network namespaces that delete themselves.

use std::io::Write;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::TestbedError;

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A network namespace created with `ip netns add`, deleted again on drop
/// (also while unwinding from a panic).
#[derive(Debug)]
pub struct NetNs {
    name: String,
}

impl NetNs {
    /// Creates a namespace named `knp-<prefix>-<pid>-<counter>` and brings
    /// its `lo` interface up.
    pub fn new(prefix: &str) -> Result<NetNs, TestbedError> {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("knp-{prefix}-{}-{n}", std::process::id());
        run(Command::new("ip").args(["netns", "add", &name]))?;
        // From here on, drop deletes the namespace even if bringing lo up fails.
        let ns = NetNs { name };
        ns.run("ip", &["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name, as used by `ip netns`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip netns exec <name> python3 -c <script>`, to add arguments and stdio to and spawn.
    pub(crate) fn python(&self, script: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", self.name(), "python3", "-c", script]);
        cmd
    }

    /// Runs `ip netns exec <name> program args…` and returns its output,
    /// whatever the exit status.
    pub fn exec(&self, program: &str, args: &[&str]) -> Result<Output, TestbedError> {
        output(&mut self.command(program, args))
    }

    /// Runs `program args…` in the namespace and returns its stdout; fails
    /// with the command, exit status and stderr when it exits unsuccessfully.
    pub fn run(&self, program: &str, args: &[&str]) -> Result<String, TestbedError> {
        run(&mut self.command(program, args))
    }

    /// Loads `text` with `nft -f -` in the namespace; on failure the error
    /// contains nft's stderr (with its line numbers) verbatim.
    pub fn nft_load(&self, text: &str) -> Result<(), TestbedError> {
        let mut cmd = self.command("nft", &["-f", "-"]);
        let command = describe(&cmd);
        let spawn_err = |source| TestbedError::Spawn {
            command: command.clone(),
            source,
        };
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn_err)?;
        let stdin = child.stdin.take();
        // Write from a separate thread so a chatty nft cannot deadlock us.
        let (write_result, out) = std::thread::scope(|s| {
            let writer = s.spawn(move || match stdin {
                Some(mut pipe) => pipe.write_all(text.as_bytes()),
                None => Ok(()),
            });
            let out = child.wait_with_output();
            let written = writer
                .join()
                .unwrap_or_else(|_| Err(std::io::Error::other("stdin writer panicked")));
            (written, out)
        });
        checked(&command, out.map_err(spawn_err)?)?;
        // A write error only matters if nft itself claimed success.
        write_result.map_err(spawn_err)?;
        Ok(())
    }

    /// Returns `nft list ruleset` as printed inside the namespace.
    pub fn nft_list_ruleset(&self) -> Result<String, TestbedError> {
        self.run("nft", &["list", "ruleset"])
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.name, program]).args(args);
        cmd
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let result = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stdin(Stdio::null())
            .output();
        let problem = match result {
            Ok(out) if out.status.success() => return,
            Ok(out) => format!(
                "{}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => e.to_string(),
        };
        // Not eprintln!: it panics if stderr is gone, and we may be unwinding.
        let _ = writeln!(
            std::io::stderr(),
            "warning: could not delete network namespace {}: {problem}",
            self.name
        );
    }
}

/// `program arg…` of `cmd`, for error messages.
fn describe(cmd: &Command) -> String {
    std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `cmd` with stdin closed and collects its output.
fn output(cmd: &mut Command) -> Result<Output, TestbedError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| TestbedError::Spawn {
            command: describe(cmd),
            source,
        })
}

/// Runs `cmd`; returns its stdout, or [`TestbedError::Failed`] on unsuccessful exit.
fn run(cmd: &mut Command) -> Result<String, TestbedError> {
    let out = output(cmd)?;
    checked(&describe(cmd), out)
}

/// Turns an unsuccessful exit into [`TestbedError::Failed`]; else returns stdout.
fn checked(command: &str, out: Output) -> Result<String, TestbedError> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(TestbedError::Failed {
            command: command.to_owned(),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}
