//! Which addresses are the public internet: everything else is closed to Micros by default.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An IPv4 address written as IPv6 (`::ffff:127.0.0.1`) is the IPv4 address.
pub(super) fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why an address is off limits to a Micro, if it is: anything but the public internet.
pub(super) fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(ip) => forbidden_v4(ip),
        IpAddr::V6(ip) => forbidden_v6(ip),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b, c) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified (0.0.0.0/8)",
        _ if ip.is_private() => "private network",
        (169, 254, _) => "link-local (cloud metadata)",
        (100, b, _) if (64..128).contains(&b) => "shared address space (100.64.0.0/10)",
        (192, 0, 0) => "IETF protocol assignments (192.0.0.0/24)",
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => "documentation",
        (198, b, _) if b == 18 || b == 19 => "benchmarking (198.18.0.0/15)",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved or broadcast",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    let segments = ip.segments();
    Some(match segments {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        [0x64, 0xff9b, ..] => {
            // NAT64: the IPv4 address inside decides.
            let [_, _, _, _, _, _, hi, lo] = segments;
            let v4 = Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            return forbidden_v4(v4);
        }
        [s, ..] if s & 0xfe00 == 0xfc00 => "unique-local (cloud metadata)",
        [s, ..] if s & 0xffc0 == 0xfe80 => "link-local",
        [s, ..] if s & 0xff00 == 0xff00 => "multicast",
        [0x2001, 0xdb8, ..] => "documentation",
        [0, 0, 0, 0, 0, 0, _, _] => "IPv4-compatible (deprecated)",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_public_internet_is_allowed() {
        for ip in [
            "127.0.0.1",
            "127.9.9.9",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
        ] {
            assert!(forbidden(ip.parse().unwrap()).is_some(), "{ip}");
        }
        for ip in [
            "1.1.1.1",
            "93.184.216.34",
            "2606:4700:4700::1111",
            "64:ff9b::101:101",
        ] {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip}");
        }
    }
}
