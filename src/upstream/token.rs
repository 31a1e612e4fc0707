//! The upstream side of registry auth: parse `WWW-Authenticate` challenges,
//! fetch Bearer tokens from the token service, and cache them per scope until
//! shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::StatusCode;

use super::error::UpstreamError;
use super::response::{read_capped, retry_after, transport};

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// `Bearer realm=..,service=..,scope=..`: fetch a token from `realm`.
    Bearer {
        /// Token endpoint.
        realm: String,
        /// `service` parameter, if given.
        service: Option<String>,
        /// `scope` parameter, if given.
        scope: Option<String>,
    },
    /// `Basic realm=..`: send credentials directly.
    Basic,
}

/// Parses `key="value",key=value` parameters; quoted values may hold commas.
fn params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
        let k0 = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[k0..i].trim().to_ascii_lowercase();
        i += 1;
        let value = if i < b.len() && b[i] == b'"' {
            i += 1;
            let v0 = i;
            while i < b.len() && b[i] != b'"' {
                i += 1;
            }
            let v = s[v0..i.min(b.len())].to_owned();
            i += 1;
            v
        } else {
            let v0 = i.min(b.len());
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            s[v0..i.min(b.len())].trim().to_owned()
        };
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

impl Challenge {
    /// Parses a `WWW-Authenticate` value.
    pub fn parse(header: &str) -> Option<Challenge> {
        let h = header.trim();
        let (scheme, rest) = h.split_once(' ').unwrap_or((h, ""));
        match scheme.to_ascii_lowercase().as_str() {
            "bearer" => {
                let mut p = params(rest);
                Some(Challenge::Bearer {
                    realm: p.remove("realm")?,
                    service: p.remove("service"),
                    scope: p.remove("scope"),
                })
            }
            "basic" => Some(Challenge::Basic),
            _ => None,
        }
    }
}

/// A token response is a JWT or two in JSON; anything near this is not one.
const MAX_TOKEN_RESPONSE_BYTES: u64 = 1 << 20;

/// Asks the token service at `realm` for one token covering `scopes` (one
/// `scope` parameter each, as Docker Hub and wharf read them), with
/// `credentials` if configured: the token and how long to trust it.
pub(super) async fn fetch(
    http: &reqwest::Client,
    realm: &str,
    service: Option<&str>,
    scopes: &[&str],
    credentials: Option<&(String, String)>,
) -> Result<(String, Duration), UpstreamError> {
    let mut q: Vec<(&str, &str)> = scopes.iter().map(|s| ("scope", *s)).collect();
    if let Some(s) = service {
        q.push(("service", s));
    }
    let mut rb = http.get(realm).query(&q);
    if let Some((u, p)) = credentials {
        rb = rb.basic_auth(u, Some(p));
    }
    let resp = rb.send().await.map_err(transport)?;
    match resp.status() {
        s if s.is_success() => {}
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(UpstreamError::Denied(
                "the token service refused the credentials".into(),
            ));
        }
        StatusCode::TOO_MANY_REQUESTS => {
            return Err(UpstreamError::TooManyRequests {
                retry_after: retry_after(resp.headers()),
            });
        }
        s if s.is_server_error() => {
            return Err(UpstreamError::Unavailable(format!("token service: {s}")));
        }
        s => return Err(UpstreamError::Invalid(format!("token service: {s}"))),
    }
    let body = read_capped(resp, MAX_TOKEN_RESPONSE_BYTES, "token response").await?;
    parse_token_response(&body)
}

/// A token service's JSON answer: the token (`token`, or OAuth's
/// `access_token`) and how long to trust it. Upstream bytes: any input gives
/// an answer or an error, never a panic (fuzzed).
pub fn parse_token_response(body: &[u8]) -> Result<(String, Duration), UpstreamError> {
    #[derive(serde::Deserialize)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
        // A float: any number is accepted (some services send a fraction, a
        // broken one something absurd), then clamped.
        expires_in: Option<f64>,
    }
    let t: TokenResponse = serde_json::from_slice(body)
        .map_err(|e| UpstreamError::Invalid(format!("token response: {e}")))?;
    let token = t
        .token
        .or(t.access_token)
        .ok_or_else(|| UpstreamError::Invalid("token response without a token".into()))?;
    Ok((token, lifetime(t.expires_in)))
}

/// How long to trust a token whose response said `expires_in`: the spec's
/// 60 s when missing (and at least that), at most [`MAX_TOKEN_TTL`].
fn lifetime(expires_in: Option<f64>) -> Duration {
    let secs = expires_in
        .filter(|s| s.is_finite())
        .unwrap_or(60.0)
        .clamp(60.0, MAX_TOKEN_TTL.as_secs_f64());
    Duration::from_secs_f64(secs)
}

/// Tokens by scope.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// A token is renewed this long before it expires.
const EARLY: Duration = Duration::from_secs(10);

/// The longest a token is trusted, whatever lifetime the token service
/// claims: an absurd `expires_in` must neither overflow the clock arithmetic
/// nor keep a revoked token alive for years.
pub const MAX_TOKEN_TTL: Duration = Duration::from_secs(24 * 60 * 60);

impl TokenCache {
    /// A cached token for `scope` that is still good.
    pub fn get(&self, scope: &str) -> Option<String> {
        let map = self.tokens.lock().ok()?;
        let now = Instant::now();
        map.get(scope)
            .filter(|(_, until)| until.saturating_duration_since(now) > EARLY)
            .map(|(t, _)| t.clone())
    }

    /// Remembers a token for `ttl`, at most [`MAX_TOKEN_TTL`]. The expiry is
    /// computed before the lock is taken: nothing that can fail runs while
    /// the cache is locked.
    pub fn put(&self, scope: &str, token: String, ttl: Duration) {
        let now = Instant::now();
        let Some(until) = now.checked_add(ttl.min(MAX_TOKEN_TTL)) else {
            return;
        };
        if let Ok(mut map) = self.tokens.lock() {
            if map.len() > 10_000 {
                map.retain(|_, (_, until)| *until > now);
            }
            map.insert(scope.to_owned(), (token, until));
        }
    }

    /// Forgets a token the upstream refused.
    pub fn forget(&self, scope: &str) {
        if let Ok(mut map) = self.tokens.lock() {
            map.remove(scope);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_docker_hub_challenge() {
        let c = Challenge::parse(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/nginx:pull,push""#,
        )
        .unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/nginx:pull,push".into()),
            }
        );
        assert_eq!(
            Challenge::parse(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(Challenge::parse("Negotiate"), None);
        assert_eq!(Challenge::parse("Bearer service=x"), None, "no realm");
        let c = Challenge::parse("Bearer realm=http://h/token,service=s").unwrap();
        assert!(matches!(c, Challenge::Bearer { ref realm, .. } if realm == "http://h/token"));
    }

    #[test]
    fn cache_expires_early() {
        let c = TokenCache::default();
        c.put("a", "t".into(), Duration::from_secs(300));
        assert_eq!(c.get("a").as_deref(), Some("t"));
        c.put("b", "t".into(), Duration::from_secs(5));
        assert_eq!(c.get("b"), None, "too close to expiry");
        c.forget("a");
        assert_eq!(c.get("a"), None);
    }

    #[test]
    fn announced_lifetimes_are_clamped() {
        assert_eq!(lifetime(None), Duration::from_secs(60));
        assert_eq!(lifetime(Some(-5.0)), Duration::from_secs(60));
        assert_eq!(lifetime(Some(300.0)), Duration::from_secs(300));
        assert_eq!(lifetime(Some(18446744073709551615.0)), MAX_TOKEN_TTL);
        assert_eq!(lifetime(Some(f64::MAX)), MAX_TOKEN_TTL);
        let t: serde_json::Value =
            serde_json::from_str(r#"{"token":"x","expires_in":18446744073709551615}"#).unwrap();
        assert_eq!(lifetime(t["expires_in"].as_f64()), MAX_TOKEN_TTL);
    }

    #[test]
    fn absurd_lifetimes_are_clamped_not_overflowed() {
        let c = TokenCache::default();
        c.put("max", "t".into(), Duration::MAX);
        c.put("secs", "u".into(), Duration::from_secs(u64::MAX));
        assert_eq!(c.get("max").as_deref(), Some("t"));
        assert_eq!(c.get("secs").as_deref(), Some("u"));
        let map = c.tokens.lock().unwrap();
        let until = map["max"].1;
        assert!(until <= Instant::now() + MAX_TOKEN_TTL, "clamped to a day");
        drop(map);
        // The cache still works (a panic under the lock would have poisoned it).
        c.put("later", "v".into(), Duration::from_secs(300));
        assert_eq!(c.get("later").as_deref(), Some("v"));
    }
}
