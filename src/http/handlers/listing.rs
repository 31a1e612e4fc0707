//! Paginated listings: `/v2/_catalog`, `tags/list`, and the referrers index.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{respond, x_cache};
use crate::http::body::{Body, full};
use crate::http::query::Query;
use crate::http::{ApiError, Ctx, State};
use crate::oci::manifest::OCI_INDEX;
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::proxy::{NextPage, PAGE_MAX, query_value};
use crate::store::Page;

/// Catalog pages default to this many names (distribution's default).
const CATALOG_DEFAULT: usize = 100;

/// The paging parameters of a listing: `n` (None when absent; capped at
/// [`PAGE_MAX`]) and `last`.
struct Paging {
    n: Option<usize>,
    last: Option<String>,
    /// containerd's `ns=`, carried into `Link` so the next page routes alike.
    ns: Option<String>,
}

fn page_params(req: &Request<Incoming>) -> Result<Paging, ApiError> {
    let q = Query::parse(req.uri().query());
    let n = match q.get("n") {
        None | Some("") => None,
        Some(v) => Some(
            v.parse::<u64>()
                .map_err(|_| {
                    ApiError::Invalid(ErrorCode::Unsupported, format!("n={v:?} is not a number"))
                })?
                .min(PAGE_MAX as u64) as usize,
        ),
    };
    let last = q.get("last").filter(|s| !s.is_empty()).map(str::to_owned);
    let ns = q.get("ns").filter(|s| !s.is_empty()).map(str::to_owned);
    Ok(Paging { n, last, ns })
}

fn json(
    value: &serde_json::Value,
    content_type: &str,
    extra: Vec<(header::HeaderName, String)>,
) -> Response<Body> {
    let body = serde_json::to_vec(value).unwrap_or_default();
    let mut headers = vec![
        (header::CONTENT_TYPE, content_type.to_owned()),
        (header::CONTENT_LENGTH, body.len().to_string()),
    ];
    headers.extend(extra);
    respond(StatusCode::OK, headers, full(Bytes::from(body)))
}

/// The `Link` header to the page after `last` (pages of `n`), carrying `ns`.
fn link_after(
    state: &State,
    path: &str,
    n: usize,
    last: &str,
    ns: Option<&str>,
) -> Vec<(header::HeaderName, String)> {
    let ns = ns
        .map(|ns| format!("&ns={}", query_value(ns)))
        .unwrap_or_default();
    vec![(
        header::LINK,
        format!(
            "<{}?n={n}&last={}{ns}>; rel=\"next\"",
            state.location(path),
            query_value(last)
        ),
    )]
}

fn link(
    state: &State,
    path: &str,
    page: &Page,
    n: usize,
    ns: Option<&str>,
) -> Vec<(header::HeaderName, String)> {
    match (page.more, page.items.last()) {
        (true, Some(last)) => link_after(state, path, n, last, ns),
        _ => vec![],
    }
}

/// `GET /v2/_catalog?n=&last=`: only repositories the caller may pull.
pub async fn catalog(
    state: &State,
    ctx: &Ctx,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Paging { n, last, .. } = page_params(req)?;
    let n = n.unwrap_or(CATALOG_DEFAULT);
    let policy = state.auth.policy();
    let user = ctx.caller.user().map(str::to_owned);
    let loopback = ctx.caller.loopback;
    let visible = move |repo: &str| {
        policy.allows(user.as_deref(), repo, crate::config::Action::Pull, loopback)
    };
    let page = state.store.catalog(n, last, visible).await?;
    let extra = link(state, "/v2/_catalog", &page, n, None);
    Ok(json(
        &serde_json::json!({ "repositories": page.items }),
        "application/json",
        extra,
    ))
}

/// `GET /v2/<name>/tags/list?n=&last=`, from the request's
/// [`Source`](crate::proxy::Source): for a mirrored name the upstream's list,
/// falling back to the cached tags (`X-Cache: STALE`) when it is down.
pub async fn tags(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Paging { n, last, ns } = page_params(req)?;
    let list = ctx.source()?.tags(n, last).await?;
    let mut extra: Vec<_> = list.cache.map(x_cache).into_iter().collect();
    match list.next {
        NextPage::None => {}
        NextPage::After { n, last } => extra.extend(link_after(
            state,
            &format!("/v2/{name}/tags/list"),
            n,
            &last,
            ns.as_deref(),
        )),
        NextPage::Link(mut ours) => {
            if let (Some(ns), Some(end)) = (&ns, ours.find('>')) {
                let sep = if ours[..end].contains('?') { '&' } else { '?' };
                ours.insert_str(end, &format!("{sep}ns={}", query_value(ns)));
            }
            extra.push((header::LINK, ours));
        }
    }
    Ok(json(
        &serde_json::json!({ "name": list.name.as_str(), "tags": list.tags }),
        "application/json",
        extra,
    ))
}

/// `GET /v2/<name>/referrers/<digest>?artifactType=`: an OCI index of the
/// manifests whose subject is `digest` (empty, not 404, when there are none).
/// For a mirrored name the upstream's answer (signatures and attestations
/// live there, not in the cache), falling back to the cached referrers
/// (`X-Cache: STALE`) when it is down; an upstream without the API makes this
/// a 404 too, so clients fall back to the tag schema as they would there.
pub async fn referrers(
    ctx: &Ctx,
    digest: &Digest,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query());
    let filter = q
        .get("artifactType")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let mut extra = match filter {
        Some(_) => vec![(
            header::HeaderName::from_static("oci-filters-applied"),
            "artifactType".to_owned(),
        )],
        None => vec![],
    };
    let (manifests, cache) = ctx.source()?.referrers(digest, filter).await?;
    extra.extend(cache.map(x_cache));
    Ok(json(
        &serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
        OCI_INDEX,
        extra,
    ))
}
