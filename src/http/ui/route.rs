//! Turns method + path under `/ui` into a typed [`UiRoute`] before anything
//! else happens. A repository name is its own path (`/ui/repos/team/app`); an
//! image is the name, a `-` segment (never a name component) and the tag or
//! digest (`/ui/repos/team/app/-/1.0`). Names written as one encoded segment
//! (`team%2Fapp`) are read too.

use http::Method;

use super::UiError;
use super::format::decode_segment;
use crate::oci::{Reference, RepoName};

/// Where the web page lives.
pub const PREFIX: &str = "/ui/";

/// A POST action of an admin (`/ui/actions/<action>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UiAction {
    /// Deletes a tag (its manifest stays until gc finds it unreferenced).
    DeleteTag,
    /// Pins an image (tag or digest).
    Pin,
    /// Removes a pin.
    Unpin,
    /// One garbage collection now.
    Gc,
    /// Every sync rule now.
    Sync,
}

/// Every page and form target of the web page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UiRoute {
    /// `/ui` without the slash: redirected to `ui/`.
    Bare,
    /// `GET /ui/`: the dashboard.
    Dashboard,
    /// `GET /ui/static/wharf.css`.
    Stylesheet,
    /// `GET /ui/repos?q=&page=`.
    Repos,
    /// `GET /ui/repos/<name>`: a repository's tags.
    Repo {
        /// The name (as listed: the local one).
        name: RepoName,
    },
    /// `GET /ui/repos/<name>/-/<reference>`: one image.
    Image {
        /// The repository.
        name: RepoName,
        /// Tag or digest.
        reference: Reference,
    },
    /// `GET /ui/login`: the form.
    LoginForm,
    /// `POST /ui/login`.
    Login,
    /// `POST /ui/logout`.
    Logout,
    /// `POST /ui/actions/<action>`.
    Action(UiAction),
}

/// The path segment between a repository's name and a reference: `-` is not
/// a valid name component, so the split is never ambiguous.
pub const IMAGE_MARK: &str = "-";

/// Whether `path` belongs to the web page.
pub fn is_ui_path(path: &str) -> bool {
    path == "/ui" || path.starts_with(PREFIX)
}

impl UiRoute {
    /// Parses a request line: unknown paths are 404, a known one with the
    /// wrong method 405, a malformed name or reference 400.
    pub fn parse(method: &Method, path: &str) -> Result<UiRoute, UiError> {
        let not_found = || UiError::NotFound("there is no such page".into());
        if path == "/ui" {
            return check(UiRoute::Bare, method);
        }
        let rest = path.strip_prefix(PREFIX).ok_or_else(not_found)?;
        let segs: Vec<&str> = rest.split('/').collect();
        let route = match segs.as_slice() {
            [""] => UiRoute::Dashboard,
            ["static", "wharf.css"] => UiRoute::Stylesheet,
            ["repos"] => UiRoute::Repos,
            ["repos", rest @ ..] => match rest.iter().position(|s| *s == IMAGE_MARK) {
                None => UiRoute::Repo {
                    name: name_of(rest)?,
                },
                Some(i) => match &rest[i + 1..] {
                    [reference] => UiRoute::Image {
                        name: name_of(&rest[..i])?,
                        reference: reference_of(reference)?,
                    },
                    _ => return Err(not_found()),
                },
            },
            ["login"] if *method == Method::POST => UiRoute::Login,
            ["login"] => UiRoute::LoginForm,
            ["logout"] => UiRoute::Logout,
            ["actions", a] => UiRoute::Action(match *a {
                "delete-tag" => UiAction::DeleteTag,
                "pin" => UiAction::Pin,
                "unpin" => UiAction::Unpin,
                "gc" => UiAction::Gc,
                "sync" => UiAction::Sync,
                _ => return Err(not_found()),
            }),
            _ => return Err(not_found()),
        };
        check(route, method)
    }

    /// Whether the route is a form target (POST) rather than a page.
    pub fn is_post(&self) -> bool {
        matches!(self, UiRoute::Login | UiRoute::Logout | UiRoute::Action(_))
    }

    /// A short stable name for the access log and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            UiRoute::Bare | UiRoute::Dashboard => "ui_dashboard",
            UiRoute::Stylesheet => "ui_static",
            UiRoute::Repos => "ui_repos",
            UiRoute::Repo { .. } => "ui_repo",
            UiRoute::Image { .. } => "ui_image",
            UiRoute::LoginForm | UiRoute::Login => "ui_login",
            UiRoute::Logout => "ui_logout",
            UiRoute::Action(_) => "ui_action",
        }
    }
}

/// Pages answer GET and HEAD; form targets POST.
fn check(route: UiRoute, method: &Method) -> Result<UiRoute, UiError> {
    let ok = if route.is_post() {
        *method == Method::POST
    } else {
        *method == Method::GET || *method == Method::HEAD
    };
    if ok {
        Ok(route)
    } else {
        Err(UiError::MethodNotAllowed(if route.is_post() {
            Method::POST
        } else {
            Method::GET
        }))
    }
}

fn name_of(segs: &[&str]) -> Result<RepoName, UiError> {
    let bad = || UiError::BadRequest("that is not a repository name".into());
    let parts = segs
        .iter()
        .map(|s| decode_segment(s))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(bad)?;
    parts.join("/").parse().map_err(|_| bad())
}

fn reference_of(seg: &str) -> Result<Reference, UiError> {
    let bad = || UiError::BadRequest("that is neither a tag nor a digest".into());
    decode_segment(seg)
        .ok_or_else(bad)?
        .parse()
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn get(p: &str) -> Result<UiRoute, UiError> {
        UiRoute::parse(&Method::GET, p)
    }

    #[test]
    fn pages_and_names() {
        assert_eq!(get("/ui/").unwrap(), UiRoute::Dashboard);
        assert_eq!(get("/ui").unwrap(), UiRoute::Bare);
        assert_eq!(get("/ui/repos").unwrap(), UiRoute::Repos);
        assert!(matches!(get("/ui/repos/team%2Fapp"),
            Ok(UiRoute::Repo { ref name }) if name.as_str() == "team/app"));
        assert!(
            matches!(get("/ui/repos/team%2fapp/-/sha256%3A0123456789012345678901234567890123456789012345678901234567890123"),
            Ok(UiRoute::Image { ref reference, .. }) if matches!(reference, Reference::Digest(_)))
        );
        assert!(matches!(get("/ui/repos/team/app"),
            Ok(UiRoute::Repo { ref name }) if name.as_str() == "team/app"));
        assert!(matches!(
            get("/ui/repos/a/latest"),
            Ok(UiRoute::Repo { ref name }) if name.as_str() == "a/latest"
        ));
        assert!(matches!(
            get("/ui/repos/team/app/-/1.0"),
            Ok(UiRoute::Image { ref name, reference: Reference::Tag(ref t) })
                if name.as_str() == "team/app" && t.as_str() == "1.0"
        ));
        assert!(matches!(
            get(
                "/ui/repos/a/-/sha256:0123456789012345678901234567890123456789012345678901234567890123"
            ),
            Ok(UiRoute::Image {
                reference: Reference::Digest(_),
                ..
            })
        ));
        assert_eq!(
            UiRoute::parse(&Method::POST, "/ui/login").unwrap(),
            UiRoute::Login
        );
        assert_eq!(
            UiRoute::parse(&Method::POST, "/ui/actions/delete-tag").unwrap(),
            UiRoute::Action(UiAction::DeleteTag)
        );
    }

    #[test]
    fn hostile_paths() {
        for p in [
            "/ui/repos/..",
            "/ui/repos/%2e%2e%2Fx",
            "/ui/repos/A",
            "/ui/repos/a%00b",
            "/ui/repos/%zz",
            "/ui/repos/a//b",
            "/ui/repos/a/",
            "/ui/repos/a/../b",
            "/ui/repos/-/1.0",
        ] {
            assert!(matches!(get(p), Err(UiError::BadRequest(_))), "{p}");
        }
        for p in [
            "/ui/repos/a/-/<script>",
            "/ui/repos/a/-/sha256:zz",
            "/ui/repos/a/-/%2E%2E",
        ] {
            assert!(matches!(get(p), Err(UiError::BadRequest(_))), "{p}");
        }
        for p in [
            "/ui/nope",
            "/ui/repos/a/-/b/c",
            "/ui/repos/a/-",
            "/ui/static/x.js",
            "/uix",
            "/ui/actions/rm-rf",
        ] {
            assert!(
                matches!(
                    UiRoute::parse(&Method::GET, p),
                    Err(UiError::NotFound(_) | UiError::MethodNotAllowed(_))
                ),
                "{p}"
            );
        }
        assert!(matches!(
            UiRoute::parse(&Method::GET, "/ui/actions/gc"),
            Err(UiError::MethodNotAllowed(_))
        ));
        assert!(matches!(
            UiRoute::parse(&Method::POST, "/ui/repos"),
            Err(UiError::MethodNotAllowed(_))
        ));
        assert!(!is_ui_path("/uix"));
        assert!(is_ui_path("/ui"));
    }
}
