//! `POST /_wharf/v1/workers/<name>/run`: asks a worker for a pass now (the
//! pass runs in the worker's own loop; `status` shows when it ran).

use http::{Response, StatusCode};

use super::{AdminError, json};
use crate::http::State;
use crate::http::body::Body;

/// Kicks the worker called `name`: 202, or 404 when there is none.
pub(super) fn run(state: &State, name: &str) -> Result<Response<Body>, AdminError> {
    let control = state
        .workers
        .get(name)
        .ok_or_else(|| AdminError::NotFound(format!("no worker called {name}")))?;
    control.kick();
    tracing::info!(worker = name, "worker kicked through the admin API");
    #[derive(serde::Serialize)]
    struct Answer {
        worker: &'static str,
        kicked: bool,
    }
    Ok(json(
        StatusCode::ACCEPTED,
        &Answer {
            worker: control.name(),
            kicked: true,
        },
    ))
}
