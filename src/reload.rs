//! Live reloads without dropping connections: SIGHUP re-reads the config file's
//! `[auth]` section, the htpasswd file, and the TLS certificate and key; the
//! htpasswd file is also re-read when it changes on disk (so `wharf user add`
//! takes effect by itself). systemd hears `RELOADING=1` before and `READY=1`
//! after each SIGHUP.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::config::Config;
use crate::http::State;
use crate::shutdown::until_shutdown;
use crate::systemd::Notice;

/// How often the htpasswd file's modification time is checked.
pub const WATCH_EVERY: Duration = Duration::from_secs(2);

/// Where a reload reads from.
#[derive(Clone)]
pub struct ReloadSource {
    /// The config file the daemon started with, if any.
    pub config_path: Option<PathBuf>,
}

/// Applies one SIGHUP: new `[auth]` from the config file (or the same htpasswd
/// again without one). A broken file leaves everything as it was.
pub fn apply(source: &ReloadSource, state: &State) {
    let auth = match &source.config_path {
        Some(p) => match Config::load(p) {
            Ok(c) => Some(c.auth),
            Err(e) => {
                tracing::error!(error = %e, "reload refused: config file is invalid; keeping the running configuration");
                return;
            }
        },
        None => None,
    };
    let result = match &auth {
        Some(a) => state.auth.reload(a).map(Some),
        None => state.auth.users().map(|u| u.reload()).transpose(),
    };
    match result {
        Ok(users) => tracing::info!(
            users = users.unwrap_or(0),
            "reloaded authentication settings"
        ),
        Err(e) => tracing::error!(error = %e, "reload refused: keeping the running users"),
    }
    if let Some(tls) = &state.tls {
        match tls.reload() {
            Ok(()) => tracing::info!("reloaded TLS certificate"),
            Err(e) => {
                tracing::error!(error = %e, "TLS reload refused: keeping the running certificate")
            }
        }
    }
}

/// Waits for SIGHUP and applies it, until shutdown.
pub async fn on_sighup(
    source: ReloadSource,
    state: Arc<State>,
    mut shutdown: watch::Receiver<bool>,
) {
    let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP; reloads need a restart");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP received");
                crate::systemd::notify(Notice::Reloading).await;
                // Reading files and hashing the dummy password are blocking work.
                let (source, state) = (source.clone(), state.clone());
                if let Err(e) = tokio::task::spawn_blocking(move || apply(&source, &state)).await {
                    tracing::error!(error = %e, "reload failed");
                }
                // Back to serving, whether the reload took (a refused file
                // keeps the running settings; the log says why).
                crate::systemd::notify(Notice::Ready("serving; configuration reloaded".into())).await;
            }
            _ = until_shutdown(&mut shutdown) => return,
        }
    }
}

/// Re-reads the htpasswd file when it changes, until shutdown.
pub async fn watch_files(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(WATCH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                let st = state.clone();
                match tokio::task::spawn_blocking(move || st.auth.reload_users_if_changed()).await {
                    Ok(Ok(true)) => tracing::info!("htpasswd file changed; users reloaded"),
                    Ok(Ok(false)) => {}
                    Ok(Err(e)) => tracing::error!(error = %e, "htpasswd file changed but is invalid; keeping the running users"),
                    Err(e) => tracing::error!(error = %e, "htpasswd check failed"),
                }
            }
            _ = until_shutdown(&mut shutdown) => return,
        }
    }
}
