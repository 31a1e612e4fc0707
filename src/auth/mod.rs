//! Who may do what. Identity comes from `Authorization` (Basic against htpasswd,
//! or a Bearer token from `/token`); the decision comes from the typed route and
//! the policy, never from a handler.
//!
//! Without an htpasswd file wharf has no users: pulls follow `anonymous_pull`, and
//! pushes, deletes and the admin API are accepted only from loopback clients, so a
//! fresh install on a LAN host is not an open write target.

pub mod credentials;
pub mod htpasswd;
pub mod rules;
pub mod token;

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{HeaderMap, Method, header};

use crate::config::{Action, AuthConfig, AuthScheme, Config};
use crate::http::Route;
use credentials::Users;
use htpasswd::HtpasswdError;
use rules::Policy;
use token::{Access, Claims, TokenSigner};

/// The message a non-loopback writer sees while no users exist.
pub const NO_USERS_HINT: &str = "pushes and deletes are accepted only from this host until users exist: \
create one with `wharf user add NAME --htpasswd /etc/wharf/htpasswd` and set [auth] htpasswd";

/// Failed logins allowed per client address before it must wait.
const FAILED_LOGIN_BURST: u32 = 10;
/// Sustained failed logins per minute per client address.
const FAILED_LOGINS_PER_MINUTE: u32 = 20;

/// Who is calling.
#[derive(Debug, Clone)]
pub enum Identity {
    /// No credentials.
    Anonymous,
    /// A verified htpasswd user (Basic).
    User(String),
    /// A verified token.
    Token(Claims),
}

/// The caller of one request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Who.
    pub identity: Identity,
    /// Whether the connection comes from the host itself.
    pub loopback: bool,
}

impl Caller {
    /// The user name, if authenticated as a user.
    pub fn user(&self) -> Option<&str> {
        match &self.identity {
            Identity::Anonymous => None,
            Identity::User(u) => Some(u),
            Identity::Token(c) => c.user(),
        }
    }
}

/// Why a request is refused; the HTTP layer turns it into 401/403/429.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// Credentials are missing or wrong: 401 with a challenge for `scope`.
    Unauthenticated {
        /// Scope for a Bearer challenge.
        scope: Option<String>,
        /// What went wrong.
        message: String,
    },
    /// A token that lacks `scope`: 401 `insufficient_scope`, so the client fetches
    /// a new token.
    InsufficientScope {
        /// The scope needed.
        scope: String,
    },
    /// Authenticated, but the policy says no: 403.
    Forbidden(String),
    /// Too many failed logins from this address: 429.
    RateLimited {
        /// Seconds until the next attempt is considered.
        retry_after: u64,
    },
}

/// The authorization engine, shared by all requests; `reload` swaps its inputs.
pub struct Authorizer {
    policy: RwLock<Arc<Policy>>,
    users: RwLock<Option<Arc<Users>>>,
    scheme: AuthScheme,
    tokens: TokenSigner,
    failures: DefaultKeyedRateLimiter<IpAddr>,
    blocked: Mutex<std::collections::HashMap<IpAddr, Instant>>,
    /// Upstream names, for the "mirrored" anonymous grant (fixed until restart).
    upstreams: Vec<String>,
}

fn load_users(auth: &AuthConfig) -> Result<Option<Arc<Users>>, HtpasswdError> {
    auth.htpasswd
        .as_ref()
        .map(|p| Users::load(p).map(Arc::new))
        .transpose()
}

/// The scope string a route needs for `action`.
pub fn scope_for(repo: &str, method: &Method) -> String {
    let actions = match *method {
        Method::GET | Method::HEAD => "pull",
        Method::DELETE => "delete",
        _ => "pull,push",
    };
    format!("repository:{repo}:{actions}")
}

impl Authorizer {
    /// Builds from `[auth]`; a bad htpasswd file is an error naming its line.
    pub fn new(config: &Config) -> Result<Authorizer, HtpasswdError> {
        let quota =
            Quota::per_minute(NonZeroU32::new(FAILED_LOGINS_PER_MINUTE).unwrap_or(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::new(FAILED_LOGIN_BURST).unwrap_or(NonZeroU32::MIN));
        let upstreams: Vec<String> = config.upstream.iter().map(|u| u.name.clone()).collect();
        Ok(Authorizer {
            policy: RwLock::new(Arc::new(Policy::from_config(&config.auth, &upstreams))),
            users: RwLock::new(load_users(&config.auth)?),
            scheme: config.auth.scheme,
            tokens: TokenSigner::new(),
            failures: RateLimiter::keyed(quota),
            blocked: Mutex::new(Default::default()),
            upstreams,
        })
    }

    /// Applies a new `[auth]` (SIGHUP): rules, anonymous access, admins and the
    /// htpasswd file. On error nothing changes.
    pub fn reload(&self, auth: &AuthConfig) -> Result<usize, HtpasswdError> {
        let users = load_users(auth)?;
        let n = users.as_ref().map(|u| u.len()).unwrap_or(0);
        if let Ok(mut u) = self.users.write() {
            *u = users;
        }
        if let Ok(mut p) = self.policy.write() {
            *p = Arc::new(Policy::from_config(auth, &self.upstreams));
        }
        Ok(n)
    }

    /// Re-reads htpasswd if it changed on disk; true if it did.
    pub fn reload_users_if_changed(&self) -> Result<bool, HtpasswdError> {
        match self.users() {
            Some(u) => u.reload_if_changed(),
            None => Ok(false),
        }
    }

    /// The current users, if an htpasswd file is configured.
    pub fn users(&self) -> Option<Arc<Users>> {
        self.users.read().ok().and_then(|u| u.clone())
    }

    /// The current policy snapshot.
    pub fn policy(&self) -> Arc<Policy> {
        self.policy
            .read()
            .map(|p| p.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// basic or token.
    pub fn scheme(&self) -> AuthScheme {
        self.scheme
    }

    /// Checks a user's password, slowing down addresses that keep failing.
    pub async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<bool, Denial> {
        let Some(users) = self.users() else {
            return Ok(false);
        };
        if users.cached(user, password) {
            return Ok(true);
        }
        let now = Instant::now();
        if let Ok(mut blocked) = self.blocked.lock() {
            if let Some(until) = blocked.get(&ip).copied() {
                if until > now {
                    return Err(Denial::RateLimited {
                        retry_after: (until - now).as_secs().max(1),
                    });
                }
                blocked.remove(&ip);
            }
        }
        if users.verify(user, password).await {
            return Ok(true);
        }
        tracing::info!(%ip, user, "failed login");
        if let Err(not_until) = self.failures.check_key(&ip) {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            if let Ok(mut blocked) = self.blocked.lock() {
                if blocked.len() > 100_000 {
                    blocked.retain(|_, t| *t > now);
                }
                blocked.insert(ip, now + wait.max(Duration::from_secs(1)));
            }
        }
        Ok(false)
    }

    /// Establishes who is calling from the `Authorization` header.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        remote: SocketAddr,
    ) -> Result<Caller, Denial> {
        let loopback = remote.ip().to_canonical().is_loopback();
        let anonymous = Caller {
            identity: Identity::Anonymous,
            loopback,
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(anonymous);
        };
        let bad = |message: &str| Denial::Unauthenticated {
            scope: None,
            message: message.to_owned(),
        };
        if let Some(b64) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        {
            if self.users().is_none() {
                // No users to check against: the credentials mean nothing here.
                return Ok(anonymous);
            }
            let (user, password) =
                decode_basic(b64).ok_or_else(|| bad("malformed Basic credentials"))?;
            return match self
                .login(&user, &password, remote.ip().to_canonical())
                .await?
            {
                true => Ok(Caller {
                    identity: Identity::User(user),
                    loopback,
                }),
                false => Err(bad("invalid username or password")),
            };
        }
        if let Some(t) = value
            .strip_prefix("Bearer ")
            .or_else(|| value.strip_prefix("bearer "))
        {
            let claims = self
                .tokens
                .verify(t.trim(), crate::store::unix_now())
                .map_err(|e| bad(&e.to_string()))?;
            return Ok(Caller {
                identity: Identity::Token(claims),
                loopback,
            });
        }
        Err(bad("unsupported authorization scheme"))
    }

    /// Whether `caller` may do `action` on `repo`.
    pub fn allows(&self, caller: &Caller, repo: &str, action: Action) -> bool {
        match &caller.identity {
            Identity::Token(c) => c.grants(repo, action),
            Identity::User(u) => self.policy().allows(Some(u), repo, action, caller.loopback),
            Identity::Anonymous => self.policy().allows(None, repo, action, caller.loopback),
        }
    }

    /// Whether `caller` may see `repo` in the catalog (by the rules, also for tokens).
    pub fn may_list(&self, caller: &Caller, repo: &str) -> bool {
        self.policy()
            .allows(caller.user(), repo, Action::Pull, caller.loopback)
    }

    fn refuse(&self, caller: &Caller, scope: String, what: String) -> Denial {
        let policy = self.policy();
        match &caller.identity {
            Identity::Anonymous if !policy.has_users && !caller.loopback => {
                Denial::Forbidden(NO_USERS_HINT.into())
            }
            Identity::Anonymous if !policy.has_users => Denial::Forbidden(what),
            Identity::Anonymous => Denial::Unauthenticated {
                scope: Some(scope),
                message: "authentication required".into(),
            },
            Identity::Token(_) => Denial::InsufficientScope { scope },
            Identity::User(u) => Denial::Forbidden(format!("user {u:?} may not {what}")),
        }
    }

    /// The decision for one request. `route` carries the local repository name;
    /// `requested` is the name the client used, which is what tokens grant.
    pub fn authorize(
        &self,
        route: &Route,
        method: &Method,
        caller: &Caller,
        requested: Option<&crate::oci::RepoName>,
    ) -> Result<(), Denial> {
        match route {
            Route::Token | Route::Health | Route::Ready | Route::Metrics | Route::Catalog => Ok(()),
            Route::Base => {
                let needs_login =
                    self.policy().has_users && matches!(caller.identity, Identity::Anonymous);
                if needs_login {
                    Err(Denial::Unauthenticated {
                        scope: None,
                        message: "authentication required".into(),
                    })
                } else {
                    Ok(())
                }
            }
            Route::Admin { .. } => {
                if self.policy().is_admin(caller.user(), caller.loopback) {
                    Ok(())
                } else if caller.user().is_none() && self.policy().has_users {
                    Err(Denial::Unauthenticated {
                        scope: None,
                        message: "the admin API needs an admin user".into(),
                    })
                } else {
                    Err(Denial::Forbidden(
                        "the admin API needs an admin user".into(),
                    ))
                }
            }
            _ => {
                let (Some(repo), Some(action)) = (route.repo(), route.action(method)) else {
                    return Ok(());
                };
                let asked = requested.unwrap_or(repo);
                let name = match caller.identity {
                    Identity::Token(_) => asked,
                    _ => repo,
                };
                if self.allows(caller, name.as_str(), action) {
                    Ok(())
                } else {
                    Err(self.refuse(
                        caller,
                        scope_for(asked.as_str(), method),
                        format!("{action} {asked}"),
                    ))
                }
            }
        }
    }

    /// Issues a token for `user` (None = anonymous) granting the requested scopes
    /// as far as the policy allows for the local name `local` maps each to.
    /// Returns the token and its lifetime.
    pub fn issue_token(
        &self,
        user: Option<&str>,
        loopback: bool,
        requested: &[Access],
        local: impl Fn(&crate::oci::RepoName) -> String,
    ) -> (String, u64) {
        let policy = self.policy();
        let mut granted: Vec<Access> = Vec::new();
        for req in requested.iter().filter(|a| a.kind == "repository") {
            let Ok(name) = req.name.parse::<crate::oci::RepoName>() else {
                continue;
            };
            let local_name = local(&name);
            let actions: Vec<String> = req
                .actions
                .iter()
                .filter(|a| {
                    let act = match a.as_str() {
                        "pull" => Action::Pull,
                        "push" => Action::Push,
                        "delete" => Action::Delete,
                        _ => return false,
                    };
                    policy.allows(user, &local_name, act, loopback)
                })
                .cloned()
                .collect();
            match granted.iter_mut().find(|g| g.name == req.name) {
                Some(g) => {
                    for a in actions {
                        if !g.actions.contains(&a) {
                            g.actions.push(a);
                        }
                    }
                }
                None => granted.push(Access {
                    kind: "repository".into(),
                    name: req.name.clone(),
                    actions,
                }),
            }
        }
        let now = crate::store::unix_now();
        let claims = Claims {
            sub: user.unwrap_or_default().to_owned(),
            aud: token::SERVICE.into(),
            iat: now,
            exp: now + token::TOKEN_TTL_SECS,
            access: granted,
        };
        (self.tokens.issue(&claims), token::TOKEN_TTL_SECS)
    }
}

/// Decodes `base64(user:password)`.
pub fn decode_basic(b64: &str) -> Option<(String, String)> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64.trim())
        .ok()?;
    let s = String::from_utf8(raw).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.to_owned(), p.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AnonymousPull;

    fn route(path: &str, m: &Method) -> Route {
        Route::parse(m, path).unwrap()
    }

    fn caller(addr: &str) -> Caller {
        let a: SocketAddr = addr.parse().unwrap();
        Caller {
            identity: Identity::Anonymous,
            loopback: a.ip().to_canonical().is_loopback(),
        }
    }

    #[test]
    fn without_users_only_loopback_writes() {
        let auth = Authorizer::new(&Config::default()).unwrap();
        let put = route("/v2/a/manifests/latest", &Method::PUT);
        let del = route("/v2/a/manifests/latest", &Method::DELETE);
        let post = route("/v2/a/blobs/uploads/", &Method::POST);
        let get = route("/v2/a/manifests/latest", &Method::GET);
        for (r, m) in [
            (&put, Method::PUT),
            (&del, Method::DELETE),
            (&post, Method::POST),
        ] {
            match auth.authorize(r, &m, &caller("192.168.1.20:40000"), None) {
                Err(Denial::Forbidden(msg)) => assert!(msg.contains("wharf user add"), "{msg}"),
                other => panic!("LAN {m} allowed: {other:?}"),
            }
            for ok in ["127.0.0.1:1", "[::ffff:127.0.0.1]:1", "[::1]:1"] {
                assert!(auth.authorize(r, &m, &caller(ok), None).is_ok(), "{ok} {m}");
            }
        }
        assert!(
            auth.authorize(&get, &Method::GET, &caller("192.168.1.20:1"), None)
                .is_ok()
        );
        let admin = route("/_wharf/du", &Method::GET);
        assert!(
            auth.authorize(&admin, &Method::GET, &caller("127.0.0.1:1"), None)
                .is_ok()
        );
        assert!(
            auth.authorize(&admin, &Method::GET, &caller("10.0.0.1:1"), None)
                .is_err()
        );
        let mut cfg = Config::default();
        cfg.auth.anonymous_pull = AnonymousPull::None;
        let closed = Authorizer::new(&cfg).unwrap();
        assert!(
            closed
                .authorize(&get, &Method::GET, &caller("192.168.1.20:1"), None)
                .is_err()
        );
    }

    #[test]
    fn basic_decoding() {
        assert_eq!(
            decode_basic("YWxpY2U6czNjOnJldA=="),
            Some(("alice".into(), "s3c:ret".into()))
        );
        assert_eq!(decode_basic("!!!"), None);
        assert_eq!(decode_basic("bm9jb2xvbg=="), None);
    }
}
