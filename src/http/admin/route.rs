//! Turns method + path under `/_wharf/` into a typed [`AdminRoute`] before
//! anything else happens. Adding an endpoint is one variant here (its path in
//! `AdminRoute::parse_path`, its method in [`AdminRoute::method`]), one arm in
//! `dispatch`, and one handler file.

use http::Method;

use super::AdminError;
use crate::oci::RepoName;

/// Where the admin API lives; every endpoint is under it.
pub const PREFIX: &str = "/_wharf/v1/";

/// Every admin endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AdminRoute {
    /// `GET /_wharf/v1/repos`: every repository.
    Repos,
    /// `GET /_wharf/v1/repos/<name>`: one repository's tags (the name may hold `/`).
    Repo {
        /// The name as the client wrote it (resolved to the local one later).
        name: RepoName,
    },
    /// `GET /_wharf/v1/usage`: bytes and blob counts.
    Usage,
    /// `POST /_wharf/v1/rm`: deletes a tag or a manifest.
    Rm,
    /// `GET /_wharf/v1/status`: version, uptime, every worker.
    Status,
    /// `POST /_wharf/v1/workers/<name>/run`: kicks a worker.
    WorkerRun {
        /// The worker's name.
        worker: String,
    },
    /// `POST /_wharf/v1/gc` `{"dry_run":bool}`: one collection now, its report.
    Gc,
    /// `POST /_wharf/v1/verify`: re-hashes every blob now, its report.
    Verify,
    /// `POST /_wharf/v1/evict`: one eviction pass now, its report.
    Evict,
    /// `POST /_wharf/v1/import` `{"dir":"...","link":false}`: imports a
    /// `registry:2` storage root now, its report.
    Import,
    /// `GET /_wharf/v1/pins`: every pin.
    Pins,
    /// `POST /_wharf/v1/pin` `{"reference":"..."}`: pins an image.
    Pin,
    /// `POST /_wharf/v1/unpin` `{"reference":"..."}`: removes a pin.
    Unpin,
    /// `GET /_wharf/v1/replicate`: each replication target's queue and state.
    Replicate,
    /// `POST /_wharf/v1/replicate`: one replication pass now (both sides
    /// compared), its report.
    ReplicateRun,
    /// `GET /_wharf/v1/sync`: the sync rules and their last passes.
    Sync,
    /// `POST /_wharf/v1/sync`: every sync rule now, its report.
    SyncNow,
    /// `POST /_wharf/v1/backup` `{"dest":"..."}`: an online backup, its report.
    Backup,
}

/// Whether `path` belongs to the admin surface (it answers every path under
/// `/_wharf`, unknown ones with its own 404).
pub fn is_admin_path(path: &str) -> bool {
    path == "/_wharf" || path.starts_with("/_wharf/")
}

impl AdminRoute {
    /// Parses a request line: an unknown path is 404, a known one with the
    /// wrong method 405 (with the method it takes), a malformed name 400.
    pub fn parse(method: &Method, path: &str) -> Result<AdminRoute, AdminError> {
        let not_found = || AdminError::NotFound(format!("no admin endpoint at {}", clip(path)));
        let rest = path.strip_prefix(PREFIX).ok_or_else(not_found)?;
        let segs: Vec<&str> = rest.split('/').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(not_found());
        }
        let route = match (Self::parse_path(&segs)?.ok_or_else(not_found)?, method) {
            // One path, two methods: listing and running.
            (AdminRoute::Sync, &Method::POST) => AdminRoute::SyncNow,
            (AdminRoute::Replicate, &Method::POST) => AdminRoute::ReplicateRun,
            (r, _) => r,
        };
        let allow = route.method();
        if *method != allow {
            return Err(AdminError::MethodNotAllowed {
                method: method.as_str().chars().take(32).collect(),
                allow,
            });
        }
        Ok(route)
    }

    /// The route a path (split at `/`, after the prefix) names, if any.
    fn parse_path(segs: &[&str]) -> Result<Option<AdminRoute>, AdminError> {
        Ok(Some(match segs {
            ["repos"] => AdminRoute::Repos,
            ["repos", name @ ..] => AdminRoute::Repo {
                name: name
                    .join("/")
                    .parse()
                    .map_err(|e: crate::oci::NameError| AdminError::BadRequest(e.to_string()))?,
            },
            ["usage"] => AdminRoute::Usage,
            ["rm"] => AdminRoute::Rm,
            ["status"] => AdminRoute::Status,
            ["workers", worker, "run"] if is_worker_name(worker) => AdminRoute::WorkerRun {
                worker: (*worker).to_owned(),
            },
            ["gc"] => AdminRoute::Gc,
            ["verify"] => AdminRoute::Verify,
            ["evict"] => AdminRoute::Evict,
            ["import"] => AdminRoute::Import,
            ["pins"] => AdminRoute::Pins,
            ["pin"] => AdminRoute::Pin,
            ["unpin"] => AdminRoute::Unpin,
            ["replicate"] => AdminRoute::Replicate,
            ["sync"] => AdminRoute::Sync,
            ["backup"] => AdminRoute::Backup,
            _ => return Ok(None),
        }))
    }

    /// The one method an endpoint answers.
    pub fn method(&self) -> Method {
        match self {
            AdminRoute::Repos
            | AdminRoute::Repo { .. }
            | AdminRoute::Usage
            | AdminRoute::Status
            | AdminRoute::Pins
            | AdminRoute::Replicate
            | AdminRoute::Sync => Method::GET,
            AdminRoute::Rm
            | AdminRoute::WorkerRun { .. }
            | AdminRoute::Gc
            | AdminRoute::Verify
            | AdminRoute::Evict
            | AdminRoute::Import
            | AdminRoute::Pin
            | AdminRoute::Unpin
            | AdminRoute::ReplicateRun
            | AdminRoute::SyncNow
            | AdminRoute::Backup => Method::POST,
        }
    }
}

/// Worker names are short lowercase words (`gc`, `uploads`).
fn is_worker_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// A path for a message, cut short (paths are client input).
fn clip(path: &str) -> String {
    path.chars().take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(m: Method, p: &str) -> Result<AdminRoute, AdminError> {
        AdminRoute::parse(&m, p)
    }

    #[test]
    fn routes_and_names_with_slashes() {
        assert_eq!(
            parse(Method::GET, "/_wharf/v1/repos").unwrap(),
            AdminRoute::Repos
        );
        assert!(matches!(
            parse(Method::GET, "/_wharf/v1/repos/docker.io/library/nginx"),
            Ok(AdminRoute::Repo { ref name }) if name.as_str() == "docker.io/library/nginx"
        ));
        assert_eq!(
            parse(Method::GET, "/_wharf/v1/usage").unwrap(),
            AdminRoute::Usage
        );
        assert_eq!(
            parse(Method::POST, "/_wharf/v1/rm").unwrap(),
            AdminRoute::Rm
        );
        assert_eq!(
            parse(Method::GET, "/_wharf/v1/status").unwrap(),
            AdminRoute::Status
        );
        assert!(matches!(
            parse(Method::POST, "/_wharf/v1/workers/uploads/run"),
            Ok(AdminRoute::WorkerRun { ref worker }) if worker == "uploads"
        ));
        for (m, p, want) in [
            (Method::POST, "/_wharf/v1/gc", AdminRoute::Gc),
            (Method::POST, "/_wharf/v1/verify", AdminRoute::Verify),
            (Method::POST, "/_wharf/v1/evict", AdminRoute::Evict),
            (Method::POST, "/_wharf/v1/import", AdminRoute::Import),
            (Method::GET, "/_wharf/v1/pins", AdminRoute::Pins),
            (Method::POST, "/_wharf/v1/pin", AdminRoute::Pin),
            (Method::POST, "/_wharf/v1/unpin", AdminRoute::Unpin),
            (Method::GET, "/_wharf/v1/sync", AdminRoute::Sync),
            (Method::POST, "/_wharf/v1/sync", AdminRoute::SyncNow),
            (Method::POST, "/_wharf/v1/backup", AdminRoute::Backup),
            (Method::GET, "/_wharf/v1/replicate", AdminRoute::Replicate),
            (
                Method::POST,
                "/_wharf/v1/replicate",
                AdminRoute::ReplicateRun,
            ),
        ] {
            assert_eq!(parse(m, p).unwrap(), want, "{p}");
        }
    }

    #[test]
    fn unknown_paths_wrong_methods_bad_names() {
        for p in [
            "/_wharf/du",
            "/_wharf/ls",
            "/_wharf",
            "/_wharf/v1/",
            "/_wharf/v1/repos/",
            "/_wharf/v1/nope",
            "/_wharf/v1/workers/gc",
            "/_wharf/v1/workers/../run",
            "/_wharf/v2/repos",
        ] {
            assert!(
                matches!(parse(Method::GET, p), Err(AdminError::NotFound(_))),
                "{p}"
            );
        }
        assert!(matches!(
            parse(Method::POST, "/_wharf/v1/repos"),
            Err(AdminError::MethodNotAllowed { ref allow, .. }) if allow == Method::GET
        ));
        for p in [
            "/_wharf/v1/rm",
            "/_wharf/v1/gc",
            "/_wharf/v1/verify",
            "/_wharf/v1/evict",
            "/_wharf/v1/pin",
            "/_wharf/v1/unpin",
        ] {
            assert!(
                matches!(
                    parse(Method::GET, p),
                    Err(AdminError::MethodNotAllowed { ref allow, .. }) if allow == Method::POST
                ),
                "{p}"
            );
        }
        assert!(matches!(
            parse(Method::POST, "/_wharf/v1/pins"),
            Err(AdminError::MethodNotAllowed { ref allow, .. }) if allow == Method::GET
        ));
        assert!(matches!(
            parse(Method::POST, "/_wharf/v1/pins/x"),
            Err(AdminError::NotFound(_))
        ));
        assert!(matches!(
            parse(Method::GET, "/_wharf/v1/repos/Team/App"),
            Err(AdminError::BadRequest(_))
        ));
        assert!(is_admin_path("/_wharf/v1/repos"));
        assert!(is_admin_path("/_wharf"));
        assert!(!is_admin_path("/_wharfx"));
        assert!(!is_admin_path("/v2/_wharf/x"));
    }
}
