//! Who may do what. Until users are configured, wharf is open for pulls and
//! accepts pushes and deletes only from the machine itself (loopback), so a fresh
//! install on a LAN host is not an open write target.

use std::net::SocketAddr;

use http::Method;

use crate::config::{Action, AnonymousPull, Config};
use crate::http::{ApiError, Route};

/// Decides each request from its typed route.
pub struct Authorizer {
    anonymous_pull: AnonymousPull,
}

/// The message a non-loopback writer sees while no users exist.
pub const NO_USERS_HINT: &str = "pushes and deletes are accepted only from this host until users exist: \
create one with `wharf user add NAME --htpasswd /etc/wharf/htpasswd` and set [auth] htpasswd";

impl Authorizer {
    /// Builds the authorizer from `[auth]`.
    pub fn new(config: &Config) -> Authorizer {
        Authorizer {
            anonymous_pull: config.auth.anonymous_pull,
        }
    }

    /// Allows or refuses a request.
    pub fn authorize(
        &self,
        route: &Route,
        method: &Method,
        remote: SocketAddr,
    ) -> Result<(), ApiError> {
        let loopback = remote.ip().to_canonical().is_loopback();
        match route.action(method) {
            None => Ok(()),
            Some(Action::Pull) => match self.anonymous_pull {
                AnonymousPull::All => Ok(()),
                _ if loopback => Ok(()),
                _ => Err(ApiError::Denied(
                    "anonymous pulls are disabled on this registry".into(),
                )),
            },
            Some(Action::Push | Action::Delete) if loopback => Ok(()),
            Some(_) => Err(ApiError::Denied(NO_USERS_HINT.into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(path: &str, m: &Method) -> Route {
        Route::parse(m, path).unwrap()
    }

    #[test]
    fn without_users_only_loopback_writes() {
        let auth = Authorizer::new(&Config::default());
        let lan: SocketAddr = "192.168.1.20:40000".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:40000".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        let v6: SocketAddr = "[::1]:40000".parse().unwrap();
        let put = route("/v2/a/manifests/latest", &Method::PUT);
        let del = route("/v2/a/manifests/latest", &Method::DELETE);
        let post = route("/v2/a/blobs/uploads/", &Method::POST);
        let get = route("/v2/a/manifests/latest", &Method::GET);
        for (r, m) in [
            (&put, Method::PUT),
            (&del, Method::DELETE),
            (&post, Method::POST),
        ] {
            match auth.authorize(r, &m, lan) {
                Err(ApiError::Denied(msg)) => assert!(msg.contains("wharf user add"), "{msg}"),
                other => panic!("LAN {m} allowed: {other:?}"),
            }
            for ok in [local, mapped, v6] {
                assert!(auth.authorize(r, &m, ok).is_ok(), "{ok} {m}");
            }
        }
        assert!(auth.authorize(&get, &Method::GET, lan).is_ok());
        let mut cfg = Config::default();
        cfg.auth.anonymous_pull = AnonymousPull::None;
        let closed = Authorizer::new(&cfg);
        assert!(closed.authorize(&get, &Method::GET, lan).is_err());
    }
}
