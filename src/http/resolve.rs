//! Name routing applied to one request: the route's repository is resolved
//! once (DESIGN's rules, `?ns=` included) into the local name the handler
//! acts on, the [`Source`] that answers its reads (hosted, or a mirror of an
//! upstream), and the [`Access`] that authorization checks, so the name a
//! token is issued for and the name a request reaches come from the same
//! function.

use http::Method;

use super::{ApiError, Route, State, router};
use crate::auth::{Access, Caller};
use crate::config::Action;
use crate::oci::RepoName;
use crate::oci::routing::{Intent, Target};
use crate::proxy::Source;

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
    /// Where reads of the route's repository are answered from.
    pub(super) source: Option<Source>,
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
            source: None,
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
            source: Some(state.proxy.hosted(requested.clone())),
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
                    source: Some(state.proxy.hosted(requested.clone())),
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
            // A peer asks for what is in our store only, never through our
            // own upstream.
            let source = if from_peer {
                state.proxy.hosted(m.local.clone())
            } else {
                state
                    .proxy
                    .mirror(m.local.clone(), m.upstream, m.remote.clone(), requested)
            };
            Ok(Resolved {
                route: parsed.with_repo(m.local),
                source: Some(source),
                access,
                claim: false,
                refusal,
            })
        }
    }
}
