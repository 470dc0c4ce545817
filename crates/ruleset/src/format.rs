//! nft's spellings of values: marks, durations, priorities, prefix lists.

use crate::types::{ChainType, Hook};
use ipnet::IpNet;
use std::net::IpAddr;

/// A mark as nft prints it: `0x00004000`.
pub(crate) fn hex_mark(mark: u32) -> String {
    format!("0x{mark:08x}")
}

/// A duration in seconds as nft prints it: `3h`, `10m`, `1m30s`, `1d`.
pub(crate) fn duration(seconds: u32) -> String {
    if seconds == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let mut rest = seconds;
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// A base chain priority as nft prints it: a standard name, a name with an offset of at most
/// 10, or the number.
pub(crate) fn priority(kind: ChainType, hook: Hook, priority: i32) -> String {
    let _ = kind;
    let mut named = vec![
        ("raw", -300),
        ("mangle", -150),
        ("filter", 0),
        ("security", 50),
    ];
    match hook {
        Hook::Prerouting => named.push(("dstnat", -100)),
        Hook::Postrouting => named.push(("srcnat", 100)),
        _ => {}
    }
    for (name, value) in named {
        let offset = priority - value;
        match offset {
            0 => return name.to_owned(),
            1..=10 => return format!("{name} + {offset}"),
            -10..=-1 => return format!("{name} - {}", -offset),
            _ => {}
        }
    }
    priority.to_string()
}

/// Prefixes merged and sorted as nft keeps them in an interval set.
pub(crate) fn canonical_cidrs(cidrs: &[IpNet]) -> Vec<IpNet> {
    IpNet::aggregate(&cidrs.to_vec())
}

/// A prefix as nft prints it: a host prefix is a bare address.
fn prefix(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

/// A list of prefixes as nft prints it in a rule: one bare prefix, or `{ a, b }`.
/// `b` starts right after `a` ends.
fn adjacent(a: &IpNet, b: &IpNet) -> bool {
    match (a.broadcast(), b.network()) {
        (IpAddr::V4(end), IpAddr::V4(start)) => {
            u32::from(end).checked_add(1) == Some(u32::from(start))
        }
        (IpAddr::V6(end), IpAddr::V6(start)) => {
            u128::from(end).checked_add(1) == Some(u128::from(start))
        }
        _ => false,
    }
}

pub(crate) fn cidr_set(cidrs: &[IpNet]) -> String {
    let nets = canonical_cidrs(cidrs);
    match nets.as_slice() {
        [one] => prefix(one),
        many => {
            // nft merges adjacent prefixes of a set into one interval and lists it as a range.
            let mut runs: Vec<Vec<&IpNet>> = Vec::new();
            for net in many {
                match runs.last_mut() {
                    Some(run) if run.last().is_some_and(|last| adjacent(last, net)) => {
                        run.push(net)
                    }
                    _ => runs.push(vec![net]),
                }
            }
            let items: Vec<String> = runs
                .iter()
                .map(|run| match run.as_slice() {
                    [one] => prefix(one),
                    [first, .., last] => format!("{}-{}", first.network(), last.broadcast()),
                    [] => String::new(),
                })
                .collect();
            format!("{{ {} }}", items.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_as_nft_prints_them() {
        assert_eq!(duration(10_800), "3h");
        assert_eq!(duration(600), "10m");
        assert_eq!(duration(90), "1m30s");
        assert_eq!(duration(86_400), "1d");
        assert_eq!(duration(3_661), "1h1m1s");
    }

    #[test]
    fn priorities_as_nft_prints_them() {
        assert_eq!(priority(ChainType::Nat, Hook::Prerouting, -100), "dstnat");
        assert_eq!(
            priority(ChainType::Filter, Hook::Prerouting, -110),
            "dstnat - 10"
        );
        assert_eq!(priority(ChainType::Filter, Hook::Output, -110), "-110");
        assert_eq!(priority(ChainType::Nat, Hook::Output, -100), "-100");
        assert_eq!(priority(ChainType::Filter, Hook::Input, 0), "filter");
        assert_eq!(priority(ChainType::Nat, Hook::Postrouting, 100), "srcnat");
        // Our nat chains, one step before kube-proxy's (nft has no `dstnat` on output).
        assert_eq!(
            priority(ChainType::Nat, Hook::Prerouting, -101),
            "dstnat - 1"
        );
        assert_eq!(priority(ChainType::Nat, Hook::Output, -101), "-101");
        assert_eq!(
            priority(ChainType::Nat, Hook::Postrouting, 99),
            "srcnat - 1"
        );
    }

    #[test]
    fn cidr_lists_are_merged_sorted_and_bare_when_single() {
        let nets: Vec<IpNet> = ["10.245.0.0/16", "10.244.0.0/16", "5.6.7.8/32"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        assert_eq!(cidr_set(&nets), "{ 5.6.7.8, 10.244.0.0/15 }");
        assert_eq!(cidr_set(&nets[..1]), "10.245.0.0/16");
        // Adjacent prefixes that do not merge into one prefix are one range, as nft lists it.
        let adjacent: Vec<IpNet> = ["128.0.0.0/2", "192.0.0.0/3", "10.0.0.0/8"]
            .iter()
            .map(|s| s.parse().expect("cidr"))
            .collect();
        assert_eq!(
            cidr_set(&adjacent),
            "{ 10.0.0.0/8, 128.0.0.0-223.255.255.255 }"
        );
    }
}
