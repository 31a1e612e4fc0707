//! `GET /ui/repos?q=&page=`: hosted and mirrored repositories the visitor may
//! pull, a substring search, 50 per page. The store walks the names and
//! summarizes only the page's repositories, so a page of a list of 10,000
//! costs one walk of the names, not 10,000 summaries.

use askama::Template;
use http::{Response, StatusCode};

use super::format::{bytes, repo_path, when};
use super::listing::{Listing, Pager};
use super::page::{Page, html};
use super::{UiError, Visit};
use crate::config::Action;
use crate::http::State;
use crate::http::body::Body;
use crate::store::meta::Origin;

/// Repositories per page.
pub const PER_PAGE: usize = 50;

/// One row.
struct Row {
    name: String,
    href: String,
    origin: String,
    tags: u64,
    size: String,
    last_pulled: String,
    pinned: bool,
}

#[derive(Template)]
#[template(path = "ui/repos.html")]
struct ReposPage<'a> {
    page: &'a Page,
    q: String,
    rows: Vec<Row>,
    pager: Pager,
}

/// The list.
pub async fn list(
    state: &State,
    visit: &Visit,
    query: Option<&str>,
) -> Result<Response<Body>, UiError> {
    let listing = Listing::parse(query, "repository")?;
    let policy = state.auth.policy();
    let (user, loopback) = (
        visit.caller.user().map(str::to_owned),
        visit.caller.loopback,
    );
    let matches = listing.matcher();
    let wanted = move |name: &str| {
        matches(name) && policy.allows(user.as_deref(), name, Action::Pull, loopback)
    };
    let found = state
        .store
        .repo_summaries_page(wanted, listing.skip(PER_PAGE), PER_PAGE)
        .await?;
    let now = crate::store::unix_now();
    let rows = found
        .items
        .into_iter()
        .map(|r| Row {
            href: format!("repos/{}", repo_path(&r.name)),
            origin: match (&r.origin, &r.upstream) {
                (Origin::Cached, Some(u)) => format!("mirrored from {u}"),
                (Origin::Cached, None) => "mirrored".into(),
                (Origin::Pushed, _) => "hosted".into(),
            },
            name: r.name,
            tags: r.tags,
            size: bytes(r.bytes),
            last_pulled: when(r.last_pulled, now),
            pinned: r.pinned,
        })
        .collect();
    let body = ReposPage {
        page: &visit.page,
        pager: Pager::new("repos", &listing, found.total, PER_PAGE),
        q: listing.q,
        rows,
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}
