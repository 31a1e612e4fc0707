//! The admin API, `/_wharf/v1/`: a surface of its own beside the OCI API, over
//! the same pipeline (client address, access log, metrics) but with typed
//! [`AdminRoute`]s, JSON answers and JSON errors of its own
//! (`{"error":{"code","message"}}`, rendered in [`error`]). Every endpoint needs
//! [`crate::auth::Access::Admin`]: an `[auth] admins` user (Basic credentials
//! work under every scheme) or, while there are no users, a loopback client.

mod backup;
pub mod error;
mod evict;
mod gc;
mod import;
mod pins;
mod replicate;
mod repos;
mod request;
mod rm;
pub mod route;
mod status;
mod sync;
mod usage;
mod verify;
mod workers;

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use serde::Serialize;

pub use error::AdminError;
pub use route::{AdminRoute, is_admin_path};

use super::State;
use super::body::{Body, full};
use crate::auth::Access;
use crate::net::ClientAddr;
use crate::oci::RepoName;

/// Serves one request under `/_wharf`: route, caller, authorization, handler;
/// failures become JSON errors here. `user` is set for the access log.
pub(super) async fn serve(
    state: &Arc<State>,
    req: Request<Incoming>,
    client: ClientAddr,
    user: &mut Option<String>,
) -> Response<Body> {
    run(state, req, client, user)
        .await
        .unwrap_or_else(AdminError::into_response)
}

async fn run(
    state: &Arc<State>,
    req: Request<Incoming>,
    client: ClientAddr,
    user: &mut Option<String>,
) -> Result<Response<Body>, AdminError> {
    super::check_host(&req).map_err(|e| AdminError::BadRequest(e.to_string()))?;
    let route = AdminRoute::parse(req.method(), req.uri().path())?;
    let refuse = |d| AdminError::from(state.refusal(req.headers(), None, None, d));
    let caller = state
        .auth
        .identify(req.headers(), client)
        .await
        .map_err(refuse)?;
    *user = caller.user().map(str::to_owned);
    state
        .auth
        .authorize(&Access::Admin, &caller)
        .map_err(refuse)?;
    dispatch(state, route, req).await
}

/// The single `match` from admin route to handler.
async fn dispatch(
    state: &Arc<State>,
    route: AdminRoute,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    match route {
        AdminRoute::Repos => repos::list(state).await,
        AdminRoute::Repo { name } => repos::show(state, &name).await,
        AdminRoute::Usage => usage::show(state).await,
        AdminRoute::Rm => rm::remove(state, req).await,
        AdminRoute::Status => Ok(status::show(state)),
        AdminRoute::WorkerRun { worker } => workers::run(state, &worker),
        AdminRoute::Gc => gc::run(state, req).await,
        AdminRoute::Verify => verify::run(state, req).await,
        AdminRoute::Evict => evict::run(state, req).await,
        AdminRoute::Import => import::run(state, req).await,
        AdminRoute::Pins => pins::list(state).await,
        AdminRoute::Pin => pins::pin(state, req).await,
        AdminRoute::Unpin => pins::unpin(state, req).await,
        AdminRoute::Replicate => replicate::show(state).await,
        AdminRoute::ReplicateRun => replicate::run(state).await,
        AdminRoute::Sync => sync::list(state).await,
        AdminRoute::SyncNow => sync::run(state, req).await,
        AdminRoute::Backup => backup::run(state, req).await,
    }
}

/// A JSON answer.
fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_else(|_| b"{}".to_vec());
    let len = body.len();
    let mut resp = Response::new(full(Bytes::from(body)));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    resp
}

/// The local names a name as clients write it may stand for, in order: where
/// routing sends a read of it (`nginx` → `docker.io/library/nginx`), then the
/// name as written.
fn candidates(state: &State, name: &RepoName) -> Vec<RepoName> {
    let mut out = Vec::with_capacity(2);
    if let Some(local) = state.local_name(name) {
        out.push(local);
    }
    if !out.contains(name) {
        out.push(name.clone());
    }
    out
}

/// The local repository a name as clients write it stands for: the first of
/// its [`candidates`] that exists here; `None` when none does.
async fn existing_repo(state: &State, name: &RepoName) -> Result<Option<RepoName>, AdminError> {
    for c in candidates(state, name) {
        if state.store.has_repo(&c).await? {
            return Ok(Some(c));
        }
    }
    Ok(None)
}
