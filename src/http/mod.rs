//! HTTP: request → typed route → authorization → handler → response, with the
//! spec headers and one access-log line per request added in one place.

pub mod body;
pub mod error;
pub mod handlers;
pub mod query;
pub mod router;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderValue, Method, Request, Response, header};
use hyper::body::Incoming;

use crate::auth::Authorizer;
use crate::config::Config;
use crate::metrics::Metrics;
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
    /// `server.public_url` without a trailing slash, for absolute Locations.
    pub public_url: Option<String>,
}

impl State {
    /// Builds handler state from the configuration.
    pub fn new(config: &Config, store: Arc<Store>, metrics: Arc<Metrics>) -> State {
        State {
            store,
            auth: Authorizer::new(config),
            metrics,
            public_url: config
                .server
                .public_url
                .as_ref()
                .map(|u| u.trim_end_matches('/').to_owned()),
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
}

/// Serves one request. Never fails: errors become spec JSON responses.
pub async fn handle(
    state: Arc<State>,
    req: Request<Incoming>,
    remote: SocketAddr,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let route = Route::parse(&method, req.uri().path());
    let route_name = route.as_ref().map(Route::name).unwrap_or("unmatched");
    let repo = route
        .as_ref()
        .ok()
        .and_then(|r| r.repo())
        .map(|r| r.to_string())
        .unwrap_or_default();
    let ctx = Ctx {
        remote,
        method: method.clone(),
    };
    let result = match route {
        Ok(route) => match state.auth.authorize(&route, &method, remote) {
            Ok(()) => handlers::dispatch(&state, &ctx, route, req).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(ApiError::from(e)),
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
        .observe_request(route_name, status.as_u16(), bytes, elapsed);
    let cache = resp
        .headers()
        .get("x-cache")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_owned();
    let ms = elapsed.as_secs_f64() * 1000.0;
    if status.is_server_error() {
        tracing::warn!(target: "wharf::access", %method, route = route_name, repo, status = status.as_u16(), bytes, ms, cache, client = %remote.ip(), "request");
    } else {
        tracing::info!(target: "wharf::access", %method, route = route_name, repo, status = status.as_u16(), bytes, ms, cache, client = %remote.ip(), "request");
    }
    resp
}
