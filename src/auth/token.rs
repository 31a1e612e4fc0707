//! Bearer tokens in the Docker Hub flow: `/token` grants a signed, short-lived
//! token listing exactly the scopes the user's rules allow; registry requests
//! present it. Format: `base64url(claims JSON) "." base64url(HMAC-SHA256)`, with a
//! key made at start (tokens do not outlive the process; clients fetch new ones),
//! or the key the nodes on one bucket share (`store/shared/token_key.rs`).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::config::Action;

/// How long an issued token is valid.
pub const TOKEN_TTL_SECS: u64 = 300;
/// The `service` of challenges and tokens.
pub const SERVICE: &str = "wharf";

/// One granted (or requested) scope: `repository:NAME:pull,push`. In an issued
/// token, repository names are local names (what routing maps the requested
/// name to), so a token cannot be replayed under another spelling (`?ns=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    /// `repository` or `registry`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Repository name (or `catalog`).
    pub name: String,
    /// `pull`, `push`, `delete`, `*`.
    pub actions: Vec<String>,
}

impl Grant {
    /// Parses one scope string; names may not contain `:`, so the split is exact.
    pub fn parse(scope: &str) -> Option<Grant> {
        let (kind, rest) = scope.split_once(':')?;
        let (name, actions) = rest.rsplit_once(':')?;
        if kind.is_empty() || name.is_empty() {
            return None;
        }
        Some(Grant {
            kind: kind.to_owned(),
            name: name.to_owned(),
            actions: actions
                .split(',')
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
        })
    }

    /// The scope string form.
    pub fn scope(&self) -> String {
        format!("{}:{}:{}", self.kind, self.name, self.actions.join(","))
    }
}

/// What a token says.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// User name; empty for anonymous tokens.
    pub sub: String,
    /// Always [`SERVICE`].
    pub aud: String,
    /// Unix seconds.
    pub iat: u64,
    /// Unix seconds.
    pub exp: u64,
    /// What it grants.
    pub access: Vec<Grant>,
}

impl Claims {
    /// Whether the token grants `action` on repository `repo`.
    pub fn grants(&self, repo: &str, action: Action) -> bool {
        let want = action.to_string();
        self.access.iter().any(|a| {
            a.kind == "repository"
                && a.name == repo
                && a.actions.iter().any(|x| *x == want || x == "*")
        })
    }

    /// Whether the token grants listing the catalog (`registry:catalog:*`).
    pub fn grants_catalog(&self) -> bool {
        self.access.iter().any(|a| {
            a.kind == "registry" && a.name == "catalog" && a.actions.iter().any(|x| x == "*")
        })
    }

    /// The user, if the token is not anonymous.
    pub fn user(&self) -> Option<&str> {
        (!self.sub.is_empty()).then_some(self.sub.as_str())
    }
}

/// Why a presented token is not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TokenError {
    /// Not `payload.signature` or not base64/JSON.
    #[error("malformed token")]
    Malformed,
    /// Signature does not verify (tampered, or from another process).
    #[error("token signature is invalid")]
    BadSignature,
    /// Past its expiry.
    #[error("token has expired")]
    Expired,
}

/// Signs and verifies tokens with one key: a per-process one by default.
pub struct TokenSigner {
    key: [u8; 32],
}

impl Default for TokenSigner {
    fn default() -> Self {
        Self::new()
    }
}

impl TokenSigner {
    /// A signer with a fresh random key.
    pub fn new() -> TokenSigner {
        let mut key = [0u8; 32];
        let _ = getrandom::fill(&mut key);
        TokenSigner { key }
    }

    /// A signer with a given key (the one the nodes on a bucket share).
    pub fn with_key(key: [u8; 32]) -> TokenSigner {
        TokenSigner { key }
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length; 32 bytes cannot fail.
        <Hmac<Sha256> as Mac>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!())
    }

    /// Issues a token for `claims`.
    pub fn issue(&self, claims: &Claims) -> String {
        let payload = B64.encode(serde_json::to_vec(claims).unwrap_or_default());
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        let sig = B64.encode(mac.finalize().into_bytes());
        format!("{payload}.{sig}")
    }

    /// An HMAC-SHA256 tag of `data` under the process key (base64url): for
    /// values derived from a token that are not tokens themselves (the web
    /// page's CSRF field is the tag of its session).
    pub fn tag(&self, data: &[u8]) -> String {
        let mut mac = self.mac();
        mac.update(data);
        B64.encode(mac.finalize().into_bytes())
    }

    /// Whether `tag` is [`TokenSigner::tag`] of `data` (constant time).
    pub fn check_tag(&self, data: &[u8], tag: &str) -> bool {
        let Ok(sig) = B64.decode(tag) else {
            return false;
        };
        let mut mac = self.mac();
        mac.update(data);
        mac.verify_slice(&sig).is_ok()
    }

    /// Verifies a token (signature in constant time, then expiry at `now`).
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        let (payload, sig) = token.split_once('.').ok_or(TokenError::Malformed)?;
        let sig = B64.decode(sig).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(payload.as_bytes());
        mac.verify_slice(&sig)
            .map_err(|_| TokenError::BadSignature)?;
        let bytes = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let claims: Claims = serde_json::from_slice(&bytes).map_err(|_| TokenError::Malformed)?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims {
            sub: "alice".into(),
            aud: SERVICE.into(),
            iat: 0,
            exp,
            access: vec![Grant::parse("repository:team/app:pull,push").unwrap()],
        }
    }

    #[test]
    fn scopes_parse() {
        let a = Grant::parse("repository:ghcr.io/org/app:pull").unwrap();
        assert_eq!(
            (a.kind.as_str(), a.name.as_str()),
            ("repository", "ghcr.io/org/app")
        );
        assert_eq!(a.actions, vec!["pull"]);
        assert_eq!(
            Grant::parse("registry:catalog:*").unwrap().actions,
            vec!["*"]
        );
        assert!(Grant::parse("nonsense").is_none());
        assert_eq!(a.scope(), "repository:ghcr.io/org/app:pull");
    }

    #[test]
    fn sign_verify_tamper_expire() {
        let s = TokenSigner::new();
        let t = s.issue(&claims(100));
        let c = s.verify(&t, 50).unwrap();
        assert!(c.grants("team/app", Action::Push));
        assert!(!c.grants("team/app", Action::Delete));
        assert!(!c.grants("team/other", Action::Pull));
        assert_eq!(s.verify(&t, 100).unwrap_err(), TokenError::Expired);
        // Tampered payload: grant another repo with the old signature.
        let (_, sig) = t.split_once('.').unwrap();
        let mut forged = claims(100);
        forged.access[0].name = "secret/repo".into();
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        assert_eq!(
            s.verify(&format!("{forged_payload}.{sig}"), 50)
                .unwrap_err(),
            TokenError::BadSignature
        );
        // A token from another process (key) is refused.
        assert_eq!(
            TokenSigner::new().verify(&t, 50).unwrap_err(),
            TokenError::BadSignature
        );
        assert_eq!(s.verify("garbage", 50).unwrap_err(), TokenError::Malformed);
    }
}
