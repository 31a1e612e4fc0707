//! Paginated listings: `/v2/_catalog`, `tags/list`, and the referrers index.

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use hyper::body::Incoming;

use super::{respond, x_cache};
use crate::http::body::{Body, full};
use crate::http::query::Query;
use crate::http::router::RouteError;
use crate::http::{ApiError, Ctx, State};
use crate::oci::manifest::OCI_INDEX;
use crate::oci::{Digest, ErrorCode, RepoName};
use crate::proxy::CacheResult;
use crate::store::Page;

/// Catalog pages default to this many names (distribution's default).
const CATALOG_DEFAULT: usize = 100;
/// No page is longer than this, whatever `n` asks for; a tag list without `n`
/// is one page of this many (with a `Link` when more follow).
const PAGE_MAX: usize = 10_000;

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

/// Percent-encodes a query value (tags and names are safe, but `last` and
/// `ns` come from the client).
fn query_value(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b'/' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
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

fn link(
    state: &State,
    path: &str,
    page: &Page,
    n: usize,
    ns: Option<&str>,
) -> Vec<(header::HeaderName, String)> {
    let ns = ns
        .map(|ns| format!("&ns={}", query_value(ns)))
        .unwrap_or_default();
    match (page.more, page.items.last()) {
        (true, Some(last)) => vec![(
            header::LINK,
            format!(
                "<{}?n={n}&last={}{ns}>; rel=\"next\"",
                state.location(path),
                query_value(last)
            ),
        )],
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

/// `GET /v2/<name>/tags/list?n=&last=`. For a mirrored name the upstream's
/// list, falling back to the cached tags (`X-Cache: STALE`) when it is down.
pub async fn tags(
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let Paging { n, last, ns } = page_params(req)?;
    if let Some(p) = &ctx.proxy {
        // Only the paging parameters travel upstream, `n` capped like ours.
        let mut q = Vec::new();
        if let Some(n) = n {
            q.push(format!("n={n}"));
        }
        if let Some(l) = &last {
            q.push(format!("last={}", query_value(l)));
        }
        let q = q.join("&");
        match state.proxy.tags(p.upstream, &p.remote, &q).await {
            Ok((tags, link)) => {
                let mut extra = vec![x_cache(CacheResult::Miss)];
                if let Some(l) = link {
                    let mut ours = l.replace(
                        &format!("/v2/{}/", p.remote),
                        &format!("/v2/{}/", p.requested),
                    );
                    if let (Some(ns), Some(end)) = (&ns, ours.find('>')) {
                        let sep = if ours[..end].contains('?') { '&' } else { '?' };
                        ours.insert_str(end, &format!("{sep}ns={}", query_value(ns)));
                    }
                    extra.push((header::LINK, ours));
                }
                return Ok(json(
                    &serde_json::json!({ "name": p.requested.as_str(), "tags": tags }),
                    "application/json",
                    extra,
                ));
            }
            Err(crate::proxy::ProxyError::Upstream(crate::upstream::UpstreamError::NotFound(
                _,
            ))) => {
                return Err(crate::store::StoreError::NameUnknown(p.requested.clone()).into());
            }
            Err(e) => {
                tracing::warn!(repo = %name, error = %e, "upstream tag list failed; answering from the cache");
                let page = state
                    .store
                    .tags(name, Some(n.unwrap_or(PAGE_MAX)), last)
                    .await
                    .map_err(|_| ApiError::from(e))?;
                return Ok(json(
                    &serde_json::json!({ "name": p.requested.as_str(), "tags": page.items }),
                    "application/json",
                    vec![x_cache(CacheResult::Stale)],
                ));
            }
        }
    }
    let n = n.unwrap_or(PAGE_MAX);
    let page = state.store.tags(name, Some(n), last).await?;
    let extra = link(
        state,
        &format!("/v2/{name}/tags/list"),
        &page,
        n,
        ns.as_deref(),
    );
    Ok(json(
        &serde_json::json!({ "name": name.as_str(), "tags": page.items }),
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
    state: &State,
    ctx: &Ctx,
    name: &RepoName,
    digest: &Digest,
    req: &Request<Incoming>,
) -> Result<Response<Body>, ApiError> {
    let q = Query::parse(req.uri().query());
    let filter = q
        .get("artifactType")
        .filter(|s| !s.is_empty())
        .map(str::to_owned);
    let extra = match filter {
        Some(_) => vec![(
            header::HeaderName::from_static("oci-filters-applied"),
            "artifactType".to_owned(),
        )],
        None => vec![],
    };
    let index = |manifests: Vec<crate::oci::manifest::Descriptor>,
                 mut extra: Vec<_>,
                 cache: Option<CacheResult>| {
        extra.extend(cache.map(x_cache));
        json(
            &serde_json::json!({ "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests }),
            OCI_INDEX,
            extra,
        )
    };
    if let Some(p) = &ctx.proxy {
        match state
            .proxy
            .referrers(p.upstream, &p.remote, digest, filter.as_deref())
            .await
        {
            Ok(manifests) => return Ok(index(manifests, extra, Some(CacheResult::Miss))),
            Err(crate::proxy::ProxyError::Upstream(crate::upstream::UpstreamError::NotFound(
                _,
            ))) => return Err(RouteError::NotFound.into()),
            Err(e) => {
                tracing::warn!(repo = %name, error = %e, "upstream referrers failed; answering from the cache");
                let manifests = state
                    .store
                    .referrers(name, digest, filter)
                    .await
                    .map_err(|_| ApiError::from(e))?;
                return Ok(index(manifests, extra, Some(CacheResult::Stale)));
            }
        }
    }
    let manifests = state.store.referrers(name, digest, filter).await?;
    Ok(index(manifests, extra, None))
}
