//! `kube-nftproxy cleanup --kube-proxy`, run as the real binary in a network namespace made for
//! the test that holds what kube-proxy's three modes leave behind, next to other rules: exactly
//! kube-proxy's parts go, everything else stays, and each removal is printed.

use testbed::{installed, require_kernel, NetNs, ScratchDir};

const BIN: &str = env!("CARGO_BIN_EXE_kube-nftproxy");

/// kube-proxy's nftables mode (a trimmed `ip kube-proxy` table), an `ip6` one, and tables of
/// others (one with a similar name).
const NFT: &str = r#"
table ip kube-proxy {
	comment "rules for kube-proxy"
	set cluster-ips {
		type ipv4_addr
		elements = { 172.30.0.41 }
	}
	map service-ips {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 172.30.0.41 . tcp . 80 : goto service-ULMVA6XW-ns1/svc1/tcp/p80 }
	}
	map no-endpoint-services {
		type ipv4_addr . inet_proto . inet_service : verdict
		elements = { 172.30.0.46 . tcp . 80 : drop }
	}
	chain mark-for-masquerade {
		meta mark set meta mark | 0x00004000
	}
	chain services {
		ip daddr . meta l4proto . th dport vmap @service-ips
	}
	chain nat-prerouting {
		type nat hook prerouting priority dstnat; policy accept;
		jump services
	}
	chain filter-forward {
		type filter hook forward priority filter; policy accept;
		ct state new ip daddr . meta l4proto . th dport vmap @no-endpoint-services
	}
	chain endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 {
		ip saddr 10.180.0.1 jump mark-for-masquerade
		meta l4proto tcp dnat to 10.180.0.1:80
	}
	chain service-ULMVA6XW-ns1/svc1/tcp/p80 {
		ip daddr 172.30.0.41 ip saddr != 10.0.0.0/8 jump mark-for-masquerade
		numgen random mod 1 vmap { 0 : goto endpoint-5OJB2KTY-ns1/svc1/tcp/p80__10.180.0.1/80 }
	}
}
table ip6 kube-proxy {
	chain nat-output {
		type nat hook output priority -100; policy accept;
		ip6 daddr fd00:10:96::1 tcp dport 443 dnat to [fd00::10]:6443
	}
}
table inet someone-else {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept
	}
}
table ip kube-proxy-not {
	chain c {
		ip saddr 192.0.2.1 drop
	}
}
"#;

/// kube-proxy's iptables mode (and kubelet's chains, which stay), with rules of others in the
/// same tables.
const IPTABLES: &str = r#"*mangle
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:OTHER-MANGLE - [0:0]
-A PREROUTING -j OTHER-MANGLE
COMMIT
*filter
:KUBE-EXTERNAL-SERVICES - [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-PROXY-FIREWALL - [0:0]
:KUBE-SERVICES - [0:0]
:MY-CHAIN - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A INPUT -m comment --comment "kubernetes health check service ports" -j KUBE-NODEPORTS
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes externally-visible service portals" -j KUBE-EXTERNAL-SERVICES
-A INPUT -j KUBE-FIREWALL
-A INPUT -s 10.1.0.0/16 -j MY-CHAIN
-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes load balancer firewall" -j KUBE-PROXY-FIREWALL
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A FORWARD -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -j KUBE-FIREWALL
-A KUBE-FIREWALL ! -s 127.0.0.0/8 -d 127.0.0.0/8 -m comment --comment "block incoming localnet connections" -m conntrack ! --ctstate RELATED,ESTABLISHED,DNAT -j DROP
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A KUBE-FORWARD -m mark --mark 0x4000/0x4000 -m comment --comment "kubernetes forwarding rules" -j ACCEPT
-A MY-CHAIN -j ACCEPT
COMMIT
*nat
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-NODEPORTS - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-PROXY-CANARY - [0:0]
:KUBE-SEP-IT2ZTR26TO4XFPTO - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-NPX46M4PTMTKRN6Y - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.99.0.0/16 ! -d 10.99.0.0/16 -j MASQUERADE
-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000
-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN
-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0
-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" -j MASQUERADE --random-fully
-A KUBE-SEP-IT2ZTR26TO4XFPTO -s 10.0.0.10/32 -m comment --comment "default/kubernetes:https" -j KUBE-MARK-MASQ
-A KUBE-SEP-IT2ZTR26TO4XFPTO -p tcp -m comment --comment "default/kubernetes:https" -m tcp -j DNAT --to-destination 10.0.0.10:6443
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-SVC-NPX46M4PTMTKRN6Y
-A KUBE-SERVICES -m comment --comment "kubernetes service nodeports; NOTE: this must be the last rule in this chain" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS
-A KUBE-SVC-NPX46M4PTMTKRN6Y ! -s 10.244.0.0/16 -d 10.96.0.1/32 -p tcp -m comment --comment "default/kubernetes:https cluster IP" -m tcp --dport 443 -j KUBE-MARK-MASQ
-A KUBE-SVC-NPX46M4PTMTKRN6Y -m comment --comment "default/kubernetes:https -> 10.0.0.10:6443" -j KUBE-SEP-IT2ZTR26TO4XFPTO
COMMIT
"#;

/// The IPv6 side: fewer chains, same idea.
const IP6TABLES: &str = r#"*nat
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
:OTHER6 - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A PREROUTING -j OTHER6
-A KUBE-SERVICES -d fd00:10:96::1/128 -p tcp -m tcp --dport 443 -j KUBE-SVC-ABC
COMMIT
"#;

/// kube-proxy's chains in the IPv4 dump above (kubelet's excluded).
const KUBE_PROXY_CHAINS: &[(&str, &str)] = &[
    ("mangle", "KUBE-PROXY-CANARY"),
    ("filter", "KUBE-EXTERNAL-SERVICES"),
    ("filter", "KUBE-FORWARD"),
    ("filter", "KUBE-NODEPORTS"),
    ("filter", "KUBE-PROXY-CANARY"),
    ("filter", "KUBE-PROXY-FIREWALL"),
    ("filter", "KUBE-SERVICES"),
    ("nat", "KUBE-MARK-MASQ"),
    ("nat", "KUBE-NODEPORTS"),
    ("nat", "KUBE-POSTROUTING"),
    ("nat", "KUBE-PROXY-CANARY"),
    ("nat", "KUBE-SEP-IT2ZTR26TO4XFPTO"),
    ("nat", "KUBE-SERVICES"),
    ("nat", "KUBE-SVC-NPX46M4PTMTKRN6Y"),
];

fn run(ns: &NetNs, program: &str, args: &[&str]) -> String {
    ns.run(program, args)
        .unwrap_or_else(|e| panic!("{program} {args:?} in {}: {e}", ns.name()))
}

/// `iptables-save` output without comments and counters' noise.
fn saved(ns: &NetNs, program: &str) -> String {
    run(ns, program, &[])
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// The dump with kube-proxy's chains and the rules in or to them taken out (what must remain).
fn without_kube_proxy(dump: &str, chains: &[(&str, &str)]) -> String {
    let mut table = String::new();
    let mut out = String::new();
    for line in dump.lines() {
        if let Some(t) = line.strip_prefix('*') {
            table = t.to_owned();
        }
        let ours = |chain: &str| chains.iter().any(|(t, c)| *t == table && *c == chain);
        let drop = match line.split_whitespace().collect::<Vec<_>>().as_slice() {
            [declaration, ..] if declaration.starts_with(':') => ours(&declaration[1..]),
            ["-A", chain, rest @ ..] => {
                ours(chain)
                    || rest
                        .windows(2)
                        .any(|w| matches!(w[0], "-j" | "-g") && ours(w[1]))
            }
            _ => false,
        };
        if !drop {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

fn cleanup(ns: &NetNs) -> String {
    let out = ns
        .exec(BIN, &["cleanup", "--kube-proxy"])
        .unwrap_or_else(|e| panic!("running {BIN}: {e}"));
    assert!(
        out.status.success(),
        "cleanup --kube-proxy failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn removes_kube_proxy_s_leftovers_of_every_mode_and_nothing_else() {
    if !require_kernel() {
        return;
    }
    assert!(
        installed("iptables-nft-restore") && installed("ip6tables-nft-restore"),
        "iptables is not installed (apt-get install -y iptables)"
    );
    let ns = NetNs::new("ckp").unwrap_or_else(|e| panic!("netns: {e}"));
    let scratch = ScratchDir::new("ckp").unwrap_or_else(|e| panic!("scratch: {e}"));
    ns.nft_load(NFT).unwrap_or_else(|e| panic!("loading: {e}"));
    let file = |name: &str, text: &str| {
        scratch
            .file(name, text)
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    };
    let v4 = file("v4", IPTABLES);
    let v6 = file("v6", IP6TABLES);
    run(&ns, "iptables-nft-restore", &["--noflush", &v4]);
    run(&ns, "ip6tables-nft-restore", &["--noflush", &v6]);
    let legacy = installed("iptables-legacy-restore");
    if legacy {
        run(&ns, "iptables-legacy-restore", &["--noflush", &v4]);
    }
    // kube-ipvs0: a dummy interface where the kernel has the driver, else another kind (only
    // the name matters), with two Service addresses.
    let made = ["dummy", "bridge"].iter().any(|kind| {
        ns.exec("ip", &["link", "add", "kube-ipvs0", "type", kind])
            .is_ok_and(|o| o.status.success())
    });
    assert!(made, "could not create kube-ipvs0");
    run(
        &ns,
        "ip",
        &["addr", "add", "10.96.0.1/32", "dev", "kube-ipvs0"],
    );
    run(
        &ns,
        "ip",
        &["addr", "add", "fd00:10:96::1/128", "dev", "kube-ipvs0"],
    );
    let ipvs = installed("ipvsadm")
        && ns
            .exec("ipvsadm", &["-A", "-t", "10.96.0.1:443", "-s", "rr"])
            .is_ok_and(|o| o.status.success());
    if ipvs {
        run(&ns, "ipvsadm", &["-A", "-t", "192.0.2.7:30080", "-s", "rr"]);
    } else {
        eprintln!("IPVS not available in this kernel: virtual servers not tested");
    }

    let v4_before = saved(&ns, "iptables-nft-save");
    let v6_before = saved(&ns, "ip6tables-nft-save");
    assert!(
        v4_before.contains(":KUBE-SVC-NPX46M4PTMTKRN6Y"),
        "{v4_before}"
    );
    let out = cleanup(&ns);
    eprintln!("{out}");

    // nftables: both kube-proxy tables gone, the others intact.
    let listing = ns
        .nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"));
    assert!(!listing.contains("table ip kube-proxy {"), "{listing}");
    assert!(!listing.contains("table ip6 kube-proxy {"), "{listing}");
    assert!(listing.contains("table inet someone-else"), "{listing}");
    assert!(listing.contains("table ip kube-proxy-not"), "{listing}");
    assert!(listing.contains("tcp dport 22 accept"), "{listing}");
    for line in [
        "nftables: deleted table ip kube-proxy",
        "nftables: deleted table ip6 kube-proxy",
    ] {
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }

    // iptables-nft: exactly kube-proxy's chains and the jumps to them gone.
    let v4_after = saved(&ns, "iptables-nft-save");
    assert_eq!(v4_after, without_kube_proxy(&v4_before, KUBE_PROXY_CHAINS));
    for kept in [
        ":KUBE-FIREWALL",
        ":KUBE-KUBELET-CANARY",
        ":KUBE-IPTABLES-HINT",
        "-A INPUT -j KUBE-FIREWALL",
        "-A INPUT -s 10.1.0.0/16 -j MY-CHAIN",
        "-A POSTROUTING -s 10.99.0.0/16 ! -d 10.99.0.0/16 -j MASQUERADE",
        "-A PREROUTING -j OTHER-MANGLE",
    ] {
        assert!(v4_after.contains(kept), "{kept} gone:\n{v4_after}");
    }
    assert!(!v4_after.contains("KUBE-SERVICES"), "{v4_after}");
    let v6_after = saved(&ns, "ip6tables-nft-save");
    assert_eq!(
        v6_after,
        without_kube_proxy(
            &v6_before,
            &[("nat", "KUBE-SERVICES"), ("nat", "KUBE-SVC-ABC")]
        )
    );
    assert!(v6_after.contains("-A PREROUTING -j OTHER6"), "{v6_after}");
    for (table, chain) in KUBE_PROXY_CHAINS {
        let line = format!("iptables-nft {table}: deleted chain {chain}");
        assert!(out.lines().any(|l| l == line), "{line:?} not in:\n{out}");
    }
    assert!(
        out.contains("iptables-nft nat: deleted rule -A PREROUTING -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES"),
        "{out}"
    );
    assert!(
        out.contains("ip6tables-nft nat: deleted chain KUBE-SVC-ABC"),
        "{out}"
    );
    assert!(
        !out.contains("KUBE-FIREWALL") && !out.contains("KUBE-KUBELET-CANARY"),
        "{out}"
    );

    // iptables-legacy: the same.
    if legacy {
        let after = saved(&ns, "iptables-legacy-save");
        assert!(
            !after.contains("KUBE-SERVICES") && !after.contains("KUBE-PROXY-CANARY"),
            "{after}"
        );
        assert!(
            after.contains(":KUBE-FIREWALL")
                && after.contains("-A INPUT -s 10.1.0.0/16 -j MY-CHAIN"),
            "{after}"
        );
        assert!(
            out.contains("iptables-legacy nat: deleted chain KUBE-SVC-NPX46M4PTMTKRN6Y"),
            "{out}"
        );
    }

    // IPVS: kube-ipvs0 gone; the virtual server on its address too, the other one kept.
    let links = run(&ns, "ip", &["-o", "link", "show"]);
    assert!(!links.contains("kube-ipvs0"), "{links}");
    assert!(
        out.lines()
            .any(|l| l == "ipvs: deleted interface kube-ipvs0"),
        "{out}"
    );
    if ipvs {
        let servers = run(&ns, "ipvsadm", &["-Sn"]);
        assert!(!servers.contains("10.96.0.1:443"), "{servers}");
        assert!(servers.contains("192.0.2.7:30080"), "{servers}");
        assert!(
            out.contains("ipvs: deleted virtual server -t 10.96.0.1:443"),
            "{out}"
        );
    }

    // Again: nothing left to remove, and other rules still there.
    let again = cleanup(&ns);
    assert_eq!(again.trim(), "nothing of kube-proxy's to remove");
    assert_eq!(saved(&ns, "iptables-nft-save"), v4_after);
}

/// Without kube-proxy's leftovers (and without our tables touched): nothing is removed.
#[test]
fn leaves_a_clean_namespace_and_our_own_tables_alone() {
    if !require_kernel() {
        return;
    }
    let ns = NetNs::new("ckp").unwrap_or_else(|e| panic!("netns: {e}"));
    ns.nft_load("table ip kube-nftproxy {\n\tchain c {\n\t\tip saddr 192.0.2.1 drop\n\t}\n}\n")
        .unwrap_or_else(|e| panic!("loading: {e}"));
    let before = ns
        .nft_list_ruleset()
        .unwrap_or_else(|e| panic!("listing: {e}"));
    let out = cleanup(&ns);
    assert_eq!(out.trim(), "nothing of kube-proxy's to remove");
    assert_eq!(
        ns.nft_list_ruleset()
            .unwrap_or_else(|e| panic!("listing: {e}")),
        before
    );
}
