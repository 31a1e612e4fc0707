//! `GET /_wharf/v1/repos` and `GET /_wharf/v1/repos/<name>`: what `wharf ls`
//! shows.

use http::{Response, StatusCode};

use super::{AdminError, existing_repo, json};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::RepoName;

/// Every repository with its origin, upstream, counts and bytes.
pub(super) async fn list(state: &State) -> Result<Response<Body>, AdminError> {
    #[derive(serde::Serialize)]
    struct Answer {
        repositories: Vec<crate::store::RepoSummary>,
    }
    let repositories = state.store.repo_summaries().await?;
    Ok(json(StatusCode::OK, &Answer { repositories }))
}

/// One repository's tags with digest, size, media type and platforms; the name
/// may be written as clients write it (`nginx`, `docker.io/library/nginx`).
pub(super) async fn show(state: &State, name: &RepoName) -> Result<Response<Body>, AdminError> {
    let unknown = || AdminError::NotFound(format!("repository {name} is unknown"));
    let local = existing_repo(state, name).await?.ok_or_else(unknown)?;
    let detail = state.store.repo_detail(&local).await?.ok_or_else(unknown)?;
    Ok(json(StatusCode::OK, &detail))
}
