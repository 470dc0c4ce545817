//! Binding the node's HTTP listeners (`/healthz`, `/metrics`) the way kube-proxy's bind.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener};

/// Binds a TCP listener on `address`. The IPv4 wildcard `0.0.0.0` means every address of both
/// families, as it does for kube-proxy (Go listens on a dual-stack `[::]` socket for it), so a
/// load balancer probing the node's IPv6 address gets an answer too: it binds `[::]` accepting
/// IPv4-mapped addresses, and falls back to `0.0.0.0` alone when that is not possible (no
/// IPv6 on the node, or `net.ipv6.bindv6only=1`). Any other address is bound as it is.
pub fn bind_tcp(address: SocketAddr) -> io::Result<TcpListener> {
    if address.ip() == IpAddr::V4(Ipv4Addr::UNSPECIFIED) {
        let any = SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), address.port());
        if let Ok(listener) = TcpListener::bind(any) {
            // `only_v6` is deprecated together with `set_only_v6` (which cannot work after
            // bind); as a getter (getsockopt IPV6_V6ONLY) it is fine.
            #[allow(deprecated)]
            let dual_stack = listener.only_v6().ok() == Some(false);
            if dual_stack {
                return Ok(listener);
            }
        }
    }
    TcpListener::bind(address)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpStream;
    use std::time::Duration;

    fn reaches(ip: IpAddr, port: u16) -> bool {
        TcpStream::connect_timeout(&SocketAddr::new(ip, port), Duration::from_secs(2)).is_ok()
    }

    #[test]
    fn the_ipv4_wildcard_answers_both_families_where_the_host_has_ipv6() {
        let listener = bind_tcp("0.0.0.0:0".parse().expect("addr")).expect("bind");
        let local = listener.local_addr().expect("local address");
        assert!(reaches(Ipv4Addr::LOCALHOST.into(), local.port()));
        let host_has_ipv6 = TcpListener::bind("[::1]:0").is_ok();
        if host_has_ipv6 {
            assert_eq!(local.ip(), IpAddr::V6(Ipv6Addr::UNSPECIFIED), "{local}");
            assert!(reaches(Ipv6Addr::LOCALHOST.into(), local.port()));
        }
    }

    #[test]
    fn other_addresses_are_bound_as_they_are() {
        let listener = bind_tcp("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let local = listener.local_addr().expect("local address");
        assert_eq!(local.ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
        if TcpListener::bind("[::1]:0").is_ok() {
            assert!(!reaches(Ipv6Addr::LOCALHOST.into(), local.port()));
        }
    }
}
