//! `kube-nftproxy config`: the effective configuration, with defaults < file < environment <
//! flags, and errors that name the key and where its value came from.

use std::process::{Command, Output};

fn config(file: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let dir =
        std::env::temp_dir().join(format!("knp-config-{}-{}", std::process::id(), file.len()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("config.toml");
    std::fs::write(&path, file).expect("writing the config file");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_kube-nftproxy"));
    cmd.arg("config").arg("--config").arg(&path).args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("running kube-nftproxy config");
    let _ = std::fs::remove_dir_all(&dir);
    out
}

fn stdout(out: &Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn file_environment_and_flags_are_merged_in_order() {
    let file =
        "node_name = \"from-file\"\nsync_period_seconds = 20.0\nmin_sync_period_seconds = 0.5\n";
    let out = stdout(&config(
        file,
        &[("KUBE_NFTPROXY_SYNC_PERIOD_SECONDS", "45")],
        &["--node", "from-flag"],
    ));
    assert!(out.contains("node_name = \"from-flag\""), "{out}");
    assert!(out.contains("sync_period_seconds = 45.0"), "{out}");
    assert!(out.contains("min_sync_period_seconds = 0.5"), "{out}");
    assert!(
        out.contains("healthz_bind_address = \"0.0.0.0:10256\""),
        "{out}"
    );
    assert!(out.contains("backend = \"netlink\""), "{out}");
}

#[test]
fn the_printed_configuration_is_a_valid_configuration_file() {
    let first = stdout(&config("masquerade_bit = 13\n", &[], &[]));
    let second = stdout(&config(&first, &[], &[]));
    assert_eq!(first, second);
}

#[test]
fn an_unknown_key_or_a_bad_value_names_the_key_and_its_source() {
    let out = config("sync_perod_seconds = 3\n", &[], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("sync_perod_seconds") && err.contains("config.toml"),
        "{err}"
    );

    let out = config(
        "",
        &[("KUBE_NFTPROXY_HEALTHZ_BIND_ADDRESS", "nowhere")],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("healthz_bind_address") && err.contains("nowhere"),
        "{err}"
    );

    let out = config("min_sync_period_seconds = -1.0\n", &[], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("min_sync_period_seconds"), "{err}");
}
