//! Name routing applied to one request: the route's repository is resolved
//! once (DESIGN's rules, `?ns=` included) into the local name the handler
//! acts on, the upstream for a mirrored name, and the [`Access`] that
//! authorization checks, so the name a token is issued for and the name a
//! request reaches come from the same function.

use http::Method;

use super::{ApiError, Proxied, Route, State, router};
use crate::auth::{Access, Caller};
use crate::config::Action;
use crate::oci::RepoName;
use crate::oci::routing::{Intent, Target};

/// What a request does to its repository, for routing.
fn intent(route: &Route, method: &Method) -> Intent {
    match route.action(method) {
        Some(Action::Push) => Intent::Push,
        Some(Action::Delete) => Intent::Delete,
        _ => Intent::Read,
    }
}

/// The permission a request without a repository needs.
fn access_without_repo(route: &Route) -> Access {
    match route {
        Route::Base => Access::ApiRoot,
        Route::Catalog => Access::Catalog,
        _ => Access::Open,
    }
}

/// A request's route after name routing, with what it needs.
pub(super) struct Resolved {
    pub(super) route: Route,
    pub(super) proxy: Option<Proxied>,
    pub(super) access: Access,
    /// This push makes the name hosted (rule 4): logged with the user.
    pub(super) claim: bool,
    /// A push or delete on a mirrored name: refused with this message.
    pub(super) refusal: Option<String>,
}

/// Applies name routing to a parsed route: picks the local name, the upstream
/// for mirrored names, and the permission to check, all from one call to the
/// routing function.
pub(super) fn resolve_route(
    state: &State,
    parsed: Route,
    method: &Method,
    ns: Option<&str>,
    caller: &Caller,
    from_peer: bool,
) -> Result<Resolved, ApiError> {
    let Some(requested) = parsed.repo().cloned() else {
        return Ok(Resolved {
            access: access_without_repo(&parsed),
            route: parsed,
            proxy: None,
            claim: false,
            refusal: None,
        });
    };
    let intent = intent(&parsed, method);
    let action = parsed.action(method).unwrap_or(Action::Pull);
    let target = state
        .resolve(&requested, ns, intent)
        .map_err(|e| ApiError::Route(router::RouteError::Name(e)))?;
    let repo_access = |local: &RepoName, action: Action, scope_name: &RepoName| Access::Repo {
        local: local.to_string(),
        action,
        scope: crate::auth::scope_for(scope_name.as_str(), action),
    };
    match target {
        Target::Hosted { claim } => Ok(Resolved {
            access: repo_access(&requested, action, &requested),
            route: parsed,
            proxy: None,
            claim,
            refusal: None,
        }),
        Target::Proxied(m) => {
            // A blob HEAD on a name a push would claim, from a caller allowed to
            // push there: skopeo, podman and buildah check every blob that way
            // before they upload, so it is answered from the local store and a
            // push never depends on the upstream.
            let pusher_check = m.claimable
                && *method == Method::HEAD
                && matches!(parsed, Route::Blob { .. })
                && state.auth.allows(caller, requested.as_str(), Action::Push);
            if pusher_check {
                return Ok(Resolved {
                    access: repo_access(&requested, Action::Push, &requested),
                    route: parsed,
                    proxy: None,
                    claim: false,
                    refusal: None,
                });
            }
            let refusal = (intent != Intent::Read)
                .then(|| state.routes.write_refusal(&requested, &m, intent));
            // A challenge asks for a scope the client can request: its own name
            // when that reaches the same local name without `ns`, else the
            // local name itself (which routes to itself).
            // Without `ns` the route just computed is that very answer.
            let same = ns.is_none()
                || state
                    .resolve(&requested, None, intent)
                    .is_ok_and(|t| t.local(&requested) == &m.local);
            let scope_name = if same { &requested } else { &m.local };
            let access = repo_access(&m.local, action, scope_name);
            let proxy = (!from_peer).then(|| Proxied {
                upstream: m.upstream,
                remote: m.remote.clone(),
                requested: requested.clone(),
            });
            Ok(Resolved {
                route: parsed.with_repo(m.local),
                proxy,
                access,
                claim: false,
                refusal,
            })
        }
    }
}
