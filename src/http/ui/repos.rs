//! `GET /ui/repos?q=&page=`: hosted and mirrored repositories the visitor may
//! pull, a substring search, 50 per page. The store walks the names and
//! summarizes only the page's repositories, so a page of a list of 10,000
//! costs one walk of the names, not 10,000 summaries.

use askama::Template;
use http::{Response, StatusCode};

use super::format::{bytes, segment, when};
use super::page::{Page, html};
use super::{UiError, Visit};
use crate::config::Action;
use crate::http::State;
use crate::http::body::Body;
use crate::http::query::Query;
use crate::store::meta::Origin;

/// Repositories per page.
pub const PER_PAGE: usize = 50;
/// Longest search text.
const MAX_QUERY: usize = 256;

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
    total: usize,
    page_no: usize,
    pages: usize,
    prev: Option<String>,
    next: Option<String>,
}

/// A link to page `n` of the search `q`.
fn page_href(q: &str, n: usize) -> String {
    if q.is_empty() {
        format!("repos?page={n}")
    } else {
        format!("repos?q={}&page={n}", segment(q))
    }
}

/// The list.
pub async fn list(
    state: &State,
    visit: &Visit,
    query: Option<&str>,
) -> Result<Response<Body>, UiError> {
    let query = Query::parse(query);
    let q = query.get("q").unwrap_or_default().trim().to_owned();
    if q.len() > MAX_QUERY || q.chars().any(char::is_control) {
        return Err(UiError::BadRequest(format!(
            "the search text must be at most {MAX_QUERY} printable characters"
        )));
    }
    let page_no = match query.get("page") {
        None | Some("") => 1,
        Some(p) => p
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1_000_000).contains(n))
            .ok_or_else(|| UiError::BadRequest("page must be a number from 1".into()))?,
    };
    let policy = state.auth.policy();
    let (user, loopback) = (
        visit.caller.user().map(str::to_owned),
        visit.caller.loopback,
    );
    let needle = q.to_lowercase();
    let wanted = move |name: &str| {
        (needle.is_empty() || name.contains(needle.as_str()))
            && policy.allows(user.as_deref(), name, Action::Pull, loopback)
    };
    let skip = (page_no - 1) * PER_PAGE;
    let found = state
        .store
        .repo_summaries_page(wanted, skip, PER_PAGE)
        .await?;
    let now = crate::store::unix_now();
    let rows = found
        .items
        .into_iter()
        .map(|r| Row {
            href: format!("repos/{}", segment(&r.name)),
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
    let pages = found.total.div_ceil(PER_PAGE).max(1);
    let body = ReposPage {
        page: &visit.page,
        prev: (page_no > 1).then(|| page_href(&q, page_no - 1)),
        next: (page_no < pages).then(|| page_href(&q, page_no + 1)),
        q,
        rows,
        total: found.total,
        page_no,
        pages,
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}
