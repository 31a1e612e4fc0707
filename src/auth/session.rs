//! Web page sessions: a signed, expiring cookie value and the CSRF field
//! derived from it. Both are signed with a key of this process (a
//! [`super::token::TokenSigner`] of their own), so nothing is stored per
//! login (no server-side map that grows with logins) and sessions end with
//! the process. Unlike registry tokens, sessions are never shared by the
//! nodes on one bucket: a logout is remembered by the node that took it. A session has an audience
//! of its own ([`SESSION_AUDIENCE`]): the registry refuses it as a Bearer
//! token, and a registry token is not a session.

use std::collections::HashMap;

use super::token::Claims;
use super::{Authorizer, Caller, Identity};
use crate::net::ClientAddr;

/// The `aud` of a web session (registry tokens carry [`super::token::SERVICE`]).
pub const SESSION_AUDIENCE: &str = "wharf-ui";
/// How long a session lasts after its login.
pub const SESSION_TTL_SECS: u64 = 8 * 3600;
/// How many logged-out sessions are remembered at once.
pub const MAX_ENDED_SESSIONS: usize = 100_000;
/// What the CSRF field's tag is computed over besides the session.
const CSRF_CONTEXT: &[u8] = b"wharf-ui csrf\0";
/// What a sealed value's tag is computed over besides the value.
const FLASH_CONTEXT: &[u8] = b"wharf-ui flash\0";

/// Logged-out sessions that have not expired yet: user → cookie → expiry
/// (unix seconds). Bounded by [`MAX_ENDED_SESSIONS`] in all.
#[derive(Debug, Default)]
pub struct EndedSessions {
    by_user: HashMap<String, HashMap<String, u64>>,
    len: usize,
}

impl EndedSessions {
    /// Remembers `cookie` of `user` until `exp`. When the bound is reached,
    /// expired entries go first, then the oldest of the user holding most.
    fn insert(&mut self, user: &str, cookie: &str, exp: u64, now: u64) {
        if self.contains(user, cookie, now) {
            return;
        }
        if self.len >= MAX_ENDED_SESSIONS {
            self.by_user.retain(|_, m| {
                m.retain(|_, e| *e > now);
                !m.is_empty()
            });
            self.len = self.by_user.values().map(HashMap::len).sum();
        }
        if self.len >= MAX_ENDED_SESSIONS {
            let heaviest = self.by_user.values_mut().max_by_key(|m| m.len());
            if let Some(m) = heaviest {
                let oldest = m.iter().min_by_key(|(_, e)| **e).map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    m.remove(&k);
                    self.len -= 1;
                }
            }
        }
        let m = self.by_user.entry(user.to_owned()).or_default();
        if m.insert(cookie.to_owned(), exp).is_none() {
            self.len += 1;
        }
    }

    /// Whether `cookie` of `user` was ended and would still be live.
    fn contains(&self, user: &str, cookie: &str, now: u64) -> bool {
        self.by_user
            .get(user)
            .and_then(|m| m.get(cookie))
            .is_some_and(|exp| *exp > now)
    }

    /// How many are remembered.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Who a session cookie stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The user; `None` for an anonymous visitor's session (it carries the
    /// CSRF secret of the login form).
    pub user: Option<String>,
    /// Unix seconds when it ends.
    pub expires: u64,
}

impl Authorizer {
    /// A new session cookie value for `user` (`None`: an anonymous visitor),
    /// valid for [`SESSION_TTL_SECS`] from `now`.
    pub fn issue_session(&self, user: Option<&str>, now: u64) -> String {
        // A random nonce keeps two sessions issued in the same second apart
        // (their CSRF fields differ too).
        let mut nonce = [0u8; 12];
        let _ = getrandom::fill(&mut nonce);
        let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
        self.sessions.issue(&Claims {
            sub: user.unwrap_or_default().to_owned(),
            aud: SESSION_AUDIENCE.into(),
            iat: now,
            exp: now + SESSION_TTL_SECS,
            access: vec![super::token::Grant {
                kind: "session".into(),
                name: nonce,
                // The user's credential stamp: a password change ends it.
                actions: user
                    .and_then(|u| self.users()?.stamp(u))
                    .into_iter()
                    .collect(),
            }],
        })
    }

    /// The session a cookie value stands for at `now`: signed here, not
    /// expired, a session (not a registry token), and its user still in the
    /// htpasswd file with the same password.
    pub fn session(&self, cookie: &str, now: u64) -> Option<Session> {
        let claims = self.sessions.verify(cookie, now).ok()?;
        if claims.aud != SESSION_AUDIENCE {
            return None;
        }
        let user = claims.user().map(str::to_owned);
        if let Some(u) = &user {
            if self.session_ended(u, cookie, now) {
                return None;
            }
            // Still in the file, with the password the session logged in with.
            let now_stamp = self.users().and_then(|users| users.stamp(u))?;
            let stamped = claims
                .access
                .first()
                .and_then(|g| g.actions.first())
                .is_some_and(|s| *s == now_stamp);
            if !stamped {
                return None;
            }
        }
        Some(Session {
            user,
            expires: claims.exp,
        })
    }

    /// Ends a session on the server (logout): its cookie is refused from
    /// now on even if a copy of it is replayed. Only signed, live sessions
    /// of a user are remembered (an anonymous one grants nothing), until
    /// they would have expired; at most [`MAX_ENDED_SESSIONS`] at once, and
    /// when that many are live the user holding the most gives up their
    /// oldest, so nobody's logouts push another user's out.
    pub fn end_session(&self, cookie: &str, now: u64) {
        let Ok(claims) = self.sessions.verify(cookie, now) else {
            return;
        };
        let Some(user) = claims.user() else {
            return;
        };
        if claims.aud != SESSION_AUDIENCE {
            return;
        }
        let mut ended = match self.ended_sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        ended.insert(user, cookie, claims.exp, now);
    }

    /// Whether the session `cookie` of `user` was ended by its logout.
    fn session_ended(&self, user: &str, cookie: &str, now: u64) -> bool {
        let ended = match self.ended_sessions.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        ended.contains(user, cookie, now)
    }

    /// The CSRF field every form of a session carries.
    pub fn csrf_token(&self, cookie: &str) -> String {
        self.sessions
            .tag(&[CSRF_CONTEXT, cookie.as_bytes()].concat())
    }

    /// Whether `token` is the CSRF field of the session `cookie` (constant time).
    pub fn check_csrf(&self, cookie: &str, token: &str) -> bool {
        self.sessions
            .check_tag(&[CSRF_CONTEXT, cookie.as_bytes()].concat(), token)
    }

    /// `text` with its tag (`base64url(text).tag`): a value the client keeps
    /// and gives back unchanged (the web page's one-line action result).
    pub fn seal(&self, text: &str) -> String {
        use base64::Engine as _;
        let body = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(text);
        let tag = self
            .sessions
            .tag(&[FLASH_CONTEXT, body.as_bytes()].concat());
        format!("{body}.{tag}")
    }

    /// The text of a [`Authorizer::seal`]ed value made here; `None` when it
    /// was not (or was changed).
    pub fn unseal(&self, sealed: &str) -> Option<String> {
        use base64::Engine as _;
        let (body, tag) = sealed.split_once('.')?;
        if !self
            .sessions
            .check_tag(&[FLASH_CONTEXT, body.as_bytes()].concat(), tag)
        {
            return None;
        }
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(body)
            .ok()?;
        String::from_utf8(bytes).ok()
    }

    /// The caller a session's requests are decided as: its user (checked at
    /// login), or anonymous; loopback privileges as for the API.
    pub fn session_caller(&self, session: Option<&Session>, client: ClientAddr) -> Caller {
        Caller {
            identity: match session.and_then(|s| s.user.clone()) {
                Some(u) => Identity::User(u),
                None => Identity::Anonymous,
            },
            loopback: client.loopback,
            ip: client.limit_key(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn authorizer(dir: &Path) -> Authorizer {
        let h = bcrypt::hash_with_result("pw", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        std::fs::write(dir.join("htpasswd"), format!("alice:{h}\n")).unwrap();
        let text = format!(
            "[auth]\nhtpasswd = {:?}\n",
            dir.join("htpasswd").display().to_string()
        );
        let cfg = crate::config::Config::parse(&text, Path::new("t.toml")).unwrap();
        Authorizer::new(&cfg, Default::default()).unwrap()
    }

    #[test]
    fn sessions_expire_are_not_tokens_and_bind_csrf() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path());
        let s = a.issue_session(Some("alice"), 1000);
        let got = a.session(&s, 1001).unwrap();
        assert_eq!(got.user.as_deref(), Some("alice"));
        assert!(a.session(&s, 1000 + SESSION_TTL_SECS).is_none(), "expired");
        // An unknown user's session (removed from htpasswd) is none.
        assert!(
            a.session(&a.issue_session(Some("bob"), 1000), 1001)
                .is_none()
        );
        // Anonymous sessions carry no user.
        let anon = a.issue_session(None, 1000);
        assert_eq!(a.session(&anon, 1001).unwrap().user, None);
        // A registry token is not a session.
        let (token, _) = a.issue_token(Some("alice"), false, &[], |_| Vec::new());
        assert!(a.session(&token, crate::store::unix_now()).is_none());
        // CSRF fields are per session.
        let t = a.csrf_token(&s);
        assert!(a.check_csrf(&s, &t));
        assert!(!a.check_csrf(&anon, &t));
        assert!(!a.check_csrf(&s, "AAAA"));
        assert!(!a.check_csrf(&s, "not base64!"));
        assert_ne!(a.issue_session(Some("alice"), 1000), s, "nonce");
        let sealed = a.seal("deleted team/app:1");
        assert_eq!(a.unseal(&sealed).as_deref(), Some("deleted team/app:1"));
        assert_eq!(a.unseal(&sealed.replace('.', "x.")), None);
        assert_eq!(a.unseal("ZGF0YQ.AAAA"), None);
    }

    /// Nodes on one bucket share the registry token key, not the session
    /// key: a logout is remembered only by the node that took it, so a
    /// session from one node must not be good on another (its logout there
    /// would not end it).
    #[test]
    fn a_shared_token_key_shares_tokens_not_sessions() {
        let dir = tempfile::tempdir().unwrap();
        let key = [7u8; 32];
        let a = authorizer(dir.path()).with_token_key(key);
        let b = authorizer(dir.path()).with_token_key(key);
        let now = crate::store::unix_now();
        let s = a.issue_session(Some("alice"), now);
        assert!(a.session(&s, now + 1).is_some());
        assert!(b.session(&s, now + 1).is_none());
        assert!(!b.check_csrf(&s, &a.csrf_token(&s)));
        let (token, _) = a.issue_token(Some("alice"), false, &[], |_| Vec::new());
        assert_eq!(b.tokens.verify(&token, now).unwrap().sub, "alice");
        let lone = authorizer(dir.path());
        assert!(lone.tokens.verify(&token, now).is_err());
    }

    /// A logout must stay remembered whatever others do: anonymous visitors
    /// (who get a session and its CSRF field for the asking) and other users
    /// logging out in bulk must not push alice's ended session out of the
    /// bounded set, or her stolen cookie works again.
    #[test]
    fn nobody_else_can_push_an_ended_session_out() {
        let dir = tempfile::tempdir().unwrap();
        let a = authorizer(dir.path());
        let alice = a.issue_session(Some("alice"), 1000);
        a.end_session(&alice, 1001);
        assert!(a.session(&alice, 1002).is_none());
        // Anonymous logouts are not worth remembering: they carry no user.
        let before = a.ended_sessions.lock().unwrap().len();
        for _ in 0..10 {
            a.end_session(&a.issue_session(None, 1000), 1001);
        }
        assert_eq!(a.ended_sessions.lock().unwrap().len(), before);
        // Another user fills the set to its bound and past it.
        for _ in 0..=MAX_ENDED_SESSIONS {
            a.end_session(&a.issue_session(Some("mallory"), 1000), 1001);
        }
        assert!(a.ended_sessions.lock().unwrap().len() <= MAX_ENDED_SESSIONS);
        assert!(
            a.session(&alice, 1002).is_none(),
            "alice's logged-out session came back to life"
        );
    }
}
