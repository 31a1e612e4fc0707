//! `http.*` → `[server]`: address, TLS, public URL, drain timeout; the rest
//! (headers, debug server, prefix, ...) is listed with the reason.

use std::net::SocketAddr;

use super::draft::{Draft, comment, kv, kv_note};
use super::duration;
use super::tree::Node;

/// registry:2's listen address when `http.addr` is not set.
const REGISTRY_DEFAULT_ADDR: &str = ":5000";

/// Maps and removes the `http` keys of `root`.
pub(super) fn map(root: &mut Node, d: &mut Draft) {
    let addr = root.take_str("http.addr");
    let written = addr.as_deref().unwrap_or(REGISTRY_DEFAULT_ADDR);
    match listen(written) {
        Some(a) => d.server.push(kv_note(
            "listen",
            &a.to_string(),
            &format!("http.addr {written:?}"),
        )),
        None => {
            d.server.push(kv("listen", "0.0.0.0:5000"));
            d.unmapped(
                "http.addr",
                &format!(
                    "{written:?} is not an IP:port wharf can bind (host names are not \
                     resolved); listen is 0.0.0.0:5000 above, change it to the address you meant"
                ),
            );
        }
    }
    if let Some(net) = root.take_str("http.net") {
        if net != "tcp" {
            d.unmapped(
                "http.net",
                &format!("{net:?}: wharf listens on TCP only (put a reverse proxy on the socket)"),
            );
        }
    }
    let cert = root.take_str("http.tls.certificate");
    let key = root.take_str("http.tls.key");
    match (cert, key) {
        (Some(c), Some(k)) => {
            d.server
                .push(kv_note("tls_cert", &c, "http.tls.certificate (PEM)"));
            d.server.push(kv_note("tls_key", &k, "http.tls.key"));
            d.server.extend(comment(
                "wharf re-reads both on SIGHUP: a renewed certificate needs no restart.",
            ));
        }
        (Some(_), None) | (None, Some(_)) => d.unmapped(
            "http.tls",
            "only one of certificate and key is set; wharf needs both for HTTPS (registry:2 \
             would not start either)",
        ),
        (None, None) => {}
    }
    if let Some(host) = root.take_str("http.host") {
        if host.starts_with("http://") || host.starts_with("https://") {
            d.server.push(kv_note("public_url", &host, "http.host"));
            d.server.extend(comment(
                "Only where an absolute URL is needed; without it Location headers are\n\
                 relative, which suits a reverse proxy better.",
            ));
        } else {
            d.unmapped(
                "http.host",
                &format!("{host:?} is not an http:// or https:// URL (public_url needs one)"),
            );
        }
    }
    if let Some(rel) = root.take("http.relativeurls") {
        if !rel.is_true() {
            d.server.extend(comment(
                "http.relativeurls = false: wharf's Location headers are relative unless\n\
                 public_url is set, which then makes them absolute.",
            ));
        }
    }
    if let Some(t) = root.take_str("http.draintimeout") {
        match duration::from_go(&t) {
            Some(w) => d.server.push(kv_note(
                "drain_timeout",
                &w,
                &format!("http.draintimeout {t:?}"),
            )),
            None => d.unmapped(
                "http.draintimeout",
                &format!("{t:?} is not a Go duration this tool reads; set drain_timeout by hand"),
            ),
        }
    }
    if root.take("http.secret").is_some() {
        d.unmapped(
            "http.secret",
            "not needed: wharf keeps upload state in its own index, nothing is signed for \
             clients to carry between requests (the value is not copied here)",
        );
    }
    if let Some(Node::Map(headers)) = root.take("http.headers") {
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        d.unmapped(
            "http.headers",
            &format!(
                "{}: wharf sends no configurable response headers; add them in a reverse proxy \
                 in front of it (nginx add_header) if you need them",
                names.join(", ")
            ),
        );
    }
    if root.take("http.debug").is_some() {
        d.unmapped(
            "http.debug",
            "wharf has no separate debug listener: /metrics (Prometheus), /healthz and /readyz \
             are on its main address",
        );
    }
    if root.take("http.http2").is_some() {
        d.unmapped(
            "http.http2",
            "wharf always offers HTTP/2 (ALPN on TLS) beside HTTP/1.1",
        );
    }
    if root.take("http.prefix").is_some() {
        d.unmapped(
            "http.prefix",
            "wharf serves the API at /v2/ only; strip the prefix in a reverse proxy",
        );
    }
    if root.take("http.tls.clientcas").is_some() {
        d.unmapped(
            "http.tls.clientcas",
            "wharf does not verify client certificates; use htpasswd users (or mTLS in a \
             reverse proxy)",
        );
    }
    if root.take("http.tls.letsencrypt").is_some() {
        d.unmapped(
            "http.tls.letsencrypt",
            "wharf does not fetch certificates; let certbot (or similar) write the PEM files \
             named in tls_cert/tls_key and send SIGHUP after renewal",
        );
    }
    if root.take("http.tls.minimumtls").is_some() {
        d.unmapped(
            "http.tls.minimumtls",
            "not configurable: wharf speaks TLS 1.2 and 1.3 only",
        );
    }
}

/// `:5000` → `0.0.0.0:5000` (all interfaces, as Go reads it), `localhost:P`
/// → `127.0.0.1:P`; otherwise an `IP:port`.
fn listen(addr: &str) -> Option<SocketAddr> {
    let addr = addr.trim();
    if let Some(port) = addr.strip_prefix(':') {
        return format!("0.0.0.0:{port}").parse().ok();
    }
    if let Some(port) = addr.strip_prefix("localhost:") {
        return format!("127.0.0.1:{port}").parse().ok();
    }
    addr.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::listen;

    #[test]
    fn go_listen_addresses() {
        assert_eq!(listen(":5000").unwrap().to_string(), "0.0.0.0:5000");
        assert_eq!(listen("localhost:80").unwrap().to_string(), "127.0.0.1:80");
        assert_eq!(listen("[::]:443").unwrap().to_string(), "[::]:443");
        assert_eq!(
            listen("10.0.0.1:5000").unwrap().to_string(),
            "10.0.0.1:5000"
        );
        assert!(listen("registry.lan:5000").is_none());
    }
}
