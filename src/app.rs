//! The composition root: builds store, metrics, authorizer, upstreams, peers,
//! proxy and workers from the configuration and hands each part what it needs
//! (nothing below builds its own dependencies from config), runs the server and
//! the workers, and shuts down in order: stop accepting → drain HTTP → stop
//! workers → close the index last.

use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::Authorizer;
use crate::config::Config;
use crate::http::State;
use crate::limits::ClientSlots;
use crate::metrics::Metrics;
use crate::proxy::Proxy;
use crate::store::{Store, StoreError};
use crate::workers::lifecycle::Lifecycle;
use crate::workers::sync::{Sync, SyncRule};
use crate::workers::uploads::UploadExpiry;

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Storage could not be opened.
    #[error("cannot open storage: {0}")]
    Store(#[from] StoreError),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The htpasswd file is unusable.
    #[error("{0}")]
    Htpasswd(#[from] crate::auth::htpasswd::HtpasswdError),
    /// An upstream is misconfigured (unreadable password file, bad URL).
    #[error("upstream {name}: {message}")]
    Upstream {
        /// Which upstream.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The TLS certificate or key is unusable.
    #[error("{0}")]
    Tls(#[from] crate::tls::TlsError),
    /// A `[[sync]]` rule cannot be built.
    #[error("[[sync]]: {0}")]
    Sync(String),
    /// `[storage.s3]` cannot be used (an unreadable secret file).
    #[error("[storage.s3]: {0}")]
    S3(String),
}

/// This node's identity: a random id made on the first start and kept in
/// `<root>/node-id`, so a restart is the same node and another host is not.
fn node_id(root: &std::path::Path) -> Result<String, AppError> {
    let path = root.join("node-id");
    let unusable = |e: std::io::Error| AppError::S3(format!("{}: {e}", path.display()));
    match std::fs::read_to_string(&path) {
        Ok(id) if !id.trim().is_empty() => return Ok(id.trim().to_owned()),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(unusable(e)),
    }
    std::fs::create_dir_all(root).map_err(unusable)?;
    let id = crate::store::random_hex().map_err(|e| AppError::S3(e.to_string()))?;
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap_or_default()
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '.')
        .take(64)
        .collect::<String>();
    let id = format!("{host}-{}", &id[..12.min(id.len())]);
    std::fs::write(&path, format!("{id}\n")).map_err(unusable)?;
    Ok(id)
}

/// Where content lives: `None` for files under the data directory; the
/// bucket for `backend = "s3"`, as a blob backend and as the place hosted
/// records are shared with other nodes.
type ContentBackend = Option<(
    Arc<dyn crate::store::content::BlobBackend>,
    Arc<crate::store::shared::Bucket>,
)>;

/// The content backend `[storage]` asks for.
fn content_backend(config: &Config) -> Result<ContentBackend, AppError> {
    let Some(s3) = config
        .storage
        .s3
        .as_ref()
        .filter(|_| config.storage.backend == "s3")
    else {
        return Ok(None);
    };
    let secret_access_key = match (&s3.secret_access_key, &s3.secret_access_key_file) {
        (Some(inline), _) => Some(inline.expose().trim().to_owned()),
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .map_err(|e| {
                    AppError::S3(format!(
                        "secret_access_key_file {} cannot be read: {e}",
                        path.display()
                    ))
                })?
                .trim()
                .to_owned(),
        ),
        (None, None) => None,
    };
    let node_id = node_id(&config.storage.root)?;
    let prefix = s3.key_prefix();
    let settings = crate::store::content::S3Settings {
        bucket: s3.bucket.clone(),
        endpoint: s3.endpoint.clone(),
        region: s3.region.clone(),
        prefix: prefix.clone(),
        access_key_id: s3.access_key_id.clone(),
        secret_access_key,
        node_id: node_id.clone(),
    };
    let backend = crate::store::content::S3Backend::new(settings)?;
    let bucket = backend.bucket();
    Ok(Some((Arc::new(backend), bucket)))
}

/// How often a node on a shared bucket lists the names other nodes host.
const LEARN_HOSTED_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

/// Keeps a node on a shared bucket learning the names other nodes host
/// (routing and the catalog ask this node's index) until shutdown.
async fn learn_hosted_names(store: Arc<Store>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(LEARN_HOSTED_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        match store.learn_hosted_names().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(names = n, "learned names other nodes host"),
            Err(e) => tracing::warn!(error = %e, "could not list the hosted names in the bucket"),
        }
    }
}

/// Runs wharf on an already-bound listener until `shutdown` turns true.
/// Tests bind `127.0.0.1:0` and pass the listener in.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
) -> Result<(), AppError> {
    run_with(config, listener, shutdown, None, None).await
}

/// [`run`], handing the storage lifecycle workers to `lifecycle` once built,
/// so a test can run gc, eviction and verify passes on the running daemon.
pub async fn run_observed(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    lifecycle: tokio::sync::oneshot::Sender<Lifecycle>,
) -> Result<(), AppError> {
    run_with(config, listener, shutdown, None, Some(lifecycle)).await
}

/// How long shutdown waits for content commits in flight (a rename and an
/// index write: milliseconds, unless the disk is in trouble).
const COMMIT_SETTLE: std::time::Duration = std::time::Duration::from_secs(10);

/// The parts the composition root builds, before they are handed out.
struct Parts {
    state: Arc<State>,
    store: Arc<Store>,
    /// The storage lifecycle workers (also in `state`, for the admin API).
    lifecycle: Lifecycle,
    /// Each worker's loop, spawned once the server runs.
    workers: Vec<SpawnWorker>,
}

/// Starts one worker's loop, which runs until its receiver turns true.
type SpawnWorker = Box<dyn FnOnce(watch::Receiver<bool>) -> tokio::task::JoinHandle<()> + Send>;

/// Builds every part from the configuration: store, metrics, authorizer,
/// upstreams, peers, proxy and workers, and hands each what it needs.
async fn build(config: &Config) -> Result<Parts, AppError> {
    let tls = match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::TlsReloader::load(cert, key)?)),
        _ => None,
    };
    let (backend, bucket) = content_backend(config)?.unzip();
    let store = Arc::new(Store::open_on(&config.storage.root, backend, bucket.clone()).await?);
    // The nodes on one bucket sign Bearer tokens with the bucket's key, so a
    // token one node issued is good on every other (read once the store has
    // checked that the bucket answers).
    let token_key = match &bucket {
        Some(b) => Some(crate::store::shared::token_key::shared_token_key(b).await?),
        None => None,
    };
    // On a shared bucket, the node's live set is out before it serves: a
    // sweep by another node never deletes what this index names.
    store.publish_live_set(None).await?;
    if store.is_shared() {
        // Before serving: a node on an empty data directory routes the names
        // other nodes host as hosted from its first request.
        if let Err(e) = store.learn_hosted_names().await {
            tracing::warn!(error = %e, "could not list the hosted names in the bucket; learning them in the background");
        }
    }
    let metrics = Arc::new(Metrics::new());
    let mut auth = Authorizer::new(config, metrics.password_checks.clone())?;
    if let Some(key) = token_key {
        auth = auth.with_token_key(key);
    }
    let auth = Arc::new(auth);
    let upstreams = Arc::new(build_upstreams(config)?);
    let peer_urls: Vec<String> = config.peer.iter().map(|p| p.url.clone()).collect();
    let peers = Arc::new(crate::upstream::peers::Peers::new(&peer_urls).map_err(|e| {
        AppError::Upstream {
            name: "peer".into(),
            message: e.to_string(),
        }
    })?);
    let proxy = Arc::new(Proxy::new(
        store.clone(),
        upstreams.clone(),
        peers,
        metrics.clone(),
        ClientSlots::new(
            config.server.downloads_per_client,
            config.server.max_downloads,
        ),
    ));

    let mut registry = crate::workers::Registry::default();
    let mut workers: Vec<SpawnWorker> = Vec::new();
    let expiry = crate::workers::Handle::new(
        UploadExpiry::new(store.clone(), metrics.clone(), config.gc.upload_expiry.0),
        metrics.clone(),
    );
    registry.add(expiry.control.clone());
    workers.push(Box::new(move |rx| expiry.spawn(rx)));
    let lifecycle = Lifecycle::new(config, store.clone(), metrics.clone());
    lifecycle.register(&mut registry);
    let replicate = build_replicate(config, &store, &metrics)?;
    if let Some(h) = &replicate {
        registry.add(h.control.clone());
        let control = h.control.clone();
        h.worker.attach(move || control.kick());
        let h = h.clone();
        workers.push(Box::new(move |rx| {
            let first = h.clone();
            tokio::spawn(async move {
                first.worker.forget_removed_targets().await;
                first.control.kick();
                first.spawn(rx).await.ok();
            })
        }));
    }
    if store.is_shared() {
        let s = store.clone();
        workers.push(Box::new(move |rx| tokio::spawn(learn_hosted_names(s, rx))));
    }
    let sync = build_sync(config, &proxy, &store, upstreams, &metrics)?;
    if !config.sync.is_empty() {
        registry.add(sync.control.clone());
        // A first pass at start: rules never run, or overdue while wharf was
        // down, run now; the others wait for their time (`sync_state`).
        sync.control.kick();
        let s = sync.clone();
        workers.push(Box::new(move |rx| s.spawn(rx)));
    }

    let state = Arc::new(State {
        store: store.clone(),
        auth,
        metrics,
        public_url: config
            .server
            .public_url
            .as_ref()
            .map(|u| u.trim_end_matches('/').to_owned()),
        tls,
        body_timeout: config.server.body_timeout.0,
        upload_slots: ClientSlots::new(config.server.uploads_per_client, usize::MAX),
        routes: config.route_rules(),
        proxy,
        trusted_proxies: config.server.trusted_proxies.clone(),
        workers: registry,
        lifecycle: lifecycle.clone(),
        replicate,
        sync,
        started: std::time::Instant::now(),
        cache_budget: crate::http::CacheBudget {
            max_cache_size: config.storage.max_cache_size.0,
            low_watermark: config.storage.low_watermark,
        },
        ui_enabled: config.ui.enabled,
        blob_redirect: config.storage.backend == "s3"
            && config.storage.s3.as_ref().is_some_and(|s3| s3.redirect),
    });
    Ok(Parts {
        state,
        store,
        lifecycle,
        workers,
    })
}

/// [`run`], plus SIGHUP handling when `reload` is given (the daemon; tests send
/// no signals to their own process).
pub async fn run_with(
    config: Config,
    listener: TcpListener,
    shutdown: watch::Receiver<bool>,
    reload: Option<crate::reload::ReloadSource>,
    observe: Option<tokio::sync::oneshot::Sender<Lifecycle>>,
) -> Result<(), AppError> {
    let Parts {
        state,
        store,
        lifecycle,
        workers,
    } = build(&config).await?;
    if let Ok(addr) = listener.local_addr() {
        let scheme = if state.tls.is_some() { "https" } else { "http" };
        tracing::info!(
            %addr,
            scheme,
            root = %config.storage.root.display(),
            version = crate::build_info::VERSION,
            build = crate::build_info::SUMMARY,
            "wharf serving"
        );
    }
    warn_shadowed_pushes(&state);
    match state.auth.users() {
        Some(u) => {
            tracing::info!(users = u.len(), scheme = ?state.auth.scheme(), "authentication enabled")
        }
        None => tracing::info!("no users configured: {}", crate::auth::NO_USERS_HINT),
    }

    for c in &config.server.trusted_proxies {
        if c.is_wide() {
            tracing::warn!(range = %c, "server.trusted_proxies holds a wide range: every client in it can pick its own address with X-Forwarded-For and escape per-client limits; list only your proxies");
        }
    }
    // Workers stop only after the server has drained: a request in flight
    // (an admin API call running a pass) never loses the worker under it.
    let (stop_workers, workers_rx) = watch::channel(false);
    let mut tasks: Vec<_> = workers.into_iter().map(|w| w(workers_rx.clone())).collect();
    tasks.push(tokio::spawn(crate::reload::watch_files(
        state.clone(),
        shutdown.clone(),
    )));
    tasks.extend(lifecycle.spawn(workers_rx.clone()));
    // The web page's last hour and day of cache traffic (kept in memory only).
    tasks.push(tokio::spawn(crate::metrics::history::sampler::run(
        state.metrics.clone(),
        crate::metrics::history::sampler::EVERY,
        workers_rx.clone(),
    )));
    if let Some(tx) = observe {
        let _ = tx.send(lifecycle.clone());
    }
    if let Some(source) = reload {
        tasks.push(tokio::spawn(crate::reload::on_sighup(
            source,
            state.clone(),
            shutdown.clone(),
        )));
    }

    let watchdog = crate::systemd::watchdog::period();
    let heartbeat =
        crate::systemd::watchdog::Heartbeat::new(crate::systemd::watchdog::beat_every(watchdog));
    if let Some(period) = watchdog {
        tasks.push(tokio::spawn(crate::systemd::watchdog::run(
            period,
            store.clone(),
            heartbeat.clone(),
            shutdown.clone(),
        )));
    }
    tasks.push(tokio::spawn(notify_stopping(shutdown.clone())));
    // The listener is bound and the index open: requests are served from here.
    crate::systemd::notify(crate::systemd::Notice::Ready(ready_status(
        &listener, &state,
    )))
    .await;

    crate::server::serve(
        listener,
        state.clone(),
        shutdown,
        crate::server::Limits {
            header_timeout: config.server.header_timeout.0,
            drain: config.server.drain_timeout.0,
        },
        heartbeat,
    )
    .await;

    crate::systemd::notify(crate::systemd::Notice::Status(
        "drained; stopping workers and closing the index".into(),
    ))
    .await;

    let _ = stop_workers.send(true);
    for t in tasks {
        let _ = t.await;
    }
    // A download that renamed its file gets to write its rows (its task is
    // not tied to a connection, so the drain did not wait for it).
    if !store.settle_commits(COMMIT_SETTLE).await {
        tracing::warn!(
            "a content commit was still in flight at exit; start-up will set its file aside"
        );
    }
    // Every handle holding the store goes first, so it closes (and flushes
    // the last-read times) here rather than whenever the process ends.
    drop(lifecycle);
    drop(state);
    match Arc::try_unwrap(store) {
        Ok(store) => store.close(),
        Err(_) => tracing::warn!("storage still referenced at exit; index closes with the process"),
    }
    tracing::info!("wharf stopped");
    Ok(())
}

/// The `STATUS=` line of `READY=1`: where wharf serves (what `systemctl
/// status` shows).
fn ready_status(listener: &TcpListener, state: &State) -> String {
    let scheme = if state.tls.is_some() { "https" } else { "http" };
    match listener.local_addr() {
        Ok(addr) => format!("serving {scheme} on {addr}"),
        Err(_) => format!("serving {scheme}"),
    }
}

/// Tells systemd `STOPPING=1` as soon as shutdown begins (the drain can take
/// up to `drain_timeout`; systemd shows it as deactivating meanwhile).
async fn notify_stopping(mut shutdown: watch::Receiver<bool>) {
    crate::shutdown::until_shutdown(&mut shutdown).await;
    crate::systemd::notify(crate::systemd::Notice::Stopping(
        "stopping: no new connections, draining in-flight requests".into(),
    ))
    .await;
}

/// Pushed repositories whose names now route to an upstream (rule 1, after
/// `[hosted] only` was turned off or an upstream was added) are served as that
/// upstream's content until their tags revalidate: say so at start.
fn warn_shadowed_pushes(state: &State) {
    use crate::oci::routing::{Intent, NoFacts, Target};
    for name in state.store.pushed_repos() {
        let Ok(parsed) = name.parse::<crate::oci::RepoName>() else {
            continue;
        };
        if let Ok(Target::Proxied(m)) = state.routes.route(&parsed, None, Intent::Read, &NoFacts) {
            if m.local == parsed {
                tracing::warn!(repo = %name, "a repository holding pushed content is named like mirrored content of an upstream, so clients reach it as that upstream's; move it (or the upstream) if that is not meant");
            }
        }
    }
}

/// The credentials `username` and the password in `password_file` (read
/// here, once), when both are set.
fn read_credentials(
    username: &Option<String>,
    password_file: &Option<std::path::PathBuf>,
) -> Result<Option<(String, String)>, String> {
    let password = match password_file {
        Some(p) => Some(
            std::fs::read_to_string(p)
                .map_err(|e| format!("cannot read password_file {}: {e}", p.display()))?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
        ),
        None => None,
    };
    match (username, password) {
        (Some(user), Some(pw)) => Ok(Some((user.clone(), pw))),
        (None, None) => Ok(None),
        _ => Err("username and password_file must be set together".into()),
    }
}

/// The replicate worker, when `[[replicate]]` rules exist: one target
/// client per rule.
fn build_replicate(
    config: &Config,
    store: &Arc<Store>,
    metrics: &Arc<Metrics>,
) -> Result<Option<crate::workers::Handle<crate::workers::replicate::Replicate>>, AppError> {
    use crate::upstream::target::{Target, TargetSettings};
    if config.replicate.is_empty() {
        return Ok(None);
    }
    let mut specs = Vec::new();
    for r in &config.replicate {
        let err = |message: String| AppError::Upstream {
            name: format!("replicate target {}", r.target()),
            message,
        };
        let credentials = read_credentials(&r.username, &r.password_file).map_err(err)?;
        let target = Target::new(TargetSettings {
            url: r.target().to_owned(),
            credentials,
        })
        .map_err(|e| err(e.to_string()))?;
        specs.push(crate::workers::replicate::RuleSpec {
            target,
            patterns: r.repos.clone(),
            every: r.every.0,
            deletes: r.delete,
        });
    }
    let worker = crate::workers::replicate::Replicate::new(store.clone(), metrics.clone(), specs)
        .map_err(|e| AppError::Upstream {
        name: "replicate".into(),
        message: e.to_string(),
    })?;
    Ok(Some(crate::workers::Handle::new(worker, metrics.clone())))
}

/// The sync worker over the `[[sync]]` rules (none: it only answers the
/// admin API with an empty list).
fn build_sync(
    config: &Config,
    proxy: &Arc<Proxy>,
    store: &Arc<Store>,
    upstreams: Arc<crate::upstream::Upstreams>,
    metrics: &Arc<Metrics>,
) -> Result<crate::workers::Handle<Sync>, AppError> {
    let rules = SyncRule::from_config(config).map_err(AppError::Sync)?;
    let share = Sync::download_share(
        config.server.max_downloads,
        config.server.downloads_per_client,
    );
    Ok(crate::workers::Handle::new(
        Sync::new(
            rules,
            proxy.clone(),
            store.clone(),
            upstreams,
            metrics.clone(),
            share,
        ),
        metrics.clone(),
    ))
}

/// One client per `[[upstream]]`; a password is read from its file here, once.
fn build_upstreams(config: &Config) -> Result<crate::upstream::Upstreams, AppError> {
    let mut settings = Vec::new();
    for u in &config.upstream {
        let err = |message: String| AppError::Upstream {
            name: u.name.clone(),
            message,
        };
        let credentials = read_credentials(&u.username, &u.password_file).map_err(err)?;
        settings.push(crate::upstream::UpstreamSettings {
            name: u.name.clone(),
            url: u.url.clone(),
            credentials,
            requests_per_second: u.requests_per_second,
            manifest_ttl: u.manifest_ttl.0,
        });
    }
    crate::upstream::Upstreams::new(settings).map_err(|e| AppError::Upstream {
        name: "*".into(),
        message: e.to_string(),
    })
}

/// Binds `server.listen` and runs until SIGTERM or SIGINT. SIGHUP re-reads
/// `config_path` (when given) for `[auth]`, and the htpasswd file.
pub async fn serve(
    config: Config,
    config_path: Option<std::path::PathBuf>,
) -> Result<(), AppError> {
    // SIGHUP's default action ends the process: take it over before anything
    // slow (opening and reconciling the index), so a reload sent during
    // start-up (logrotate, `systemctl reload`, a SIGHUP storm) never kills
    // wharf. Tokio keeps the handler for the life of the process; a SIGHUP
    // before `on_sighup` listens is moot, the configuration is being read now.
    if let Err(e) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tracing::warn!(error = %e, "cannot take over SIGHUP; one during start-up ends wharf");
    }
    let addr = config.server.listen;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })?;
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received");
        let _ = tx.send(true);
    });
    let reload = crate::reload::ReloadSource { config_path };
    run_with(config, listener, rx, Some(reload), None).await
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
