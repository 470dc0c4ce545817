//! `kube-nftproxy cleanup --kube-proxy`: removes what each kube-proxy mode leaves in the kernel
//! of the network namespace it runs in, and nothing else:
//!
//! * nftables mode: the tables `ip kube-proxy` and `ip6 kube-proxy`;
//! * iptables mode (and the iptables part of ipvs mode): in the `nat`, `filter` and `mangle`
//!   tables of IPv4 and IPv6, every `KUBE-*` chain kube-proxy makes and every rule of another
//!   chain that jumps (`-j`) or goes (`-g`) to one, through iptables-nft and, where its
//!   programs are installed, iptables-legacy. The chains kubelet owns stay
//!   ([`KUBELET_CHAINS`]), with the rules that jump to them. Each table is changed by one
//!   `iptables-restore --noflush` transaction;
//! * ipvs mode: the `kube-ipvs0` dummy interface and the IPVS virtual servers on its addresses
//!   (ClusterIPs, external and LoadBalancer IPs). Virtual servers on other addresses cannot be
//!   told apart from other users of IPVS: they are listed as left in place.
//!
//! Every removal is reported as one line; a part whose program is missing is skipped with a
//! note; a part that fails is reported and the others still run.

use ruleset::{Op, Transaction};
use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The name of kube-proxy's nftables tables.
pub const NFT_TABLE: &str = "kube-proxy";
/// The IPVS mode's dummy interface.
pub const IPVS_INTERFACE: &str = "kube-ipvs0";
/// The iptables tables kube-proxy writes to.
pub const TABLES: [&str; 3] = ["nat", "filter", "mangle"];
/// `KUBE-*` chains that belong to kubelet, not kube-proxy: `(table, chain)`.
pub const KUBELET_CHAINS: &[(&str, &str)] = &[
    ("nat", "KUBE-KUBELET-CANARY"),
    ("filter", "KUBE-KUBELET-CANARY"),
    ("mangle", "KUBE-KUBELET-CANARY"),
    // Drops connections to 127.0.0.0/8 from outside (route_localnet protection).
    ("filter", "KUBE-FIREWALL"),
    // Tells iptables wrappers which iptables kubelet uses.
    ("mangle", "KUBE-IPTABLES-HINT"),
    // Older kubelets' drop mark (matched, not jumped to, by kubelet's KUBE-FIREWALL).
    ("nat", "KUBE-MARK-DROP"),
];

/// What was removed, what was skipped, what failed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Report {
    /// One line per removed table, chain, rule, interface or virtual server.
    pub removed: Vec<String>,
    /// Parts skipped (program not installed) or left in place, and why.
    pub notes: Vec<String>,
    /// Parts that failed.
    pub errors: Vec<String>,
}

/// Removes kube-proxy's leftovers from the calling process's network namespace; nftables
/// tables through `backend`.
pub fn cleanup(backend: &dyn nft::Backend) -> Report {
    let mut report = Report::default();
    nftables(backend, &mut report);
    for variant in ["nft", "legacy"] {
        for family in ["iptables", "ip6tables"] {
            iptables(family, variant, &mut report);
        }
    }
    ipvs(&mut report);
    report
}

/// Deletes the `ip` and `ip6` `kube-proxy` tables.
fn nftables(backend: &dyn nft::Backend, report: &mut Report) {
    let current = match backend.read(NFT_TABLE) {
        Ok(current) => current,
        Err(e) => {
            report
                .errors
                .push(format!("reading the nftables tables {NFT_TABLE}: {e}"));
            return;
        }
    };
    let tables: Vec<_> = current.tables.keys().cloned().collect();
    if tables.is_empty() {
        return;
    }
    let txn = Transaction {
        ops: tables
            .iter()
            .map(|id| Op::DeleteTable { table: id.clone() })
            .collect(),
    };
    match backend.apply(&txn) {
        Ok(()) => report.removed.extend(
            tables
                .iter()
                .map(|id| format!("nftables: deleted table {id}")),
        ),
        Err(e) => report
            .errors
            .push(format!("deleting the nftables tables {NFT_TABLE}: {e}")),
    }
}

/// Where a program is: `$PATH`, then the sbin directories (not always on a user's path).
fn program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Runs `program args`, feeding `stdin`; its standard output, or an error with its stderr.
fn run(program: &Path, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
    let shown = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("{shown}: {e}"))?;
    if let (Some(text), Some(mut input)) = (stdin, child.stdin.take()) {
        input
            .write_all(text.as_bytes())
            .map_err(|e| format!("{shown}: writing its input: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| format!("{shown}: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "{shown}: {} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The `KUBE-*` chains and jump rules of one table of an `iptables-save` dump, and the
/// `iptables-restore --noflush` input that removes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TablePlan {
    /// `nat`, `filter` or `mangle`.
    pub table: String,
    /// kube-proxy's chains, flushed then deleted.
    pub chains: Vec<String>,
    /// Rules of the other chains that jump to them, as saved (`-A CHAIN …`).
    pub jumps: Vec<String>,
}

impl TablePlan {
    /// The input of `iptables-restore --noflush`: flush kube-proxy's chains (which drops their
    /// references to each other), delete the jumps to them, delete them; one transaction.
    pub fn restore_input(&self) -> String {
        let mut text = format!("*{}\n", self.table);
        for chain in &self.chains {
            text.push_str(&format!(":{chain} - [0:0]\n"));
        }
        for rule in &self.jumps {
            if let Some(spec) = rule.strip_prefix("-A ") {
                text.push_str(&format!("-D {spec}\n"));
            }
        }
        for chain in &self.chains {
            text.push_str(&format!("-X {chain}\n"));
        }
        text.push_str("COMMIT\n");
        text
    }
}

/// Splits a saved rule into words, as iptables-restore does (double quotes group).
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    let mut quoted = false;
    let mut in_word = false;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                quoted = !quoted;
                in_word = true;
            }
            '\\' if quoted => {
                if let Some(next) = chars.next() {
                    word.push(next);
                }
            }
            c if c.is_whitespace() && !quoted => {
                if in_word {
                    out.push(std::mem::take(&mut word));
                    in_word = false;
                }
            }
            c => {
                word.push(c);
                in_word = true;
            }
        }
    }
    if in_word {
        out.push(word);
    }
    out
}

/// Whether `chain` of `table` is kube-proxy's.
fn is_kube_proxy_chain(table: &str, chain: &str) -> bool {
    chain.starts_with("KUBE-") && !KUBELET_CHAINS.contains(&(table, chain))
}

/// What to remove from the `nat`, `filter` and `mangle` tables of an `iptables-save` dump
/// (tables without anything of kube-proxy's are left out).
pub fn plan(save: &str) -> Vec<TablePlan> {
    let mut plans = Vec::new();
    let mut current: Option<(String, Vec<String>, Vec<String>)> = None;
    for line in save.lines().map(str::trim) {
        if let Some(table) = line.strip_prefix('*') {
            current = Some((table.to_owned(), Vec::new(), Vec::new()));
            continue;
        }
        let Some((_, chains, rules)) = current.as_mut() else {
            continue;
        };
        if line == "COMMIT" {
            let (table, chains, rules) = current.take().unwrap_or_default();
            if let Some(plan) = table_plan(table, chains, rules) {
                plans.push(plan);
            }
        } else if let Some(declaration) = line.strip_prefix(':') {
            if let Some(chain) = declaration.split_whitespace().next() {
                chains.push(chain.to_owned());
            }
        } else if line.starts_with("-A ") {
            rules.push(line.to_owned());
        }
    }
    plans
}

fn table_plan(table: String, chains: Vec<String>, rules: Vec<String>) -> Option<TablePlan> {
    if !TABLES.contains(&table.as_str()) {
        return None;
    }
    let ours: BTreeSet<String> = chains
        .into_iter()
        .filter(|c| is_kube_proxy_chain(&table, c))
        .collect();
    let jumps: Vec<String> = rules
        .into_iter()
        .filter(|rule| {
            let words = words(rule);
            let in_ours = words.get(1).is_some_and(|chain| ours.contains(chain));
            let target = words.windows(2).find_map(|w| {
                matches!(w[0].as_str(), "-j" | "--jump" | "-g" | "--goto").then_some(&w[1])
            });
            !in_ours && target.is_some_and(|t| ours.contains(t))
        })
        .collect();
    if ours.is_empty() && jumps.is_empty() {
        return None;
    }
    Some(TablePlan {
        table,
        chains: ours.into_iter().collect(),
        jumps,
    })
}

/// Removes kube-proxy's chains from one iptables (`iptables`/`ip6tables`, `nft`/`legacy`).
fn iptables(family: &str, variant: &str, report: &mut Report) {
    let name = format!("{family}-{variant}");
    let (Some(save), Some(restore)) = (
        program(&format!("{name}-save")),
        program(&format!("{name}-restore")),
    ) else {
        report.notes.push(format!(
            "{name}: {name}-save or {name}-restore is not installed: skipped"
        ));
        return;
    };
    // Without -t: only the tables that exist are dumped (no kernel module is loaded, no
    // table created).
    let dump = match run(&save, &[], None) {
        Ok(dump) => dump,
        Err(e) => {
            report.errors.push(format!("{name}: listing: {e}"));
            return;
        }
    };
    for plan in plan(&dump) {
        match run(&restore, &["-w", "--noflush"], Some(&plan.restore_input())) {
            Ok(_) => {
                for rule in &plan.jumps {
                    report
                        .removed
                        .push(format!("{name} {}: deleted rule {rule}", plan.table));
                }
                for chain in &plan.chains {
                    report
                        .removed
                        .push(format!("{name} {}: deleted chain {chain}", plan.table));
                }
            }
            Err(e) => report.errors.push(format!(
                "{name} {}: removing kube-proxy's chains: {e}",
                plan.table
            )),
        }
    }
}

/// An IPVS virtual service from `ipvsadm -Sn`: the protocol option and `ADDRESS:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VirtualServer {
    /// `-t` (TCP), `-u` (UDP), `--sctp-service` or `-f` (firewall mark).
    pub kind: String,
    /// `10.96.0.1:443`, `[fd00::1]:53`, or a mark.
    pub address: String,
}

impl VirtualServer {
    /// The address without port and brackets (None for firewall marks).
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.address
            .parse::<std::net::SocketAddr>()
            .ok()
            .map(|a| a.ip())
    }
}

/// The virtual servers of an `ipvsadm -Sn` dump.
pub fn virtual_servers(save: &str) -> Vec<VirtualServer> {
    save.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            (words.next()? == "-A").then_some(())?;
            let kind = words.next()?;
            let address = words.next()?;
            Some(VirtualServer {
                kind: kind.to_owned(),
                address: address.to_owned(),
            })
        })
        .collect()
}

/// The addresses of `ip -o addr show dev …` output.
pub fn interface_addresses(output: &str) -> Vec<std::net::IpAddr> {
    output
        .lines()
        .filter_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            let at = words.iter().position(|w| *w == "inet" || *w == "inet6")?;
            let cidr = words.get(at + 1)?;
            cidr.split('/').next()?.parse().ok()
        })
        .collect()
}

/// Removes the IPVS virtual servers on `kube-ipvs0`'s addresses, then `kube-ipvs0`.
fn ipvs(report: &mut Report) {
    let Some(ip) = program("ip") else {
        report.notes.push(format!(
            "ip (iproute2) is not installed: {IPVS_INTERFACE} not checked"
        ));
        return;
    };
    // `ip addr show dev X` fails when X does not exist.
    let addresses = match run(&ip, &["-o", "addr", "show", "dev", IPVS_INTERFACE], None) {
        Ok(output) => interface_addresses(&output),
        Err(_) => return,
    };
    match program("ipvsadm") {
        None => report.notes.push(format!(
            "ipvsadm is not installed: IPVS virtual servers not checked (those on \
             {IPVS_INTERFACE}'s addresses stop answering with it)"
        )),
        Some(ipvsadm) => match run(&ipvsadm, &["-Sn"], None) {
            Err(e) => report
                .notes
                .push(format!("IPVS virtual servers not checked: {e}")),
            Ok(dump) => {
                for server in virtual_servers(&dump) {
                    let ours = server.ip().is_some_and(|a| addresses.contains(&a));
                    if !ours {
                        report.notes.push(format!(
                            "IPVS virtual server {} {} left in place: not on {IPVS_INTERFACE}'s \
                             addresses, so not certainly kube-proxy's (a NodePort one is; \
                             remove it with ipvsadm -D {} {})",
                            server.kind, server.address, server.kind, server.address
                        ));
                        continue;
                    }
                    match run(&ipvsadm, &["-D", &server.kind, &server.address], None) {
                        Ok(_) => report.removed.push(format!(
                            "ipvs: deleted virtual server {} {}",
                            server.kind, server.address
                        )),
                        Err(e) => report.errors.push(format!(
                            "deleting IPVS virtual server {}: {e}",
                            server.address
                        )),
                    }
                }
            }
        },
    }
    match run(&ip, &["link", "delete", "dev", IPVS_INTERFACE], None) {
        Ok(_) => report
            .removed
            .push(format!("ipvs: deleted interface {IPVS_INTERFACE}")),
        Err(e) => report
            .errors
            .push(format!("deleting interface {IPVS_INTERFACE}: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAVE: &str = r#"# Generated by iptables-nft-save v1.8.9 (nf_tables)
*mangle
:PREROUTING ACCEPT [0:0]
:KUBE-IPTABLES-HINT - [0:0]
:KUBE-KUBELET-CANARY - [0:0]
:KUBE-PROXY-CANARY - [0:0]
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:KUBE-FIREWALL - [0:0]
:KUBE-FORWARD - [0:0]
:KUBE-SERVICES - [0:0]
:MY-CHAIN - [0:0]
-A INPUT -m conntrack --ctstate NEW -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A INPUT -j KUBE-FIREWALL
-A INPUT -s 10.1.0.0/16 -j MY-CHAIN
-A FORWARD -m comment --comment "kubernetes forwarding rules" -j KUBE-FORWARD
-A KUBE-FORWARD -m conntrack --ctstate INVALID -j DROP
-A MY-CHAIN -j ACCEPT
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-MARK-MASQ - [0:0]
:KUBE-POSTROUTING - [0:0]
:KUBE-SERVICES - [0:0]
:KUBE-SVC-ABC - [0:0]
-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES
-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING
-A POSTROUTING -s 10.99.0.0/16 -j MASQUERADE
-A KUBE-SERVICES -d 10.96.0.1/32 -p tcp -m tcp --dport 443 -g KUBE-SVC-ABC
-A KUBE-SVC-ABC -j KUBE-MARK-MASQ
COMMIT
*raw
:KUBE-SOMETHING - [0:0]
COMMIT
"#;

    #[test]
    fn plans_kube_proxy_chains_and_jumps_only() {
        let plans = plan(SAVE);
        let tables: Vec<&str> = plans.iter().map(|p| p.table.as_str()).collect();
        assert_eq!(tables, ["mangle", "filter", "nat"]);
        assert_eq!(plans[0].chains, ["KUBE-PROXY-CANARY"]);
        assert!(plans[0].jumps.is_empty());
        assert_eq!(plans[1].chains, ["KUBE-FORWARD", "KUBE-SERVICES"]);
        assert_eq!(
            plans[1].jumps,
            [
                "-A INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES",
                "-A FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD",
            ]
        );
        assert_eq!(
            plans[2].chains,
            [
                "KUBE-MARK-MASQ",
                "KUBE-POSTROUTING",
                "KUBE-SERVICES",
                "KUBE-SVC-ABC"
            ]
        );
        assert_eq!(plans[2].jumps.len(), 2, "{:?}", plans[2].jumps);
        assert_eq!(
            plans[1].restore_input(),
            "*filter\n:KUBE-FORWARD - [0:0]\n:KUBE-SERVICES - [0:0]\n\
             -D INPUT -m conntrack --ctstate NEW -m comment --comment \"kubernetes service portals\" -j KUBE-SERVICES\n\
             -D FORWARD -m comment --comment \"kubernetes forwarding rules\" -j KUBE-FORWARD\n\
             -X KUBE-FORWARD\n-X KUBE-SERVICES\nCOMMIT\n"
        );
    }

    #[test]
    fn words_group_quotes() {
        assert_eq!(
            words(r#"-A INPUT -m comment --comment "a \"b\" c" -j KUBE-X"#),
            [
                "-A",
                "INPUT",
                "-m",
                "comment",
                "--comment",
                "a \"b\" c",
                "-j",
                "KUBE-X"
            ]
        );
        assert_eq!(words(r#"--comment """#), ["--comment", ""]);
    }

    #[test]
    fn ipvs_dumps() {
        let save = "-A -t 10.96.0.1:443 -s rr\n-a -t 10.96.0.1:443 -r 192.168.0.2:6443 -m -w 1\n\
                    -A -u [fd00::a]:53 -s rr\n-A -f 7 -s rr\n";
        let servers = virtual_servers(save);
        assert_eq!(servers.len(), 3);
        assert_eq!(servers[0].ip(), "10.96.0.1".parse().ok());
        assert_eq!(servers[1].ip(), "fd00::a".parse().ok());
        assert_eq!(servers[2].ip(), None);
        let addr = "5: kube-ipvs0    inet 10.96.0.1/32 scope global kube-ipvs0\\       valid_lft forever preferred_lft forever\n\
                    5: kube-ipvs0    inet6 fd00::a/128 scope global \\       valid_lft forever preferred_lft forever\n";
        assert_eq!(
            interface_addresses(addr),
            vec![
                "10.96.0.1".parse::<std::net::IpAddr>().expect("ip"),
                "fd00::a".parse().expect("ip")
            ]
        );
    }
}
