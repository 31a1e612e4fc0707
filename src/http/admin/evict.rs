//! `POST /_wharf/v1/evict`: one eviction pass now, as a pass of the evict
//! worker, answered with its report (nothing goes while the cache is under
//! `max_cache_size`, or when it is unlimited).

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;

use super::request::no_options;
use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

/// Runs one eviction pass and answers its [`crate::workers::evict::EvictReport`].
pub(super) async fn run(
    state: &State,
    req: Request<Incoming>,
) -> Result<Response<Body>, AdminError> {
    no_options(state, req).await?;
    let report = state
        .lifecycle
        .evict
        .run_detached(|e| async move { e.pass(true).await })
        .await?;
    Ok(json(StatusCode::OK, &report))
}
