//! Who the client is: the TCP peer, or, when the peer is a trusted reverse proxy
//! (`[server] trusted_proxies`), the client it forwards for. Every per-client limit
//! (failed logins, uploads, downloads) keys on this address, and loopback
//! privileges (writes without users, the admin API) go only to a direct loopback
//! peer: a forwarded request is never loopback, whoever forwarded it.

use std::net::{IpAddr, SocketAddr};

use http::HeaderMap;

use crate::net::{Cidr, ClientAddr};

/// One hop of a `Forwarded`/`X-Forwarded-For` list; None when unparseable
/// (`unknown`, an obfuscated identifier, garbage).
fn parse_hop(s: &str) -> Option<IpAddr> {
    let s = s.trim().trim_matches('"');
    if let Ok(ip) = s.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    // `[v6]:port`, `[v6]` or `v4:port`.
    if let Some(rest) = s.strip_prefix('[') {
        return rest
            .split(']')
            .next()?
            .parse::<IpAddr>()
            .ok()
            .map(|ip| ip.to_canonical());
    }
    let (host, _port) = s.rsplit_once(':')?;
    host.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

/// The client hops a request claims, oldest first: `Forwarded` (RFC 7239) or
/// `X-Forwarded-For`; all header lines, in order. None when there are none, or
/// when both headers are present: a proxy appends to one of them and passes
/// the other on from the client untouched (nginx with the README's
/// `X-Forwarded-For` line passes a client's `Forwarded`), and which one it
/// wrote cannot be told, so neither is believed and the client is the proxy.
fn claimed_hops(headers: &HeaderMap) -> Option<Vec<Option<IpAddr>>> {
    if headers.contains_key("forwarded") && headers.contains_key("x-forwarded-for") {
        return None;
    }
    let forwarded: Vec<&str> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if !forwarded.is_empty() {
        let mut hops = Vec::new();
        for element in forwarded.iter().flat_map(|v| v.split(',')) {
            let for_value = element.split(';').find_map(|pair| {
                let (k, v) = pair.split_once('=')?;
                k.trim().eq_ignore_ascii_case("for").then_some(v)
            });
            hops.push(for_value.and_then(parse_hop));
        }
        return Some(hops);
    }
    let xff: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    if xff.is_empty() {
        return None;
    }
    Some(
        xff.iter()
            .flat_map(|v| v.split(','))
            .filter(|h| !h.trim().is_empty())
            .map(parse_hop)
            .collect(),
    )
}

/// Whether the request carries any forwarding header (then it is not loopback).
fn is_forwarded(headers: &HeaderMap) -> bool {
    ["forwarded", "x-forwarded-for", "x-real-ip"]
        .iter()
        .any(|h| headers.contains_key(*h))
}

/// The client of a request from `peer` with `headers`. Hops are walked from the
/// nearest: each trusted proxy's claim about the hop before it is believed, and
/// the first address that is not a trusted proxy is the client. An unparseable
/// hop stops the walk at the proxy that reported it.
pub fn client_addr(peer: SocketAddr, headers: &HeaderMap, trusted: &[Cidr]) -> ClientAddr {
    let peer_ip = peer.ip().to_canonical();
    let forwarded = is_forwarded(headers);
    let is_trusted = |ip: IpAddr| trusted.iter().any(|c| c.contains(ip));
    // A declared proxy speaks for others even when it forgets to say so (a
    // bare `proxy_pass` adds no forwarding header): it is never loopback.
    let loopback = peer_ip.is_loopback() && !forwarded && !is_trusted(peer_ip);
    if !is_trusted(peer_ip) {
        return ClientAddr {
            ip: peer_ip,
            loopback,
        };
    }
    let Some(hops) = claimed_hops(headers) else {
        return ClientAddr {
            ip: peer_ip,
            loopback,
        };
    };
    let mut client = peer_ip;
    for hop in hops.iter().rev() {
        match hop {
            Some(ip) => {
                client = *ip;
                if !is_trusted(*ip) {
                    break;
                }
            }
            None => break,
        }
    }
    ClientAddr {
        ip: client,
        loopback,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn cidrs(s: &[&str]) -> Vec<Cidr> {
        s.iter().map(|c| c.parse().unwrap()).collect()
    }

    fn peer(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn direct_clients_are_the_peer() {
        let c = client_addr(peer("127.0.0.1:1"), &HeaderMap::new(), &[]);
        assert_eq!(c.ip, "127.0.0.1".parse::<IpAddr>().unwrap());
        assert!(c.loopback);
        let c = client_addr(peer("[::ffff:192.168.1.5]:1"), &HeaderMap::new(), &[]);
        assert_eq!(c.ip, "192.168.1.5".parse::<IpAddr>().unwrap());
        assert!(!c.loopback);
    }

    #[test]
    fn forwarding_headers_from_untrusted_peers_are_ignored_but_cost_loopback() {
        let h = headers(&[("x-forwarded-for", "10.9.9.9")]);
        let c = client_addr(peer("127.0.0.1:1"), &h, &[]);
        assert_eq!(c.ip, "127.0.0.1".parse::<IpAddr>().unwrap(), "not believed");
        assert!(!c.loopback, "a forwarded request is never loopback");
        let c = client_addr(peer("192.168.1.7:1"), &h, &cidrs(&["127.0.0.1/32"]));
        assert_eq!(c.ip, "192.168.1.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn trusted_proxies_name_the_client() {
        let t = cidrs(&["127.0.0.1/32", "10.0.0.0/8"]);
        // nginx appends the address it saw to what the client sent.
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 192.168.1.20, 10.0.0.2")]);
        let c = client_addr(peer("127.0.0.1:1"), &h, &t);
        assert_eq!(c.ip, "192.168.1.20".parse::<IpAddr>().unwrap());
        assert!(!c.loopback);
        // Several header lines are one list.
        let h = headers(&[
            ("x-forwarded-for", "192.168.1.21"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        assert_eq!(
            client_addr(peer("127.0.0.1:1"), &h, &t).ip,
            "192.168.1.21".parse::<IpAddr>().unwrap()
        );
        // A forwarded loopback client is not loopback.
        let h = headers(&[("x-forwarded-for", "127.0.0.1")]);
        let c = client_addr(peer("127.0.0.1:1"), &h, &t);
        assert!(!c.loopback);
        // Garbage stops the walk at the proxy that reported it.
        let h = headers(&[("x-forwarded-for", "1.2.3.4, unknown")]);
        assert_eq!(
            client_addr(peer("127.0.0.1:1"), &h, &t).ip,
            "127.0.0.1".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn a_trusted_proxy_is_never_loopback_even_without_headers() {
        let t = cidrs(&["127.0.0.1/32"]);
        let c = client_addr(peer("127.0.0.1:1"), &HeaderMap::new(), &t);
        assert!(!c.loopback);
        let c = client_addr(peer("[::1]:1"), &HeaderMap::new(), &t);
        assert!(c.loopback, "another loopback address that is not the proxy");
    }

    #[test]
    fn rfc7239_forwarded() {
        let t = cidrs(&["127.0.0.0/8"]);
        let h = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http;by=203.0.113.43, for=\"[2001:db8:cafe::17]:4711\"",
        )]);
        assert_eq!(
            client_addr(peer("127.0.0.1:1"), &h, &t).ip,
            "2001:db8:cafe::17".parse::<IpAddr>().unwrap()
        );
        let h = headers(&[("forwarded", "for=192.0.2.60:8080")]);
        assert_eq!(
            client_addr(peer("127.0.0.1:1"), &h, &t).ip,
            "192.0.2.60".parse::<IpAddr>().unwrap()
        );
        // A bracketed IPv4-mapped hop is its IPv4 address (one limit key each).
        let h = headers(&[("forwarded", "for=\"[::ffff:192.0.2.61]:1\"")]);
        assert_eq!(
            client_addr(peer("127.0.0.1:1"), &h, &t).ip,
            "192.0.2.61".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn both_headers_mean_neither_is_believed() {
        let t = cidrs(&["127.0.0.0/8"]);
        // The proxy appended to one; the client wrote the other. Either way
        // round, the client cannot pick its address.
        for (xff, fwd) in [
            ("192.168.1.20", "for=10.9.9.9"),
            ("10.9.9.9", "for=192.168.1.20"),
        ] {
            let h = headers(&[("x-forwarded-for", xff), ("forwarded", fwd)]);
            let c = client_addr(peer("127.0.0.1:1"), &h, &t);
            assert_eq!(c.ip, "127.0.0.1".parse::<IpAddr>().unwrap());
            assert!(!c.loopback);
        }
    }
}
