//! Who may do what. Identity comes from `Authorization` (Basic against htpasswd,
//! or a Bearer token from `/token`); the decision comes from the [`Access`] a
//! request needs (computed from its route and the local name routing chose) and
//! the policy, never from a handler or an HTTP type.
//!
//! Without an htpasswd file wharf has no users: pulls follow `anonymous_pull`, and
//! pushes, deletes and the admin API are accepted only from loopback clients, so a
//! fresh install on a LAN host is not an open write target.

pub mod access;
pub mod credentials;
pub mod htpasswd;
pub mod login_guard;
pub mod rules;
pub mod session;
pub mod token;

use std::net::IpAddr;
use std::sync::{Arc, RwLock};

use base64::Engine as _;
use http::{HeaderMap, header};

use crate::config::{Action, AuthConfig, AuthScheme, Config};
use crate::net::ClientAddr;
pub use access::Access;
use credentials::Users;
use htpasswd::HtpasswdError;
use login_guard::LoginGuard;
use rules::Policy;
use token::{Claims, Grant, TokenSigner};

/// The message a non-loopback writer sees while no users exist.
pub const NO_USERS_HINT: &str = "pushes and deletes are accepted only from this host until users exist: \
create one with `wharf user add NAME --htpasswd /etc/wharf/htpasswd` and set [auth] htpasswd";

/// The scope a Bearer challenge for the catalog asks for.
pub const CATALOG_SCOPE: &str = "registry:catalog:*";

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
    /// Whether the connection comes from the host itself, directly (never
    /// through a proxy).
    pub loopback: bool,
    /// The client address (IPv6: its /64) that per-client limits key on.
    pub ip: IpAddr,
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
    /// Too many logins from this address: 429.
    RateLimited {
        /// Seconds until the next attempt is considered.
        retry_after: u64,
    },
}

/// The authorization engine, shared by all requests; `reload` swaps its inputs.
pub struct Authorizer {
    policy: RwLock<Arc<Policy>>,
    users: RwLock<Option<Arc<Users>>>,
    /// Signs registry Bearer tokens: a per-process key, or the key the nodes
    /// on one bucket share ([`Authorizer::with_token_key`]).
    tokens: TokenSigner,
    /// Signs web page sessions and their CSRF fields: always this process's
    /// own key, since logouts are remembered per process (a session another
    /// node issued is not one this node could end).
    sessions: TokenSigner,
    guard: LoginGuard,
    /// bcrypt runs, shared with `/metrics`.
    password_checks: prometheus_client::metrics::counter::Counter,
    /// Upstream names, for the "mirrored" anonymous grant (fixed until restart).
    upstreams: Vec<String>,
    /// Web sessions ended by their logout before they expire, per user.
    ended_sessions: std::sync::Mutex<session::EndedSessions>,
}

fn load_users(auth: &AuthConfig) -> Result<Option<Arc<Users>>, HtpasswdError> {
    auth.htpasswd
        .as_ref()
        .map(|p| Users::load(p).map(Arc::new))
        .transpose()
}

/// The scope string a repository request needs: `pull` for reads, `delete` for
/// deletions, `pull,push` for pushes (clients ask for both when pushing).
pub fn scope_for(repo: &str, action: Action) -> String {
    let actions = match action {
        Action::Pull => "pull",
        Action::Delete => "delete",
        Action::Push => "pull,push",
    };
    format!("repository:{repo}:{actions}")
}

impl Authorizer {
    /// Builds from `[auth]`; a bad htpasswd file is an error naming its line.
    /// `password_checks` counts bcrypt runs (the `/metrics` series).
    pub fn new(
        config: &Config,
        password_checks: prometheus_client::metrics::counter::Counter,
    ) -> Result<Authorizer, HtpasswdError> {
        let upstreams: Vec<String> = config.upstream.iter().map(|u| u.name.clone()).collect();
        Ok(Authorizer {
            policy: RwLock::new(Arc::new(Policy::from_config(&config.auth, &upstreams))),
            users: RwLock::new(load_users(&config.auth)?),
            tokens: TokenSigner::new(),
            sessions: TokenSigner::new(),
            guard: LoginGuard::new(),
            password_checks,
            upstreams,
            ended_sessions: Default::default(),
        })
    }

    /// Signs and verifies registry tokens with `key` instead of a key of this
    /// process: the nodes on one shared bucket all use the bucket's key, so a
    /// token from one node is accepted by the others.
    pub fn with_token_key(mut self, key: [u8; 32]) -> Authorizer {
        self.tokens = TokenSigner::with_key(key);
        self
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

    /// basic or token (`auto` resolved against the current users and policy).
    pub fn scheme(&self) -> AuthScheme {
        self.policy().scheme
    }

    /// Checks a user's password. Before any bcrypt run the client's logins in
    /// flight are bounded, a request presenting a credential that another
    /// request is verifying waits for that verification, and the run is charged
    /// to the client's budget; runs share a small thread pool.
    pub async fn login(&self, user: &str, password: &str, ip: IpAddr) -> Result<bool, Denial> {
        let Some(users) = self.users() else {
            return Ok(false);
        };
        if users.cached(user, password) {
            return Ok(true);
        }
        let limited = |t: login_guard::TryLater| Denial::RateLimited {
            retry_after: t.retry_after,
        };
        let _admitted = self.guard.admit(ip).map_err(limited)?;
        let _turn = users.one_at_a_time(user, password).await;
        if users.cached(user, password) {
            return Ok(true);
        }
        self.guard.charge(ip).map_err(|t| {
            tracing::info!(%ip, user, "login refused: too many attempts from this address");
            limited(t)
        })?;
        let _slot = self.guard.pool_slot().await.map_err(limited)?;
        self.password_checks.inc();
        if users.verify(user, password).await {
            return Ok(true);
        }
        tracing::info!(%ip, user, "failed login");
        Ok(false)
    }

    /// Establishes who is calling from the `Authorization` header.
    pub async fn identify(
        &self,
        headers: &HeaderMap,
        client: ClientAddr,
    ) -> Result<Caller, Denial> {
        let caller = |identity| Caller {
            identity,
            loopback: client.loopback,
            ip: client.limit_key(),
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(caller(Identity::Anonymous));
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
                return Ok(caller(Identity::Anonymous));
            }
            let (user, password) =
                decode_basic(b64).ok_or_else(|| bad("malformed Basic credentials"))?;
            if user.is_empty() && password.is_empty() {
                // containers/image answers a challenge it has no credentials for
                // with `Basic Og==` (":"): that is an anonymous client, not a
                // failed login.
                return Ok(caller(Identity::Anonymous));
            }
            // Boxed: a login's future is large, and most requests carry none.
            return match Box::pin(self.login(&user, &password, client.limit_key())).await? {
                true => Ok(caller(Identity::User(user))),
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
            // A web session is never a registry token (its audience differs,
            // and so does its key unless the two ever share one).
            if claims.aud != token::SERVICE {
                return Err(bad("not a registry token"));
            }
            return Ok(caller(Identity::Token(claims)));
        }
        Err(bad("unsupported authorization scheme"))
    }

    /// Whether `caller` may do `action` on the repository stored as `local`.
    pub fn allows(&self, caller: &Caller, local: &str, action: Action) -> bool {
        match &caller.identity {
            Identity::Token(c) => c.grants(local, action),
            Identity::User(u) => self
                .policy()
                .allows(Some(u), local, action, caller.loopback),
            Identity::Anonymous => self.policy().allows(None, local, action, caller.loopback),
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

    /// The decision for one request.
    pub fn authorize(&self, access: &Access, caller: &Caller) -> Result<(), Denial> {
        let policy = self.policy();
        let anonymous = matches!(caller.identity, Identity::Anonymous);
        match access {
            Access::Open => Ok(()),
            Access::ApiRoot if policy.has_users && anonymous => Err(Denial::Unauthenticated {
                scope: None,
                message: "authentication required".into(),
            }),
            Access::ApiRoot => Ok(()),
            Access::Catalog => match &caller.identity {
                // The catalog is filtered by what the caller may pull, so the
                // challenge is what tells a client to log in (or, with tokens,
                // fetch a `registry:catalog:*` token) to see its own list.
                Identity::Anonymous if policy.has_users => Err(Denial::Unauthenticated {
                    scope: Some(CATALOG_SCOPE.into()),
                    message: "authentication required to list repositories".into(),
                }),
                Identity::Token(c) if !c.grants_catalog() => Err(Denial::InsufficientScope {
                    scope: CATALOG_SCOPE.into(),
                }),
                _ => Ok(()),
            },
            // A token grants its repository scopes and nothing more, whoever
            // it was issued to: the admin API takes an admin's credentials.
            Access::Admin if matches!(caller.identity, Identity::Token(_)) => {
                Err(Denial::Forbidden(
                    "the admin API takes an admin user's Basic credentials; a registry token \
                     grants only its repository scopes"
                        .into(),
                ))
            }
            Access::Admin => {
                if policy.is_admin(caller.user(), caller.loopback) {
                    Ok(())
                } else if caller.user().is_none() && policy.has_users {
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
            Access::Repo {
                local,
                action,
                scope,
            } => {
                if self.allows(caller, local, *action) {
                    Ok(())
                } else {
                    Err(self.refuse(caller, scope.clone(), format!("{action} {local}")))
                }
            }
        }
    }

    /// Issues a token for `user` (None = anonymous). Each requested repository
    /// scope is granted, action by action, on every local name `locals` maps
    /// the requested name to (routing's answer for a read and for a push: a
    /// name not yet pushed reads from its mirror but is claimed by a push) as
    /// far as the policy allows; `registry:catalog:*` is granted to anyone
    /// (the listing is filtered). Returns the token and its lifetime.
    pub fn issue_token(
        &self,
        user: Option<&str>,
        loopback: bool,
        requested: &[Grant],
        locals: impl Fn(&crate::oci::RepoName) -> Vec<String>,
    ) -> (String, u64) {
        let policy = self.policy();
        let mut granted: Vec<Grant> = Vec::new();
        let mut grant = |kind: &str, name: &str, action: &str| match granted
            .iter_mut()
            .find(|g| g.kind == kind && g.name == name)
        {
            Some(g) if !g.actions.iter().any(|a| a == action) => g.actions.push(action.into()),
            Some(_) => {}
            None => granted.push(Grant {
                kind: kind.into(),
                name: name.into(),
                actions: vec![action.into()],
            }),
        };
        for req in requested {
            if req.kind == "registry" && req.name == "catalog" {
                grant("registry", "catalog", "*");
                continue;
            }
            if req.kind != "repository" {
                continue;
            }
            let Ok(name) = req.name.parse::<crate::oci::RepoName>() else {
                continue;
            };
            let candidates = locals(&name);
            for a in &req.actions {
                let (act, label) = match a.as_str() {
                    "pull" => (Action::Pull, "pull"),
                    "push" => (Action::Push, "push"),
                    "delete" => (Action::Delete, "delete"),
                    _ => continue,
                };
                for local in &candidates {
                    if policy.allows(user, local, act, loopback) {
                        grant("repository", local, label);
                    }
                }
            }
        }
        let now = crate::store::unix_now();
        let claims = Claims {
            sub: user.unwrap_or_default().to_owned(),
            aud: token::SERVICE.into(),
            iat: now,
            exp: now.saturating_add(token::TOKEN_TTL_SECS),
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

    fn repo(local: &str, action: Action) -> Access {
        Access::Repo {
            local: local.into(),
            action,
            scope: scope_for(local, action),
        }
    }

    fn caller(addr: &str) -> Caller {
        let a: std::net::SocketAddr = addr.parse().unwrap();
        let ip = a.ip().to_canonical();
        Caller {
            identity: Identity::Anonymous,
            loopback: ip.is_loopback(),
            ip,
        }
    }

    #[test]
    fn without_users_only_loopback_writes() {
        let auth = Authorizer::new(&Config::default(), Default::default()).unwrap();
        for action in [Action::Push, Action::Delete] {
            match auth.authorize(&repo("a", action), &caller("192.168.1.20:40000")) {
                Err(Denial::Forbidden(msg)) => assert!(msg.contains("wharf user add"), "{msg}"),
                other => panic!("LAN {action} allowed: {other:?}"),
            }
            for ok in ["127.0.0.1:1", "[::ffff:127.0.0.1]:1", "[::1]:1"] {
                assert!(auth.authorize(&repo("a", action), &caller(ok)).is_ok());
            }
        }
        assert!(
            auth.authorize(&repo("a", Action::Pull), &caller("192.168.1.20:1"))
                .is_ok()
        );
        assert!(
            auth.authorize(&Access::Admin, &caller("127.0.0.1:1"))
                .is_ok()
        );
        assert!(
            auth.authorize(&Access::Admin, &caller("10.0.0.1:1"))
                .is_err()
        );
        let mut cfg = Config::default();
        cfg.auth.anonymous_pull = AnonymousPull::None;
        let closed = Authorizer::new(&cfg, Default::default()).unwrap();
        assert!(
            closed
                .authorize(&repo("a", Action::Pull), &caller("192.168.1.20:1"))
                .is_err()
        );
    }

    #[test]
    fn tokens_grant_local_names_and_the_catalog() {
        let auth = Authorizer::new(&Config::default(), Default::default()).unwrap();
        let requested = vec![
            Grant::parse("repository:bun:pull,push").unwrap(),
            Grant::parse("registry:catalog:*").unwrap(),
        ];
        let (t, _) = auth.issue_token(None, true, &requested, |n| {
            vec![format!("docker.io/library/{n}"), n.to_string()]
        });
        let claims = auth.tokens.verify(&t, crate::store::unix_now()).unwrap();
        assert!(claims.grants("docker.io/library/bun", Action::Pull));
        assert!(claims.grants("bun", Action::Push));
        assert!(!claims.grants("bun2", Action::Pull));
        assert!(claims.grants_catalog());
        let with = Caller {
            identity: Identity::Token(claims),
            ..caller("127.0.0.1:1")
        };
        assert!(auth.authorize(&Access::Catalog, &with).is_ok());
        assert!(auth.authorize(&repo("bun", Action::Push), &with).is_ok());
        assert!(matches!(
            auth.authorize(&repo("ghcr.io/bun", Action::Pull), &with),
            Err(Denial::InsufficientScope { .. })
        ));
    }

    #[test]
    fn basic_decoding() {
        assert_eq!(
            decode_basic("YWxpY2U6czNjOnJldA=="),
            Some(("alice".into(), "s3c:ret".into()))
        );
        assert_eq!(decode_basic("!!!"), None);
        assert_eq!(decode_basic("bm9jb2xvbg=="), None);
        assert_eq!(decode_basic("Og=="), Some((String::new(), String::new())));
    }
}
