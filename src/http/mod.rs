//! HTTP: request → typed route → caller identity → authorization → handler →
//! response, with the spec headers and one access-log line per request added in
//! one place.

pub mod admin;
pub mod body;
pub mod client_addr;
pub mod error;
pub mod handlers;
pub mod query;
mod resolve;
pub mod router;
pub mod ui;
pub mod zero_copy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::auth::{Authorizer, Caller, Denial, Identity};
use crate::config::AuthScheme;
use crate::metrics::Metrics;
use crate::net::{Cidr, ClientAddr};
use crate::oci::RepoName;
use crate::oci::routing::{Intent, Target};
use crate::store::Store;

pub use body::Body;
pub use error::ApiError;
pub use router::Route;

/// What every handler can reach. Built once by `app` (the composition root)
/// from parts it built; nothing here reads the configuration.
pub struct State {
    /// Index and content.
    pub store: Arc<Store>,
    /// Who may do what (shared with `app`, which reloads it).
    pub auth: Arc<Authorizer>,
    /// Counters for `/metrics`.
    pub metrics: Arc<Metrics>,
    /// `server.public_url` without a trailing slash, for absolute URLs.
    pub public_url: Option<String>,
    /// The TLS configuration when serving HTTPS (also the token realm's scheme).
    pub tls: Option<Arc<crate::tls::TlsReloader>>,
    /// How long a request body may stall between reads.
    pub body_timeout: std::time::Duration,
    /// Concurrent uploads per client address.
    pub upload_slots: Arc<crate::limits::ClientSlots>,
    /// Which names are hosted and which proxied.
    pub routes: crate::oci::routing::RouteRules,
    /// The pull-through engine for proxied names (shared with workers).
    pub proxy: Arc<crate::proxy::Proxy>,
    /// Peers whose forwarding headers name the client (`[server] trusted_proxies`).
    pub trusted_proxies: Vec<Cidr>,
    /// Every background worker's switchboard: status for the admin API, kicks.
    pub workers: crate::workers::Registry,
    /// The storage lifecycle workers (gc, evict, verify) the admin API runs
    /// passes of, and the store's pins.
    pub lifecycle: crate::workers::lifecycle::Lifecycle,
    /// The replicate worker, when `[[replicate]]` rules exist.
    pub replicate: Option<crate::workers::Handle<crate::workers::replicate::Replicate>>,
    /// The sync worker (`wharf sync [--now]`).
    pub sync: crate::workers::Handle<crate::workers::sync::Sync>,
    /// When the daemon started (the admin API's uptime).
    pub started: Instant,
    /// The cache budget the admin API reports usage against.
    pub cache_budget: CacheBudget,
    /// `[ui] enabled`: the web page at `/ui/` (else its paths are 404).
    pub ui_enabled: bool,
    /// `[storage.s3] redirect`: stored blobs are answered with a 307 to a
    /// presigned URL of their object instead of their bytes.
    pub blob_redirect: bool,
}

/// `[storage] max_cache_size` and `low_watermark`, as the admin API reports them.
#[derive(Debug, Clone, Copy)]
pub struct CacheBudget {
    /// Bytes of mirrored content allowed; 0 = unlimited.
    pub max_cache_size: u64,
    /// Eviction goes down to this fraction of `max_cache_size`.
    pub low_watermark: f64,
}

impl State {
    /// Routes a requested name for `intent` (DESIGN's rules; one function for
    /// requests and token grants alike).
    pub fn resolve(
        &self,
        name: &RepoName,
        ns: Option<&str>,
        intent: Intent,
    ) -> Result<Target, crate::oci::NameError> {
        self.routes.route(name, ns, intent, self.store.as_ref())
    }

    /// The local name a requested name is read from (no `ns`), if it has one.
    pub fn local_name(&self, name: &RepoName) -> Option<RepoName> {
        self.resolve(name, None, Intent::Read)
            .ok()
            .map(|t| t.local(name).clone())
    }

    /// Every local name a token for `name` may need: where reads go, and where
    /// a push goes (a name not pushed yet reads from its mirror; a push claims it).
    pub fn token_locals(&self, name: &RepoName) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for intent in [Intent::Read, Intent::Push] {
            if let Ok(t) = self.resolve(name, None, intent) {
                let local = t.local(name).to_string();
                if !out.contains(&local) {
                    out.push(local);
                }
            }
        }
        out
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
            AuthScheme::Basic | AuthScheme::Auto => "Basic realm=\"wharf\"".to_owned(),
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
                message: "too many logins from this address; wait and retry".into(),
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
    /// The client (the TCP peer, or who a trusted proxy forwards for).
    pub client: ClientAddr,
    /// Request method.
    pub method: Method,
    /// Who is calling.
    pub caller: Caller,
    /// Where the route's repository is answered from (hosted or mirrored),
    /// resolved once by name routing; `None` for routes without a repository.
    pub source: Option<crate::proxy::Source>,
}

impl Ctx {
    /// The request's [`Source`](crate::proxy::Source). Every route with a
    /// repository has one; a route without one has nothing to read.
    pub fn source(&self) -> Result<&crate::proxy::Source, ApiError> {
        self.source
            .as_ref()
            .ok_or(ApiError::Route(router::RouteError::NotFound))
    }
}

async fn route_and_run(
    state: &Arc<State>,
    parsed: Route,
    req: Request<Incoming>,
    client: ClientAddr,
    user: &mut Option<String>,
) -> Result<Response<Body>, ApiError> {
    let method = req.method().clone();
    let query = query::Query::parse(req.uri().query());
    // A peer asks for what is in our store only: never through our own upstream.
    let from_peer = req
        .headers()
        .contains_key(crate::upstream::peers::PEER_HEADER);
    let for_refusal = parsed.clone();
    let refuse = |d| state.refusal(req.headers(), Some(&for_refusal), req.uri().query(), d);
    let caller = match state.auth.identify(req.headers(), client).await {
        Ok(c) => c,
        Err(d) => return Err(refuse(d)),
    };
    *user = caller.user().map(str::to_owned);
    if let Some(repo) = parsed.repo() {
        // A name another node just pushed to is hosted here too.
        state.store.learn_hosted_name(repo).await;
    }
    let resolved =
        resolve::resolve_route(state, parsed, &method, query.get("ns"), &caller, from_peer)?;
    if let Some(message) = resolved.refusal {
        // Anonymous callers are challenged first, so clients log in and then
        // see why the name cannot take a push.
        let challenge_first =
            matches!(caller.identity, Identity::Anonymous) && state.auth.policy().has_users;
        if !challenge_first {
            return Err(ApiError::Denied(message));
        }
    }
    if let Err(d) = state.auth.authorize(&resolved.access, &caller) {
        return Err(refuse(d));
    }
    if resolved.claim
        && matches!(
            resolved.route,
            Route::UploadStart { .. } | Route::Manifest { .. }
        )
    {
        if let Some(repo) = resolved.route.repo() {
            tracing::info!(%repo, user = caller.user().unwrap_or("-"), client = %client.ip, "push claims the name as a hosted repository");
        }
    }
    let ctx = Ctx {
        client,
        method,
        caller,
        source: resolved.source,
    };
    handlers::dispatch(state, &ctx, resolved.route, req).await
}

/// HTTP/1.1 requires exactly one `Host` header (RFC 9112 §3.2); a request
/// without one, or with two, is answered 400 before anything else.
pub(crate) fn check_host(req: &Request<Incoming>) -> Result<(), ApiError> {
    if req.version() != http::Version::HTTP_11 {
        return Ok(());
    }
    match req.headers().get_all(header::HOST).iter().count() {
        1 => Ok(()),
        n => Err(ApiError::Invalid(
            crate::oci::ErrorCode::Unsupported,
            format!("an HTTP/1.1 request needs exactly one Host header, not {n}"),
        )),
    }
}

/// What the access log and the metrics record about a request besides its
/// response.
struct Seen {
    /// The route's stable name (the metrics label).
    route: &'static str,
    /// The repository acted on, if any.
    repo: String,
    /// The authenticated user, if any.
    user: Option<String>,
}

/// Serves one request on the surface its path belongs to (the admin API under
/// `/_wharf`, the web page under `/ui` when enabled, else the OCI API and its
/// neighbours), then records it. Never fails: errors become each surface's
/// errors (JSON, or HTML pages for the web page).
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let client = client_addr::client_addr(remote, req.headers(), &state.trusted_proxies);
    let mut seen = Seen {
        route: "unmatched",
        repo: String::new(),
        user: None,
    };
    let resp = if admin::is_admin_path(req.uri().path()) {
        seen.route = "admin";
        // Boxed, like every handler: the request's future stays small.
        Box::pin(admin::serve(&state, req, client, &mut seen.user)).await
    } else if state.ui_enabled && ui::is_ui_path(req.uri().path()) {
        Box::pin(ui::serve(
            &state,
            req,
            client,
            remote,
            &mut seen.route,
            &mut seen.user,
        ))
        .await
    } else {
        serve_oci(&state, req, client, &mut seen).await
    };
    record(&state, &method, client, started, seen, resp)
}

/// The OCI surface: typed route, name routing, authorization, handler.
async fn serve_oci(
    state: &Arc<State>,
    req: Request<Incoming>,
    client: ClientAddr,
    seen: &mut Seen,
) -> Response<Body> {
    let parsed = Route::parse(req.method(), req.uri().path());
    if let Ok(route) = &parsed {
        seen.route = route.name();
        seen.repo = route.repo().map(|r| r.to_string()).unwrap_or_default();
    }
    let result = match (check_host(&req), parsed) {
        (Err(e), _) => Err(e),
        (Ok(()), Ok(route)) => route_and_run(state, route, req, client, &mut seen.user).await,
        (Ok(()), Err(e)) => Err(e.into()),
    };
    let mut resp = result.unwrap_or_else(ApiError::into_response);
    resp.headers_mut().insert(
        "docker-distribution-api-version",
        HeaderValue::from_static("registry/2.0"),
    );
    resp
}

/// Where a manifest or blob response's bytes came from, by its `X-Cache`:
/// a download in flight from the upstream (MISS) or a peer (PEER), else the
/// store (HIT, STALE, or hosted content, which has no `X-Cache`).
fn served_from(cache: &str) -> &'static str {
    match cache {
        "MISS" => "upstream",
        "PEER" => "peer",
        _ => "local",
    }
}

/// Counts the request in the metrics and writes its access-log line.
fn record(
    state: &State,
    method: &Method,
    client: ClientAddr,
    started: Instant,
    seen: Seen,
    resp: Response<Body>,
) -> Response<Body> {
    let Seen { route, repo, user } = seen;
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
        .observe_request(method, route, status.as_u16(), bytes, elapsed);
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    if matches!(route, "blob" | "manifest") && status.is_success() && bytes > 0 {
        state.metrics.observe_served(served_from(cache), bytes);
    }
    let ms = elapsed.as_secs_f64() * 1000.0;
    // An extension method may be kilobytes long: the log line keeps a prefix.
    let method = match method.as_str().char_indices().nth(32) {
        Some((end, _)) => &method.as_str()[..end],
        None => method.as_str(),
    };
    let user = user.as_deref().unwrap_or("-");
    let line = crate::logging::access_line::AccessLine {
        level: if status.is_server_error() {
            tracing::Level::WARN
        } else {
            tracing::Level::INFO
        },
        method,
        route,
        repo: &repo,
        status: status.as_u16(),
        bytes,
        ms,
        cache,
        user,
        client: client.ip,
    };
    // The filter decides; the line goes straight to the log sink when text
    // logs go there, else through tracing as an event with the same fields.
    if status.is_server_error() {
        if tracing::enabled!(target: "wharf::access", tracing::Level::WARN)
            && !crate::logging::access_line::write(&line)
        {
            tracing::warn!(target: "wharf::access", %method, route, repo, status = status.as_u16(), bytes, ms, cache, user, client = %client.ip, "request");
        }
    } else if tracing::enabled!(target: "wharf::access", tracing::Level::INFO)
        && !crate::logging::access_line::write(&line)
    {
        tracing::info!(target: "wharf::access", %method, route, repo, status = status.as_u16(), bytes, ms, cache, user, client = %client.ip, "request");
    }
    resp
}
