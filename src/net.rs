//! Client addresses: the [`ClientAddr`] every per-client limit keys on, and the
//! address ranges (CIDR) of `[server] trusted_proxies`, parsed once from the
//! config and asked on every request whether the TCP peer is a trusted proxy.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// The client of one request, as the HTTP layer established it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientAddr {
    /// The address limits and logs use.
    pub ip: IpAddr,
    /// A direct loopback connection carrying no forwarding headers: the only
    /// kind that gets loopback privileges.
    pub loopback: bool,
}

impl ClientAddr {
    /// The key per-client limits count under: the address, or for IPv6 its /64
    /// (one host usually holds a whole /64 and could pick a fresh address for
    /// every request).
    pub fn limit_key(&self) -> IpAddr {
        match self.ip {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & (u128::MAX << 64);
                IpAddr::V6(std::net::Ipv6Addr::from(bits))
            }
            v4 => v4,
        }
    }
}

/// An address range such as `10.0.0.0/8`, `127.0.0.1/32` or `fd00::/8`; a bare
/// address is the range of that one address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl Cidr {
    /// Wider than a /8 (IPv4) or a /32 (IPv6): more than proxies live there.
    pub fn is_wide(&self) -> bool {
        match self.addr {
            IpAddr::V4(_) => self.prefix < 8,
            IpAddr::V6(_) => self.prefix < 32,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || format!("{s:?} is not an address range like \"10.0.0.0/8\" or \"::1/128\"");
        let (addr, prefix) = match s.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s.trim(), None),
        };
        let addr: IpAddr = addr.parse().map_err(|_| bad())?;
        let addr = addr.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(bad)?,
        };
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl<'de> serde::Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn limits_key_ipv6_clients_by_their_64() {
        let a = ClientAddr {
            ip: ip("2001:db8:1:2:aaaa::1"),
            loopback: false,
        };
        let b = ClientAddr {
            ip: ip("2001:db8:1:2:bbbb::9"),
            loopback: false,
        };
        let c = ClientAddr {
            ip: ip("2001:db8:1:3::1"),
            loopback: false,
        };
        assert_eq!(a.limit_key(), b.limit_key());
        assert_ne!(a.limit_key(), c.limit_key());
        let v4 = ClientAddr {
            ip: ip("10.1.2.3"),
            loopback: false,
        };
        assert_eq!(v4.limit_key(), ip("10.1.2.3"));
    }

    #[test]
    fn ranges() {
        let c: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(c.contains(ip("10.1.200.3")));
        assert!(!c.contains(ip("10.2.0.1")));
        assert!(c.contains(ip("::ffff:10.1.0.9")), "mapped v4");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::1")), "v4 range, v6 address");
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!("::1/128".parse::<Cidr>().unwrap().contains(ip("::1")));
        for bad in ["", "10.0.0.0/33", "::/129", "example.com/8", "10.0.0.0/x"] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }
}
