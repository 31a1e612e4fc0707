//! The upstream side of registry auth: parse `WWW-Authenticate` challenges and
//! cache Bearer tokens per scope until shortly before they expire.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

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

/// Tokens by scope.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<String, (String, Instant)>>,
}

/// A token is renewed this long before it expires.
const EARLY: Duration = Duration::from_secs(10);
/// Longest a token is cached, whatever `expires_in` says: the value is the upstream's
/// u64, and `Instant + Duration` panics past the clock's range.
const MAX_TTL: Duration = Duration::from_secs(86_400);

impl TokenCache {
    /// A cached token for `scope` that is still good.
    pub fn get(&self, scope: &str) -> Option<String> {
        let map = self.tokens.lock().ok()?;
        map.get(scope)
            .filter(|(_, until)| *until > Instant::now() + EARLY)
            .map(|(t, _)| t.clone())
    }

    /// Remembers a token for `ttl` (at most a day).
    pub fn put(&self, scope: &str, token: String, ttl: Duration) {
        let ttl = ttl.min(MAX_TTL);
        if let Ok(mut map) = self.tokens.lock() {
            if map.len() > 10_000 {
                let now = Instant::now();
                map.retain(|_, (_, until)| *until > now);
            }
            map.insert(scope.to_owned(), (token, Instant::now() + ttl));
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
    fn cache_takes_any_ttl_an_upstream_sends() {
        // `expires_in` comes from the token service's JSON: a u64 of any size.
        let c = TokenCache::default();
        c.put("a", "t".into(), Duration::from_secs(u64::MAX));
        assert_eq!(c.get("a").as_deref(), Some("t"));
    }
}
