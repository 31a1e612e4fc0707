//! Turns method + path of the OCI API (and the health, metrics and token
//! endpoints beside it) into a typed [`Route`] before anything else happens.
//! Repository names span several path segments, so OCI paths are parsed from the
//! end by hand (a pattern router cannot express them; trow needed seven variants).
//! Authorization is derived from the route, never decided by a handler.

use http::Method;

use crate::config::Action;
use crate::oci::{Digest, NameError, Reference, RepoName};

/// Every endpoint wharf serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /v2/`: API version check.
    Base,
    /// `GET /v2/_catalog`.
    Catalog,
    /// `/v2/<name>/manifests/<reference>`.
    Manifest {
        /// Repository.
        name: RepoName,
        /// Tag or digest.
        reference: Reference,
    },
    /// `/v2/<name>/blobs/<digest>`.
    Blob {
        /// Repository.
        name: RepoName,
        /// Content address.
        digest: Digest,
    },
    /// `POST /v2/<name>/blobs/uploads/`.
    UploadStart {
        /// Repository.
        name: RepoName,
    },
    /// `/v2/<name>/blobs/uploads/<id>`.
    Upload {
        /// Repository.
        name: RepoName,
        /// Session id.
        id: String,
    },
    /// `GET /v2/<name>/tags/list`.
    Tags {
        /// Repository.
        name: RepoName,
    },
    /// `GET /v2/<name>/referrers/<digest>`.
    Referrers {
        /// Repository.
        name: RepoName,
        /// Subject digest.
        digest: Digest,
    },
    /// `GET /healthz`: the process is up.
    Health,
    /// `GET /readyz`: storage and index work.
    Ready,
    /// `GET /metrics`: Prometheus text.
    Metrics,
    /// `GET`/`POST /token`: the token endpoint of the Docker Hub auth flow.
    Token,
}

/// Why a request matched no route.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// No endpoint at this path.
    #[error("no such endpoint")]
    NotFound,
    /// The endpoint exists but not for this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// A bad repository name, tag or digest in the path.
    #[error(transparent)]
    Name(#[from] NameError),
}

impl Route {
    /// Parses a request line. `path` is the URI path without the query.
    pub fn parse(method: &Method, path: &str) -> Result<Route, RouteError> {
        let route = match path {
            "/healthz" => Route::Health,
            "/readyz" => Route::Ready,
            "/metrics" => Route::Metrics,
            "/v2" | "/v2/" => Route::Base,
            "/v2/_catalog" => Route::Catalog,
            "/token" => Route::Token,
            p => match p.strip_prefix("/v2/") {
                Some(rest) => parse_repo_path(rest)?,
                None => return Err(RouteError::NotFound),
            },
        };
        if !route.allows(method) {
            return Err(RouteError::MethodNotAllowed);
        }
        Ok(route)
    }

    fn allows(&self, m: &Method) -> bool {
        let read = *m == Method::GET || *m == Method::HEAD;
        match self {
            Route::Base | Route::Catalog | Route::Tags { .. } | Route::Referrers { .. } => read,
            Route::Health | Route::Ready | Route::Metrics => read,
            Route::Token => read || *m == Method::POST,
            Route::Manifest { .. } => read || *m == Method::PUT || *m == Method::DELETE,
            Route::Blob { .. } => read || *m == Method::DELETE,
            Route::UploadStart { .. } => *m == Method::POST,
            Route::Upload { .. } => {
                *m == Method::GET
                    || *m == Method::PATCH
                    || *m == Method::PUT
                    || *m == Method::DELETE
            }
        }
    }

    /// The same route on another repository name (routing maps a requested
    /// name to the local one).
    pub fn with_repo(self, local: RepoName) -> Route {
        match self {
            Route::Manifest { reference, .. } => Route::Manifest {
                name: local,
                reference,
            },
            Route::Blob { digest, .. } => Route::Blob {
                name: local,
                digest,
            },
            Route::UploadStart { .. } => Route::UploadStart { name: local },
            Route::Upload { id, .. } => Route::Upload { name: local, id },
            Route::Tags { .. } => Route::Tags { name: local },
            Route::Referrers { digest, .. } => Route::Referrers {
                name: local,
                digest,
            },
            other => other,
        }
    }

    /// The repository a route acts on, if any.
    pub fn repo(&self) -> Option<&RepoName> {
        match self {
            Route::Manifest { name, .. }
            | Route::Blob { name, .. }
            | Route::UploadStart { name }
            | Route::Upload { name, .. }
            | Route::Tags { name }
            | Route::Referrers { name, .. } => Some(name),
            _ => None,
        }
    }

    /// What the request does to its repository: GET/HEAD pull, POST/PUT/PATCH
    /// push, DELETE delete. Every request on an upload session (its status, and
    /// cancelling it) counts as push: it belongs to a push and removes no content.
    pub fn action(&self, m: &Method) -> Option<Action> {
        self.repo()?;
        Some(match *m {
            _ if matches!(self, Route::Upload { .. }) => Action::Push,
            Method::GET | Method::HEAD => Action::Pull,
            Method::DELETE => Action::Delete,
            _ => Action::Push,
        })
    }

    /// A short stable name for logs and metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            Route::Base => "base",
            Route::Catalog => "catalog",
            Route::Manifest { .. } => "manifest",
            Route::Blob { .. } => "blob",
            Route::UploadStart { .. } => "upload_start",
            Route::Upload { .. } => "upload",
            Route::Tags { .. } => "tags",
            Route::Referrers { .. } => "referrers",
            Route::Health => "healthz",
            Route::Ready => "readyz",
            Route::Metrics => "metrics",
            Route::Token => "token",
        }
    }
}

/// Splits `rest` into everything before its last `n` segments and those
/// segments (in order), without allocating.
fn split_tail<const N: usize>(rest: &str) -> Option<(&str, [&str; N])> {
    let mut tail = [""; N];
    let mut head = rest;
    for slot in tail.iter_mut().rev() {
        let (h, seg) = head.rsplit_once('/')?;
        *slot = seg;
        head = h;
    }
    Some((head, tail))
}

fn parse_repo_path(rest: &str) -> Result<Route, RouteError> {
    let name = |head: &str| -> Result<RepoName, RouteError> { Ok(head.parse()?) };
    if let Some((head, ["tags", "list"])) = split_tail(rest) {
        return Ok(Route::Tags { name: name(head)? });
    }
    if let Some((head, ["blobs", "uploads"])) = split_tail(rest) {
        return Ok(Route::UploadStart { name: name(head)? });
    }
    if let Some((head, ["blobs", "uploads", id])) = split_tail(rest) {
        if id.is_empty() {
            return Ok(Route::UploadStart { name: name(head)? });
        }
        if id.len() > 128
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(RouteError::NotFound);
        }
        return Ok(Route::Upload {
            name: name(head)?,
            id: id.to_owned(),
        });
    }
    if let Some((head, [kind, last])) = split_tail(rest) {
        match kind {
            "manifests" => {
                return Ok(Route::Manifest {
                    name: name(head)?,
                    reference: last.parse()?,
                });
            }
            "blobs" => {
                let digest = last.parse().map_err(NameError::from)?;
                return Ok(Route::Blob {
                    name: name(head)?,
                    digest,
                });
            }
            "referrers" => {
                let digest = last.parse().map_err(NameError::from)?;
                return Ok(Route::Referrers {
                    name: name(head)?,
                    digest,
                });
            }
            _ => {}
        }
    }
    Err(RouteError::NotFound)
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    fn get(p: &str) -> Result<Route, RouteError> {
        Route::parse(&Method::GET, p)
    }

    #[test]
    fn multi_segment_names() {
        let r = get("/v2/a/b/c/manifests/latest").unwrap();
        assert!(matches!(r, Route::Manifest { ref name, .. } if name.as_str() == "a/b/c"));
        let r = get(&format!("/v2/x/blobs/y/blobs/{D}")).unwrap();
        assert!(matches!(r, Route::Blob { ref name, .. } if name.as_str() == "x/blobs/y"));
        let r = get("/v2/ghcr.io/org/app/tags/list").unwrap();
        assert!(matches!(r, Route::Tags { ref name } if name.as_str() == "ghcr.io/org/app"));
        assert!(matches!(
            get(&format!("/v2/r/referrers/{D}")),
            Ok(Route::Referrers { .. })
        ));
    }

    #[test]
    fn uploads() {
        let p = Route::parse(&Method::POST, "/v2/a/b/blobs/uploads/").unwrap();
        assert!(matches!(p, Route::UploadStart { ref name } if name.as_str() == "a/b"));
        let p = Route::parse(&Method::POST, "/v2/a/blobs/uploads").unwrap();
        assert!(matches!(p, Route::UploadStart { .. }));
        let p = Route::parse(&Method::PATCH, "/v2/a/blobs/uploads/abc123").unwrap();
        assert!(matches!(p, Route::Upload { ref id, .. } if id == "abc123"));
        assert!(Route::parse(&Method::PATCH, "/v2/a/blobs/uploads/..").is_err());
    }

    #[test]
    fn errors_and_actions() {
        assert!(matches!(
            get("/v2/../x/manifests/latest"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            get("/v2/UP/manifests/latest"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            get("/v2/a/manifests/sha256:zz"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            get("/v2/a/blobs/notadigest"),
            Err(RouteError::Name(_))
        ));
        assert!(matches!(
            get("/v2/manifests/latest"),
            Err(RouteError::NotFound)
        ));
        assert!(matches!(get("/v3/"), Err(RouteError::NotFound)));
        assert!(matches!(get("/token"), Ok(Route::Token)));
        // The admin API is a surface of its own (`http::admin`).
        assert!(matches!(get("/_wharf/v1/repos"), Err(RouteError::NotFound)));
        assert!(matches!(
            Route::parse(&Method::POST, "/v2/a/manifests/latest"),
            Err(RouteError::MethodNotAllowed)
        ));
        let m = get("/v2/a/manifests/latest").unwrap();
        assert_eq!(m.action(&Method::GET), Some(Action::Pull));
        assert_eq!(m.action(&Method::PUT), Some(Action::Push));
        assert_eq!(m.action(&Method::DELETE), Some(Action::Delete));
        assert_eq!(get("/v2/").unwrap().action(&Method::GET), None);
        let u = Route::parse(&Method::GET, "/v2/a/blobs/uploads/x").unwrap();
        assert_eq!(u.action(&Method::GET), Some(Action::Push));
        assert_eq!(u.action(&Method::DELETE), Some(Action::Push));
    }
}
