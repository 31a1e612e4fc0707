//! `GET /ui/repos/<name>?q=&page=`: a repository's tags with digest, size,
//! platforms, last pull and pin, 100 per page with a search; admins get
//! pin/unpin and delete buttons per tag.

use askama::Template;
use http::{Response, StatusCode};

use super::format::{bytes, repo_path, segment, short_digest, when};
use super::listing::{Listing, Pager};
use super::page::{Page, html};
use super::route::IMAGE_MARK;
use super::{UiError, Visit, visible_repo};
use crate::http::State;
use crate::http::body::Body;
use crate::oci::RepoName;
use crate::store::meta::Origin;

/// Tags per page.
pub const PER_PAGE: usize = 100;

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
    q: String,
    here: String,
    pager: Pager,
}

/// Platforms shown in one tag's row; the image page lists them all.
const MAX_PLATFORMS_SHOWN: usize = 10;

/// A row's platforms: the first few and how many more (an index may list
/// tens of thousands, and a page has 100 rows).
fn platforms_line(p: &[String]) -> String {
    match p.len() {
        0 => "—".into(),
        n if n <= MAX_PLATFORMS_SHOWN => p.join(", "),
        n => format!(
            "{} and {} more",
            p[..MAX_PLATFORMS_SHOWN].join(", "),
            n - MAX_PLATFORMS_SHOWN
        ),
    }
}

/// The page.
pub async fn show(
    state: &State,
    visit: &Visit,
    name: &RepoName,
    query: Option<&str>,
) -> Result<Response<Body>, UiError> {
    let listing = Listing::parse(query, "tag")?;
    let local = visible_repo(state, visit, name).await?;
    let (detail, total) = state
        .store
        .repo_tags_page(&local, listing.matcher(), listing.skip(PER_PAGE), PER_PAGE)
        .await?
        .ok_or_else(|| UiError::NotFound(format!("there is no repository {name} here")))?;
    let now = crate::store::unix_now();
    // Every link from the page's own place back to /ui/ and down again, so
    // it does not matter how deep the name is.
    let base = format!("{}repos/{}", visit.page.root, repo_path(&detail.name));
    let tags = detail
        .tags
        .into_iter()
        .map(|t| TagRow {
            href: format!("{base}/{IMAGE_MARK}/{}", segment(&t.tag)),
            short_digest: short_digest(&t.digest),
            size: bytes(t.size),
            platforms: platforms_line(&t.platforms),
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
        pager: Pager::new(&base, &listing, total, PER_PAGE),
        q: listing.q,
        here: base,
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}
