//! Kernel tests for `NetNs`; they need root, `nft` and `ip`
//! (set `KNP_SKIP_KERNEL_TESTS=1` to skip them elsewhere).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::Command;

use testbed::NetNs;

/// `stdout` of a read-only command in the root namespace.
fn root_stdout(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(out.status.success(), "{program} {args:?}: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8")
}

fn root_ruleset() -> String {
    root_stdout("nft", &["list", "ruleset"])
}

fn netns_exists(name: &str) -> bool {
    root_stdout("ip", &["netns", "list"])
        .lines()
        .any(|l| l.split_whitespace().next() == Some(name))
}

#[test]
fn load_list_and_delete_on_drop() {
    if !testbed::require_kernel() {
        return;
    }
    let before = root_ruleset();
    let ns = NetNs::new("load").expect("create netns");
    let name = ns.name().to_owned();
    assert!(name.starts_with(&format!("knp-load-{}-", std::process::id())));
    assert!(netns_exists(&name));

    ns.nft_load("table ip t { chain c { type filter hook input priority 0; }; }")
        .expect("load");
    let listing = ns.nft_list_ruleset().expect("list");
    assert!(listing.contains("table ip t {"), "{listing}");
    assert!(listing.contains("chain c {"), "{listing}");
    assert!(ns
        .run("ip", &["link", "show", "lo"])
        .expect("ip link")
        .contains("UP"));

    let err = ns
        .run("nft", &["list", "table", "ip", "missing"])
        .expect_err("no such table");
    let msg = err.to_string();
    assert!(
        msg.contains("nft list table ip missing") && msg.contains("exit status: 1"),
        "{msg}"
    );
    assert!(!ns.exec("false", &[]).expect("exec").status.success());

    drop(ns);
    assert!(!netns_exists(&name), "{name} still exists");
    assert_eq!(root_ruleset(), before);
}

#[test]
fn deleted_when_panicking() {
    if !testbed::require_kernel() {
        return;
    }
    let before = root_ruleset();
    let mut name = None;
    let result = catch_unwind(AssertUnwindSafe(|| {
        let ns = NetNs::new("panic").expect("create netns");
        name = Some(ns.name().to_owned());
        ns.nft_load("table ip t { }").expect("load");
        panic!("intentional panic while holding {}", ns.name());
    }));
    assert!(result.is_err());
    let name = name.expect("namespace was created");
    assert!(!netns_exists(&name), "{name} still exists");
    assert_eq!(root_ruleset(), before);
}

#[test]
fn invalid_ruleset_error_contains_nft_stderr() {
    if !testbed::require_kernel() {
        return;
    }
    let before = root_ruleset();
    let ns = NetNs::new("bad").expect("create netns");
    let err = ns
        .nft_load("table ip t {\n\tchain c {\n\t\tthis is not nft\n\t}\n}\n")
        .expect_err("invalid ruleset");
    let msg = err.to_string();
    assert!(msg.contains("Error: syntax error"), "{msg}");
    assert!(msg.contains("/dev/stdin:3:"), "{msg}");
    assert_eq!(ns.nft_list_ruleset().expect("list"), "");
    drop(ns);
    assert_eq!(root_ruleset(), before);
}

#[test]
fn names_are_unique() {
    if !testbed::require_kernel() {
        return;
    }
    let a = NetNs::new("u").expect("create netns");
    let b = NetNs::new("u").expect("create netns");
    assert_ne!(a.name(), b.name());
}

#[test]
fn normalized_listings_ignore_element_order() {
    if !testbed::require_kernel() {
        return;
    }
    let before = root_ruleset();
    let elements = [
        r#"10.96.0.10 . udp . 53 : goto svc"#,
        r#"10.96.0.1 . tcp . 443 comment "default/kubernetes:https, tcp" : goto svc"#,
        r#"10.96.0.2 . tcp . 80 : goto svc"#,
    ];
    let load = |order: [usize; 3]| {
        let ns = NetNs::new("norm").expect("create netns");
        let list: Vec<&str> = order.iter().map(|&i| elements[i]).collect();
        ns.nft_load(&format!(
            "table ip t {{\n chain svc {{\n }}\n map m {{\n type ipv4_addr . inet_proto . inet_service : verdict\n elements = {{ {} }}\n }}\n}}\n",
            list.join(", ")
        ))
        .expect("load");
        ns.nft_list_ruleset().expect("list")
    };
    let a = testbed::normalize_nft_listing(&load([0, 1, 2]));
    let b = testbed::normalize_nft_listing(&load([2, 1, 0]));
    assert_eq!(a, b);
    assert!(a.contains("\"default/kubernetes:https, tcp\""), "{a}");
    assert_eq!(root_ruleset(), before);
}
