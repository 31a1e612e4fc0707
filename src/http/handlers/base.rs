//! `/v2/`, health, readiness and metrics.

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::respond;
use crate::http::body::{Body, full};
use crate::http::{ApiError, State};

fn json_ok(body: &'static [u8]) -> Response<Body> {
    respond(
        StatusCode::OK,
        vec![
            (header::CONTENT_TYPE, "application/json".into()),
            (header::CONTENT_LENGTH, body.len().to_string()),
        ],
        full(Bytes::from_static(body)),
    )
}

/// `GET /v2/`: clients probe this to learn that the v2 API is here.
pub fn version_check() -> Response<Body> {
    json_ok(b"{}")
}

/// `GET /healthz`: the process answers.
pub fn health() -> Response<Body> {
    json_ok(b"{\"status\":\"ok\"}")
}

/// `GET /readyz`: storage is writable and the index answers.
pub async fn ready(state: &State) -> Result<Response<Body>, ApiError> {
    state.store.ready().await?;
    Ok(json_ok(b"{\"status\":\"ready\"}"))
}

/// `GET /metrics`.
pub async fn metrics(state: &State) -> Response<Body> {
    state.proxy.update_metrics().await;
    let text = state.metrics.render();
    respond(
        StatusCode::OK,
        vec![
            (
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
            ),
            (header::CONTENT_LENGTH, text.len().to_string()),
        ],
        full(Bytes::from(text)),
    )
}
