//! `GET /ui/`: the dashboard, numbers only for now — cache hit ratio, bytes
//! served locally and fetched from upstreams, storage by origin against
//! `max_cache_size`, each upstream's health, each worker's last and next run,
//! and the same over time (the last hour per minute, the last day per hour)
//! as inline SVG charts drawn here, from the metrics' in-memory history.
//! The values come from where `/metrics` and `/_wharf/v1/{usage,status}` read
//! theirs, so they agree; storage by origin is the running total of cached
//! bytes and the paced background walk `/metrics` uses, so a view costs no
//! walk of the index however large the store.

use askama::Template;
use http::{Response, StatusCode};

use super::format::{bytes, when};
use super::page::{Page, html};
use super::{UiError, Visit};
use crate::http::State;
use crate::http::body::Body;

struct UpstreamRow {
    name: String,
    state: &'static str,
    state_class: &'static str,
    pulls_remaining: String,
    cached: String,
}

struct WorkerRow {
    name: &'static str,
    running: bool,
    last_run: String,
    result: String,
    result_class: &'static str,
    next_run: String,
    detail: String,
}

#[derive(Template)]
#[template(path = "ui/dashboard.html")]
struct DashboardPage<'a> {
    page: &'a Page,
    hit_ratio: String,
    hit_ratio_value: String,
    hits: u64,
    misses: u64,
    bytes_local: String,
    bytes_local_value: u64,
    bytes_upstream: String,
    bytes_upstream_value: u64,
    bytes_peer: String,
    cached_bytes: String,
    cached_bytes_value: u64,
    max_cache: String,
    max_cache_value: u64,
    cache_percent: u64,
    pushed_bytes: String,
    total_bytes: String,
    blobs: u64,
    upstreams: Vec<UpstreamRow>,
    workers: Vec<WorkerRow>,
    /// Charts over time (SVG drawn by `svg.rs`, every text escaped there).
    charts: super::svg::HistoryCharts,
    /// Storage by origin against the budget (SVG).
    storage_gauge: String,
}

/// A worker's last report or error as one line (admins only: errors may
/// name repositories).
fn detail(s: &crate::workers::Status) -> String {
    if let Some(e) = &s.last_error {
        return e.chars().take(300).collect();
    }
    let Some(serde_json::Value::Object(report)) = &s.last_report else {
        return String::new();
    };
    report
        .iter()
        .filter(|(_, v)| v.is_number() || v.is_boolean())
        .filter(|(_, v)| v.as_u64() != Some(0) && v.as_bool() != Some(false))
        .take(6)
        .map(|(k, v)| format!("{}: {v}", k.replace('_', " ")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The page.
pub async fn show(state: &State, visit: &Visit) -> Result<Response<Body>, UiError> {
    let totals = state.metrics.cache_totals();
    let usage = state.proxy.storage_view().await;
    let max = state.cache_budget.max_cache_size;
    let now = crate::store::unix_now();
    let admin = visit.page.admin;
    let mut queued = None;
    if let Some(r) = &state.replicate {
        queued = Some(
            r.worker
                .status()
                .await?
                .iter()
                .map(|t| t.queued)
                .sum::<u64>(),
        );
    }
    let upstreams = state
        .proxy
        .upstream_health()
        .into_iter()
        .map(|u| UpstreamRow {
            state: if u.skipped {
                "circuit open (skipped)"
            } else {
                "ok"
            },
            state_class: if u.skipped { "bad" } else { "ok" },
            pulls_remaining: u
                .pulls_remaining
                .map_or_else(|| "—".to_owned(), |n| n.to_string()),
            cached: bytes(usage.cached_by_upstream.get(&u.name).copied().unwrap_or(0)),
            name: u.name,
        })
        .collect();
    let workers = state
        .workers
        .statuses()
        .into_iter()
        .map(|s| {
            let mut d = if admin { detail(&s) } else { String::new() };
            if s.name == "replicate" {
                if let Some(q) = queued {
                    d = format!("queue: {q}{}{d}", if d.is_empty() { "" } else { "; " });
                }
            }
            WorkerRow {
                name: s.name,
                running: s.running,
                last_run: when(s.last_run, now),
                result: s.last_result.unwrap_or("not run yet").to_owned(),
                result_class: match s.last_result {
                    Some("ok") => "ok",
                    Some(_) => "bad",
                    None => "",
                },
                next_run: s
                    .next_run
                    .map_or_else(|| "on demand".to_owned(), |t| when(Some(t), now)),
                detail: d,
            }
        })
        .collect();
    let body = DashboardPage {
        page: &visit.page,
        hit_ratio: totals
            .hit_ratio()
            .map_or_else(|| "—".to_owned(), |r| format!("{:.1}%", r * 100.0)),
        hit_ratio_value: totals
            .hit_ratio()
            .map_or_else(String::new, |r| format!("{r:.4}")),
        hits: totals.hits,
        misses: totals.misses,
        bytes_local: bytes(totals.bytes_local),
        bytes_local_value: totals.bytes_local,
        bytes_upstream: bytes(totals.bytes_upstream),
        bytes_upstream_value: totals.bytes_upstream,
        bytes_peer: bytes(totals.bytes_peer),
        cached_bytes: bytes(usage.totals.cached_bytes),
        cached_bytes_value: usage.totals.cached_bytes,
        max_cache: if max == 0 {
            "unlimited".into()
        } else {
            bytes(max)
        },
        max_cache_value: max,
        cache_percent: usage
            .totals
            .cached_bytes
            .saturating_mul(100)
            .checked_div(max)
            .map_or(0, |p| p.min(100)),
        pushed_bytes: bytes(usage.totals.pushed_bytes),
        total_bytes: bytes(usage.bytes()),
        blobs: usage.blobs(),
        upstreams,
        workers,
        charts: super::svg::history_charts(&state.metrics.history_now()),
        storage_gauge: super::svg::storage_gauge(
            "Storage by origin",
            &[
                ("cached", usage.totals.cached_bytes),
                ("pushed", usage.totals.pushed_bytes),
            ],
            max,
        ),
    }
    .render()
    .map_err(|e| UiError::Internal(e.to_string()))?;
    Ok(html(StatusCode::OK, body))
}
