//! Lenient parsing of addresses as the API server stores them.

use std::net::{IpAddr, Ipv4Addr};

/// Parses an IP address the way Kubernetes' `ParseIPSloppy` does: IPv4 octets may carry leading
/// zeros and are read as decimal (`010.096.000.001` is `10.96.0.1`). Surrounding whitespace is
/// ignored. Returns `None` for anything that is not an address.
pub fn parse_ip_sloppy(text: &str) -> Option<IpAddr> {
    let text = text.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(ip);
    }
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    if parts.next().is_some() {
        return None;
    }
    Some(IpAddr::V4(Ipv4Addr::from(octets)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_zeros_are_decimal() {
        assert_eq!(parse_ip_sloppy("010.180.00.001"), "10.180.0.1".parse().ok());
    }

    #[test]
    fn ipv6_and_whitespace() {
        assert_eq!(parse_ip_sloppy(" fd00::1 "), "fd00::1".parse().ok());
    }

    #[test]
    fn rejects_non_addresses() {
        for bad in [
            "",
            "10.96.0.999",
            "10.96.0",
            "10.96.0.1.2",
            "not-an-ip",
            "1.2.3.+4",
            "None",
        ] {
            assert_eq!(parse_ip_sloppy(bad), None, "{bad}");
        }
    }
}
