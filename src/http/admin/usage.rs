//! `GET /_wharf/v1/usage`: what `wharf du` shows — bytes and blob counts,
//! pushed and cached (by upstream), against the cache budget.

use http::{Response, StatusCode};
use serde::Serialize;

use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;
use crate::store::Usage;

#[derive(Serialize)]
struct Answer {
    #[serde(flatten)]
    usage: Usage,
    /// `[storage] max_cache_size` in bytes; 0 = unlimited.
    max_cache_size: u64,
    /// `[storage] low_watermark`.
    low_watermark: f64,
}

/// Usage totals and the budget.
pub(super) async fn show(state: &State) -> Result<Response<Body>, AdminError> {
    let usage = state.store.usage().await?;
    Ok(json(
        StatusCode::OK,
        &Answer {
            usage,
            max_cache_size: state.cache_budget.max_cache_size,
            low_watermark: state.cache_budget.low_watermark,
        },
    ))
}
