//! `GET /ui/repos/<name>`: a repository's tags with digest, size, platforms,
//! last pull and pin; admins get pin/unpin and delete buttons per tag.

use askama::Template;
use http::{Response, StatusCode};

use super::format::{bytes, segment, short_digest, when};
use super::page::{Page, html};
use super::{UiError, Visit, visible_repo};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::RepoName;
use crate::store::meta::Origin;

/// One row.
struct TagRow {
    tag: String,
    href: String,
    digest: String,
    short_digest: String,
    size: String,
    platforms: String,
    last_pulled: String,
    pinned: bool,
}

#[derive(Template)]
#[template(path = "ui/repo.html")]
struct RepoPage<'a> {
    page: &'a Page,
    name: String,
    origin: &'static str,
    upstream: Option<String>,
    tags: Vec<TagRow>,
}

/// The page.
pub async fn show(
    state: &State,
    visit: &Visit,
    name: &RepoName,
) -> Result<Response<Body>, UiError> {
    let local = visible_repo(state, visit, name).await?;
    let detail = state
        .store
        .repo_detail(&local)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("there is no repository {name} here")))?;
    let now = crate::store::unix_now();
    let base = segment(&detail.name);
    let tags = detail
        .tags
        .into_iter()
        .map(|t| TagRow {
            href: format!("{base}/{}", segment(&t.tag)),
            short_digest: short_digest(&t.digest),
            size: bytes(t.size),
            platforms: if t.platforms.is_empty() {
                "—".into()
            } else {
                t.platforms.join(", ")
            },
            last_pulled: when(t.last_pulled, now),
            pinned: t.pinned,
            digest: t.digest,
            tag: t.tag,
        })
        .collect();
    let body = RepoPage {
        page: &visit.page,
        origin: match detail.origin {
            Origin::Pushed => "hosted",
            Origin::Cached => "mirrored",
        },
        upstream: detail.upstream,
        name: detail.name,
        tags,
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}
