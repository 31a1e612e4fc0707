//! `POST /ui/actions/<action>`: delete a tag, pin, unpin, run gc, sync now.
//! Admins only: the server refuses everyone else with 403 whatever the page
//! showed, after the same origin and CSRF checks as every form. The answer is
//! a 303 back to the page with a one-line result shown once.

use http::{Request, Response};
use hyper::body::Incoming;

use super::format::{bytes, repo_path};
use super::page::see_other;
use super::route::UiAction;
use super::{UiError, Visit, form, session, visible_repo};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::{Reference, RepoName};

/// Runs the action.
pub async fn run(
    state: &State,
    visit: &mut Visit,
    action: UiAction,
    req: Request<Incoming>,
) -> Result<Response<Body>, UiError> {
    let f = form::checked_form(state, visit, req).await?;
    if !visit.is_admin(state) {
        tracing::info!(
            user = visit.caller.user().unwrap_or("-"),
            ?action,
            "web page action refused: not an admin"
        );
        return Err(UiError::Forbidden(
            "only admin users ([auth] admins) may do this".into(),
        ));
    }
    let who = visit.caller.user().unwrap_or("-").to_owned();
    let (back, message) = match action {
        UiAction::Gc => {
            let r = state
                .lifecycle
                .gc
                .run_detached(|gc| async move { gc.pass(false).await })
                .await?;
            tracing::info!(
                user = who,
                blobs = r.swept_blobs,
                bytes = r.swept_bytes,
                "gc run from the web page"
            );
            (
                "../".to_owned(),
                format!(
                    "Garbage collection removed {} files ({})",
                    r.swept_blobs,
                    bytes(r.swept_bytes)
                ),
            )
        }
        UiAction::Sync => {
            let r = state
                .sync
                .run_detached(|s| async move { s.pass(true).await })
                .await?;
            let fetched: u64 = r.rules.iter().map(|x| x.fetched).sum();
            let errors: u64 = r.rules.iter().map(|x| x.errors).sum();
            tracing::info!(
                user = who,
                rules = r.rules.len(),
                "sync run from the web page"
            );
            (
                "../".to_owned(),
                format!(
                    "Sync ran {} rules: {fetched} images fetched, {errors} errors",
                    r.rules.len()
                ),
            )
        }
        UiAction::DeleteTag | UiAction::Pin | UiAction::Unpin => {
            let name: RepoName = f
                .get("repo")
                .unwrap_or_default()
                .parse()
                .map_err(|_| UiError::BadRequest("that is not a repository name".into()))?;
            let reference: Reference = f
                .get("reference")
                .unwrap_or_default()
                .parse()
                .map_err(|_| UiError::BadRequest("that is neither a tag nor a digest".into()))?;
            let repo = visible_repo(state, visit, &name).await?;
            let message = match action {
                UiAction::DeleteTag => {
                    let Reference::Tag(t) = &reference else {
                        return Err(UiError::BadRequest("delete-tag takes a tag".into()));
                    };
                    state.store.delete_manifest(&repo, &reference).await?;
                    tracing::info!(user = who, %repo, tag = %t, "tag deleted from the web page");
                    format!("Deleted {repo}:{t}")
                }
                UiAction::Pin => {
                    let d = state.store.pin(&repo, &reference).await?;
                    tracing::info!(user = who, %repo, %reference, digest = %d, "pinned from the web page");
                    format!("Pinned {repo} {reference}")
                }
                _ => {
                    if !state.store.unpin(&repo, &reference).await? {
                        return Err(UiError::NotFound(format!(
                            "{repo} {reference} is not pinned (a pin of its digest is unpinned on the digest's page)"
                        )));
                    }
                    tracing::info!(user = who, %repo, %reference, "unpinned from the web page");
                    format!("Unpinned {repo} {reference}")
                }
            };
            (format!("../repos/{}", repo_path(repo.as_str())), message)
        }
    };
    visit.set_cookies.push(session::set_cookie(
        session::FLASH_COOKIE,
        &state.auth.seal(&message),
        60,
        visit.secure,
    ));
    Ok(see_other(&back))
}
