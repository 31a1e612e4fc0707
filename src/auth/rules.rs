//! The access policy: what anonymous clients get, the `[[auth.rule]]` list (first
//! match wins), and who is an admin. Pure decisions, no I/O, so every combination
//! is unit-tested.

use crate::config::{Action, AnonymousPull, AuthConfig, AuthRule, AuthScheme};

/// A snapshot of `[auth]`, replaced whole on SIGHUP.
#[derive(Debug, Clone)]
pub struct Policy {
    /// What anonymous clients may pull.
    pub anonymous_pull: AnonymousPull,
    /// Rules in order.
    pub rules: Vec<AuthRule>,
    /// Admin users.
    pub admins: Vec<String>,
    /// Whether an htpasswd file is configured (without users, loopback may write).
    pub has_users: bool,
    /// Upstream names: a local name under one of them is mirrored content.
    pub upstreams: Vec<String>,
    /// The scheme in force (`auto` resolved).
    pub scheme: AuthScheme,
}

/// `*` matches any run of characters (including `/`), `?` one character.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == b'?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

impl Policy {
    /// Builds the policy from `[auth]` and the upstream names.
    pub fn from_config(auth: &AuthConfig, upstreams: &[String]) -> Policy {
        Policy {
            anonymous_pull: auth.anonymous_pull,
            rules: auth.rule.clone(),
            admins: auth.admins.clone(),
            has_users: auth.htpasswd.is_some(),
            upstreams: upstreams.to_vec(),
            scheme: AuthScheme::effective(auth),
        }
    }

    /// Whether a local name is mirrored content (`<upstream-name>/...`).
    pub fn is_mirrored(&self, repo: &str) -> bool {
        repo.split_once('/')
            .is_some_and(|(first, _)| self.upstreams.iter().any(|u| u == first))
    }

    /// What an anonymous client may do with `repo`.
    fn anonymous_allows(&self, repo: &str, action: Action, loopback: bool) -> bool {
        match action {
            Action::Pull => match self.anonymous_pull {
                AnonymousPull::All => true,
                AnonymousPull::Mirrored if self.is_mirrored(repo) => true,
                AnonymousPull::Mirrored | AnonymousPull::None => !self.has_users && loopback,
            },
            Action::Push | Action::Delete => !self.has_users && loopback,
        }
    }

    /// The decision for `user` (None = anonymous) doing `action` on `repo`.
    pub fn allows(&self, user: Option<&str>, repo: &str, action: Action, loopback: bool) -> bool {
        if self.anonymous_allows(repo, action, loopback) {
            return true;
        }
        let Some(user) = user else { return false };
        if self.rules.is_empty() {
            return true;
        }
        self.rules
            .iter()
            .find(|r| {
                r.users.iter().any(|u| u == "*" || u == user)
                    && r.repos.iter().any(|g| glob_match(g, repo))
            })
            .is_some_and(|r| r.actions.contains(&action))
    }

    /// Whether `user` may use the `/_wharf/` admin API. Without users, only loopback.
    pub fn is_admin(&self, user: Option<&str>, loopback: bool) -> bool {
        match user {
            Some(u) => self.admins.iter().any(|a| a == u),
            None => !self.has_users && loopback,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(users: &[&str], repos: &[&str], actions: &[Action]) -> AuthRule {
        AuthRule {
            users: users.iter().map(|s| s.to_string()).collect(),
            repos: repos.iter().map(|s| s.to_string()).collect(),
            actions: actions.to_vec(),
        }
    }

    #[test]
    fn globs() {
        assert!(glob_match("team/*", "team/app"));
        assert!(glob_match("team/*", "team/a/b"));
        assert!(!glob_match("team/*", "teamx/app"));
        assert!(glob_match("*", "anything/at/all"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*/app", "x/y/app"));
        assert!(glob_match("exact", "exact"));
        assert!(!glob_match("exact", "exactly"));
    }

    #[test]
    fn first_match_wins_and_no_match_denies() {
        use Action::*;
        let p = Policy {
            anonymous_pull: AnonymousPull::None,
            rules: vec![
                rule(&["ci"], &["team/locked"], &[]),
                rule(&["ci"], &["team/*"], &[Pull, Push]),
                rule(&["*"], &["public/*"], &[Pull]),
            ],
            admins: vec!["root".into()],
            has_users: true,
            upstreams: vec![],
            scheme: AuthScheme::Basic,
        };
        assert!(p.allows(Some("ci"), "team/app", Push, false));
        assert!(!p.allows(Some("ci"), "team/app", Delete, false));
        assert!(
            !p.allows(Some("ci"), "team/locked", Pull, false),
            "[] denies"
        );
        assert!(p.allows(Some("bob"), "public/x", Pull, false));
        assert!(!p.allows(Some("bob"), "public/x", Push, false));
        assert!(
            !p.allows(Some("bob"), "team/app", Pull, false),
            "no match denies"
        );
        assert!(!p.allows(None, "public/x", Pull, false));
        assert!(
            !p.allows(None, "public/x", Push, true),
            "with users, loopback is not special"
        );
        assert!(p.is_admin(Some("root"), false));
        assert!(!p.is_admin(Some("ci"), true));
        assert!(!p.is_admin(None, true));
    }

    #[test]
    fn no_rules_means_users_may_do_everything_and_anonymous_gets_its_grant() {
        use Action::*;
        let mut p = Policy {
            anonymous_pull: AnonymousPull::All,
            rules: vec![],
            admins: vec![],
            has_users: true,
            upstreams: vec!["docker.io".into()],
            scheme: AuthScheme::Token,
        };
        assert!(p.allows(Some("anyone"), "x/y", Delete, false));
        assert!(p.allows(None, "x/y", Pull, false));
        assert!(!p.allows(None, "x/y", Push, false));
        p.rules = vec![rule(&["ci"], &["team/*"], &[Push])];
        assert!(
            p.allows(Some("ci"), "team/a", Pull, false),
            "users also get the anonymous grant"
        );
        p.anonymous_pull = AnonymousPull::Mirrored;
        assert!(
            !p.allows(None, "team/a", Pull, false),
            "hosted content is not mirrored"
        );
    }

    #[test]
    fn without_users_loopback_writes_and_is_admin() {
        use Action::*;
        let p = Policy {
            anonymous_pull: AnonymousPull::None,
            rules: vec![],
            admins: vec![],
            has_users: false,
            upstreams: vec![],
            scheme: AuthScheme::Basic,
        };
        assert!(p.allows(None, "a", Push, true));
        assert!(p.allows(None, "a", Pull, true));
        assert!(!p.allows(None, "a", Pull, false));
        assert!(!p.allows(None, "a", Delete, false));
        assert!(p.is_admin(None, true));
        assert!(!p.is_admin(None, false));
    }
}
