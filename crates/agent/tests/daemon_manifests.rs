//! `kube-nftproxy run --manifests DIR` as a long-running agent, in a network namespace made
//! for the test: it programs the directory's Services, follows a changed file, tells systemd
//! it is ready (and pings the watchdog), and leaves the rules in place on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use testbed::{require_kernel, NetNs};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The agent process, stopped with SIGTERM (then killed) on drop.
struct Agent(Child);

impl Agent {
    fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.0.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
        None
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            self.terminate();
        }
    }
}

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: extra, namespace: default}
spec:
  clusterIP: 10.96.9.9
  clusterIPs: [10.96.9.9]
  ports: [{name: http, port: 80, protocol: TCP, targetPort: 8080}]
"#;

/// Polls `check` every 100 ms for up to 15 s.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("timed out waiting for: {what}");
}

#[test]
fn a_manifest_directory_is_followed_and_systemd_is_told() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("daemon").unwrap_or_else(|e| panic!("netns: {e}"));
    let scratch = Scratch(std::env::temp_dir().join(format!("knp-daemon-{}", std::process::id())));
    let dir = scratch.0.join("manifests");
    std::fs::create_dir_all(&dir).expect("scratch dir");
    std::fs::copy(
        repo().join("examples/cluster.yaml"),
        dir.join("cluster.yaml"),
    )
    .expect("copying the example");
    let config = scratch.0.join("config.toml");
    let mut text = std::fs::read_to_string(repo().join("examples/config.toml")).expect("config");
    text.push_str("\nmin_sync_period_seconds = 0.2\nhealthz_bind_address = \"127.0.0.1:10256\"\nmetrics_bind_address = \"\"\n");
    std::fs::write(&config, text).expect("writing the config");
    let notify_path = scratch.0.join("notify");
    let notify = UnixDatagram::bind(&notify_path).expect("binding the notify socket");
    notify
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");

    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns.name(),
            env!("CARGO_BIN_EXE_kube-nftproxy"),
        ])
        .args(["run", "--node", "node-a", "--manifests"])
        .arg(&dir)
        .arg("--config")
        .arg(&config)
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "400000")
        .env_remove("WATCHDOG_PID")
        .env_remove("KUBECONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the agent");
    let mut agent = Agent(child);

    // READY=1 after the first sync, then watchdog pings from the loop.
    let mut seen = Vec::new();
    let mut buf = [0u8; 256];
    while !(seen.iter().any(|m: &String| m.contains("READY=1"))
        && seen.iter().any(|m| m.contains("WATCHDOG=1")))
    {
        let n = notify
            .recv(&mut buf)
            .unwrap_or_else(|e| panic!("no notification (saw {seen:?}): {e}"));
        seen.push(String::from_utf8_lossy(&buf[..n]).into_owned());
    }
    let listing = || ns.nft_list_ruleset().unwrap_or_default();
    assert!(
        listing().contains("10.96.0.10 . tcp . 53"),
        "READY=1 came before the rules were programmed"
    );

    // A new file in the directory is picked up.
    std::fs::write(dir.join("extra.yaml"), SERVICE).expect("writing a manifest");
    eventually("the new Service's ClusterIP in the rules", || {
        listing().contains("10.96.9.9")
    });
    // …and its removal too.
    std::fs::remove_file(dir.join("extra.yaml")).expect("removing the manifest");
    eventually("the removed Service gone from the rules", || {
        !listing().contains("10.96.9.9")
    });

    let before = listing();
    let status = agent.terminate().expect("the agent stops on SIGTERM");
    assert!(status.success(), "exit status {status}");
    assert_eq!(listing(), before, "SIGTERM must leave the rules in place");
}
