//! How a replication target wants to be authenticated, learned from its first
//! `WWW-Authenticate` challenge and used before the next call asks: Basic
//! (Distribution with htpasswd) sends the credentials on every request from
//! then on; Bearer (wharf in token mode, Docker Hub style) fetches a token for
//! the scopes a call needs (plus any the challenge names) from the realm,
//! cached per scope set. Either way a call pays the 401 round trip once per
//! target, not once per request.

use std::sync::Mutex;

use super::super::error::UpstreamError;
use super::super::token::{self, Challenge, TokenCache};

/// The token scopes one call needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Scopes(Vec<String>);

impl Scopes {
    /// Reading and writing `repo`: HEADs, uploads, manifest PUTs, tag lists
    /// (one token per repository serves all of them).
    pub(super) fn push(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:pull,push")])
    }

    /// No repository: the API root (`GET /v2/`), to learn whether the
    /// credentials are good at all.
    pub(super) fn none() -> Scopes {
        Scopes(Vec::new())
    }

    /// A cross-repository mount: push to `repo`, pull from `from`.
    pub(super) fn mount(repo: &str, from: &str) -> Scopes {
        let mut s = Scopes::push(repo);
        s.0.push(format!("repository:{from}:pull"));
        s
    }

    /// Deleting in `repo` (wharf and Distribution's token servers call the
    /// action `delete`; a target wanting `*` says so in its challenge).
    pub(super) fn delete(repo: &str) -> Scopes {
        Scopes(vec![format!("repository:{repo}:delete")])
    }

    /// The token cache key.
    fn key(&self) -> String {
        self.0.join(" ")
    }

    /// These scopes and those a challenge asked for (space-separated), once each.
    fn with_challenge(&self, asked: Option<&str>) -> Vec<String> {
        let mut all = self.0.clone();
        for s in asked.unwrap_or("").split(' ').filter(|s| !s.is_empty()) {
            if !all.iter().any(|a| a == s) {
                all.push(s.to_owned());
            }
        }
        all
    }
}

/// Credentials to put on one request.
pub(super) enum Auth {
    /// `Authorization: Bearer ..`
    Bearer(String),
    /// `Authorization: Basic ..`
    Basic(String, String),
}

/// What the target asked for last.
#[derive(Debug, Clone)]
enum Scheme {
    /// Nothing yet: send the first request bare.
    Unknown,
    /// Basic: send the credentials up front.
    Basic,
    /// Bearer: fetch tokens from `realm` up front.
    Bearer {
        realm: String,
        service: Option<String>,
    },
}

/// A target's auth state.
pub(super) struct TargetAuth {
    credentials: Option<(String, String)>,
    scheme: Mutex<Scheme>,
    tokens: TokenCache,
}

impl TargetAuth {
    /// Nothing learned yet.
    pub(super) fn new(credentials: Option<(String, String)>) -> TargetAuth {
        TargetAuth {
            credentials,
            scheme: Mutex::new(Scheme::Unknown),
            tokens: TokenCache::default(),
        }
    }

    fn scheme(&self) -> Scheme {
        self.scheme
            .lock()
            .map(|s| s.clone())
            .unwrap_or(Scheme::Unknown)
    }

    fn learn(&self, s: Scheme) {
        if let Ok(mut g) = self.scheme.lock() {
            *g = s;
        }
    }

    /// What to send before the target says anything: the credentials once
    /// it asked for Basic, a (cached or fresh) token once it asked for Bearer.
    pub(super) async fn preempt(
        &self,
        http: &reqwest::Client,
        scopes: &Scopes,
    ) -> Result<Option<Auth>, UpstreamError> {
        match self.scheme() {
            Scheme::Unknown => Ok(None),
            Scheme::Basic => Ok(self
                .credentials
                .as_ref()
                .map(|(u, p)| Auth::Basic(u.clone(), p.clone()))),
            Scheme::Bearer { realm, service } => {
                if let Some(t) = self.tokens.get(&scopes.key()) {
                    return Ok(Some(Auth::Bearer(t)));
                }
                let t = self
                    .fetch(http, &realm, service.as_deref(), scopes, None)
                    .await?;
                Ok(Some(Auth::Bearer(t)))
            }
        }
    }

    /// Answers a 401's `challenge`: what to send on the retry. A refused
    /// token is forgotten first, so a token lacking a scope the target wants
    /// (`insufficient_scope`) is replaced by one that has it.
    pub(super) async fn answer(
        &self,
        http: &reqwest::Client,
        challenge: Option<&str>,
        scopes: &Scopes,
    ) -> Result<Auth, UpstreamError> {
        match challenge.and_then(Challenge::parse) {
            Some(Challenge::Basic) => {
                self.learn(Scheme::Basic);
                match &self.credentials {
                    Some((u, p)) => Ok(Auth::Basic(u.clone(), p.clone())),
                    None => Err(UpstreamError::Denied(
                        "the target wants credentials and none are configured".into(),
                    )),
                }
            }
            Some(Challenge::Bearer {
                realm,
                service,
                scope,
            }) => {
                self.learn(Scheme::Bearer {
                    realm: realm.clone(),
                    service: service.clone(),
                });
                self.tokens.forget(&scopes.key());
                let t = self
                    .fetch(http, &realm, service.as_deref(), scopes, scope.as_deref())
                    .await?;
                Ok(Auth::Bearer(t))
            }
            None => Err(UpstreamError::Denied(
                "401 without a usable challenge".into(),
            )),
        }
    }

    /// Forgets the token for `scopes` (the target refused it).
    pub(super) fn forget(&self, scopes: &Scopes) {
        self.tokens.forget(&scopes.key());
    }

    async fn fetch(
        &self,
        http: &reqwest::Client,
        realm: &str,
        service: Option<&str>,
        scopes: &Scopes,
        asked: Option<&str>,
    ) -> Result<String, UpstreamError> {
        let all = scopes.with_challenge(asked);
        let all: Vec<&str> = all.iter().map(String::as_str).collect();
        let (t, ttl) = token::fetch(http, realm, service, &all, self.credentials.as_ref()).await?;
        self.tokens.put(&scopes.key(), t.clone(), ttl);
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_merge_what_the_challenge_asks() {
        let s = Scopes::mount("team/app", "team/base");
        assert_eq!(
            s.key(),
            "repository:team/app:pull,push repository:team/base:pull"
        );
        assert_eq!(
            s.with_challenge(Some(
                "repository:team/app:pull,push repository:team/app:delete"
            )),
            vec![
                "repository:team/app:pull,push",
                "repository:team/base:pull",
                "repository:team/app:delete"
            ]
        );
        assert_eq!(
            Scopes::delete("a").with_challenge(None),
            vec!["repository:a:delete"]
        );
    }
}
