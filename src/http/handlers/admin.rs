//! `/_wharf/<op>`: the admin API (admin users only; authorization happens
//! before this is reached).

use bytes::Bytes;
use http::{Response, StatusCode, header};

use super::respond;
use crate::http::body::{Body, full};
use crate::http::{ApiError, State};
use crate::oci::ErrorCode;

/// Runs one admin operation.
pub async fn run(state: &State, op: &str) -> Result<Response<Body>, ApiError> {
    let value = match op {
        "du" => serde_json::to_value(state.store.usage().await?),
        "ls" => serde_json::to_value(state.store.repo_summaries().await?),
        _ => {
            return Err(ApiError::Invalid(
                ErrorCode::Unsupported,
                format!("unknown admin operation {op:?} (try du or ls)"),
            ));
        }
    }
    .unwrap_or_default();
    let body = serde_json::to_vec(&value).unwrap_or_default();
    Ok(respond(
        StatusCode::OK,
        vec![
            (header::CONTENT_TYPE, "application/json".into()),
            (header::CONTENT_LENGTH, body.len().to_string()),
        ],
        full(Bytes::from(body)),
    ))
}
