//! HTTP: request → typed route → caller identity → authorization → handler →
//! response, with the spec headers and one access-log line per request added in
//! one place.

pub mod body;
pub mod error;
pub mod handlers;
pub mod limits;
pub mod query;
pub mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::auth::{Authorizer, Caller, Denial};
use crate::config::{AuthScheme, Config};
use crate::metrics::Metrics;
use crate::oci::RepoName;
use crate::oci::routing::Target;
use crate::store::Store;

pub use body::Body;
pub use error::ApiError;
pub use router::Route;

/// What every handler can reach. Built once by `app`.
pub struct State {
    /// Index and content.
    pub store: Arc<Store>,
    /// Who may do what.
    pub auth: Authorizer,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `server.public_url` without a trailing slash, for absolute URLs.
    pub public_url: Option<String>,
    /// The TLS configuration when serving HTTPS (also the token realm's scheme).
    pub tls: Option<Arc<crate::tls::TlsReloader>>,
    /// How long a request body may stall between reads.
    pub body_timeout: std::time::Duration,
    /// Concurrent uploads per client address.
    pub upload_slots: limits::UploadSlots,
    /// Which names are hosted and which proxied.
    pub routes: crate::oci::routing::RouteRules,
    /// The pull-through engine for proxied names.
    pub proxy: crate::proxy::Proxy,
}

impl State {
    /// Builds handler state from the configuration.
    pub fn new(
        config: &Config,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        tls: Option<Arc<crate::tls::TlsReloader>>,
        upstreams: Arc<crate::upstream::Upstreams>,
        peers: Arc<crate::upstream::peers::Peers>,
    ) -> Result<State, crate::auth::htpasswd::HtpasswdError> {
        Ok(State {
            store: store.clone(),
            auth: Authorizer::new(config)?,
            metrics: metrics.clone(),
            public_url: config
                .server
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
            tls,
            body_timeout: config.server.body_timeout.0,
            upload_slots: limits::UploadSlots::new(config.server.uploads_per_client),
            routes: config.route_rules(),
            proxy: crate::proxy::Proxy::new(store.clone(), upstreams, peers, metrics.clone()),
        })
    }

    /// Routes a requested name: hosted, or proxied under its canonical local name.
    pub fn resolve(&self, name: &RepoName, ns: Option<&str>) -> Target {
        self.routes
            .route(name, ns, self.store.is_pushed_repo(name.as_str()))
    }

    /// The local name a requested name is stored under.
    pub fn local_name(&self, name: &RepoName) -> RepoName {
        match self.resolve(name, None) {
            Target::Proxied { local, .. } => local,
            Target::Hosted => name.clone(),
        }
    }

    /// A `Location` value: relative (works behind any reverse proxy), or on
    /// `public_url` when one is configured.
    pub fn location(&self, path: &str) -> String {
        match &self.public_url {
            Some(base) => format!("{base}{path}"),
            None => path.to_owned(),
        }
    }

    /// The absolute base URL clients used: `public_url`, or scheme (from
    /// `X-Forwarded-Proto` behind a proxy) + `Host`.
    pub fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.public_url {
            return base.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.bytes().all(|b| b.is_ascii_graphic()))
            .unwrap_or("localhost");
        // Behind a TLS-terminating proxy the client's scheme is in X-Forwarded-Proto.
        // The realm is only advice to the client about itself, so trusting it is safe.
        let forwarded = headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .filter(|v| *v == "https" || *v == "http");
        let scheme = forwarded.unwrap_or(if self.tls.is_some() { "https" } else { "http" });
        format!("{scheme}://{host}")
    }

    /// The `WWW-Authenticate` value for a refusal.
    fn challenge(&self, headers: &HeaderMap, scope: Option<&str>, insufficient: bool) -> String {
        match self.auth.scheme() {
            AuthScheme::Basic => "Basic realm=\"wharf\"".to_owned(),
            AuthScheme::Token => {
                let mut c = format!(
                    "Bearer realm=\"{}/token\",service=\"{}\"",
                    self.base_url(headers),
                    crate::auth::token::SERVICE
                );
                if let Some(s) = scope {
                    c.push_str(&format!(",scope=\"{s}\""));
                }
                if insufficient {
                    c.push_str(",error=\"insufficient_scope\"");
                }
                c
            }
        }
    }

    /// Turns an authorization refusal into the response error. A refused
    /// cross-repository mount asks for the source's pull scope too, so the client
    /// fetches one token that covers the whole mount.
    pub fn refusal(
        &self,
        headers: &HeaderMap,
        route: Option<&Route>,
        query: Option<&str>,
        d: Denial,
    ) -> ApiError {
        let with_mount = |scope: String| match (route, query::Query::parse(query).get("from")) {
            (Some(Route::UploadStart { .. }), Some(from))
                if from.parse::<crate::oci::RepoName>().is_ok() =>
            {
                format!("{scope} repository:{from}:pull")
            }
            _ => scope,
        };
        let reason = match &d {
            Denial::Unauthenticated { .. } => "unauthenticated",
            Denial::InsufficientScope { .. } => "insufficient_scope",
            Denial::Forbidden(_) => "forbidden",
            Denial::RateLimited { .. } => "rate_limited",
        };
        self.metrics
            .auth_refusals
            .get_or_create(&crate::metrics::RefusalLabels { reason })
            .inc();
        match d {
            Denial::Unauthenticated { scope, message } => ApiError::Unauthorized {
                challenge: self.challenge(headers, scope.map(with_mount).as_deref(), false),
                message,
            },
            Denial::InsufficientScope { scope } => {
                let scope = with_mount(scope);
                ApiError::Unauthorized {
                    challenge: self.challenge(headers, Some(&scope), true),
                    message: format!("the token does not grant {scope}"),
                }
            }
            Denial::Forbidden(m) => ApiError::Denied(m),
            Denial::RateLimited { retry_after } => ApiError::TooManyRequests {
                retry_after,
                message: "too many failed logins from this address; wait and retry".into(),
            },
        }
    }
}

/// The `Range` header value of an upload that holds `len` bytes.
pub fn range_header(len: u64) -> String {
    format!("0-{}", len.saturating_sub(1))
}

/// Facts about one request that handlers need besides the route.
pub struct Ctx {
    /// The connecting client.
    pub remote: SocketAddr,
    /// Request method.
    pub method: Method,
    /// Who is calling.
    pub caller: Caller,
    /// For a proxied name: which upstream and the name there.
    pub proxy: Option<Proxied>,
}

/// Where a proxied request's content comes from.
#[derive(Debug, Clone)]
pub struct Proxied {
    /// Index into the configured upstreams.
    pub upstream: usize,
    /// The repository name at the upstream.
    pub remote: RepoName,
    /// The name the client used (answers that list names repeat it).
    pub requested: RepoName,
}

async fn route_and_run(
    state: &Arc<State>,
    parsed: Route,
    req: Request<Incoming>,
    remote: SocketAddr,
    user: &mut Option<String>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let requested = parsed.repo().cloned();
    let ns = query::Query::parse(req.uri().query());
    // A peer asks for what is in our store only: never through our own upstream.
    let from_peer = req
        .headers()
        .contains_key(crate::upstream::peers::PEER_HEADER);
    let (route, proxy) = match requested.as_ref().map(|n| state.resolve(n, ns.get("ns"))) {
        Some(Target::Proxied {
            upstream,
            remote,
            local,
        }) => {
            if !matches!(method, Method::GET | Method::HEAD) {
                return Err(ApiError::Unsupported(format!(
                    "{} is mirrored from an upstream and is read-only; {}",
                    requested.as_ref().map(|r| r.as_str()).unwrap_or_default(),
                    state.routes.push_hint()
                )));
            }
            let proxy = (!from_peer).then(|| Proxied {
                upstream,
                remote,
                requested: requested.clone().unwrap_or_else(|| local.clone()),
            });
            (parsed.with_repo(local), proxy)
        }
        _ => (parsed, None),
    };
    let refuse = |d| state.refusal(req.headers(), Some(&route), req.uri().query(), d);
    let caller = match state.auth.identify(req.headers(), remote).await {
        Ok(c) => c,
        Err(d) => return Err(refuse(d)),
    };
    *user = caller.user().map(str::to_owned);
    if let Err(d) = state
        .auth
        .authorize(&route, &method, &caller, requested.as_ref())
    {
        return Err(refuse(d));
    }
    let ctx = Ctx {
        remote,
        method,
        caller,
        proxy,
    };
    handlers::dispatch(state, &ctx, route, req).await
}

/// Serves one request. Never fails: errors become spec JSON responses.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let parsed = Route::parse(&method, req.uri().path());
    let route_name = parsed.as_ref().map(Route::name).unwrap_or("unmatched");
    let repo = parsed
        .as_ref()
        .ok()
        .and_then(|r| r.repo())
        .map(|r| r.to_string())
        .unwrap_or_default();
    let mut user = None;
    let result = match parsed {
        Ok(route) => route_and_run(&state, route, req, remote, &mut user).await,
        Err(e) => Err(e.into()),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    let status = resp.status();
    let bytes = resp
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    let bytes = if method == Method::HEAD { 0 } else { bytes };
    let elapsed = started.elapsed();
    state
        .metrics
        .observe_request(method.as_str(), route_name, status.as_u16(), bytes, elapsed);
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let ms = elapsed.as_secs_f64() * 1000.0;
    let user = user.unwrap_or_else(|| "-".to_owned());
    if status.is_server_error() {
        tracing::warn!(target: "wharf::access", %method, route = route_name, repo, status = status.as_u16(), bytes, ms, cache, user, client = %remote.ip(), "request");
    } else {
        tracing::info!(target: "wharf::access", %method, route = route_name, repo, status = status.as_u16(), bytes, ms, cache, user, client = %remote.ip(), "request");
    }
    resp
}
