//! wharf: a LAN container registry daemon — pull-through mirror, private registry,
//! replication and housekeeping in one binary.
//!
//! # Layout
//!
//! Layers point one way: `oci` ← `store` ← `proxy` ← `http` ← `server` ← `app`;
//! [`upstream`] depends only on `oci`; [`workers`] use `store`, `proxy` and `upstream`.
//!
//! - [`oci`]: types only (digests, names, image references, manifest views and
//!   platforms, wire error codes).
//! - [`store`]: the redb index, upload sessions, and content behind the
//!   `BlobBackend` seam in `store::content` (`fs.rs` today): nothing outside
//!   `content/` sees a path or a file handle of content, readers get an opaque
//!   `BlobReader` (which offers a `ZeroCopy` send where the backend keeps
//!   stored content in local files).
//! - [`proxy`]: `Source` (hosted | mirror, resolved once per request by name
//!   routing), which answers blob, manifest, tags and referrers reads with the
//!   cache policy (TTL, stale-on-error, 404s) inside; the pull-through engine,
//!   the one download per digest (`inflight`) and, on a bucket several nodes
//!   share, the fill across nodes (`fill`: the bucket before the upstream,
//!   one node downloading under the blob's fill lease).
//! - [`upstream`]: one registry transport (auth challenges, tokens, limits, breaker);
//!   `upstream::target` pushes replicated repositories to another registry.
//! - [`auth`]: who may do what.
//! - [`http`]: one surface per API over one pipeline (client address, access log,
//!   metrics): the OCI API (typed router, name routing of each request into its
//!   `Source`, the one OCI error table, one handler file per resource) and
//!   [`http::admin`], the `/_wharf/v1/` admin API (typed `AdminRoute`, JSON errors
//!   of its own, one handler file per endpoint); [`http::ui`], the web page at
//!   `/ui/` (askama templates in `templates/ui/`, HTML errors, a signed session
//!   cookie and CSRF fields, the same users and rules); `http::zero_copy`: warm blobs
//!   on plain-TCP HTTP/1 sent with `sendfile` through placeholder frames.
//! - [`server`]: the accept loop, hyper-util connections (plain TCP wrapped in
//!   `ZeroCopyStream`) and the graceful drain.
//! - [`workers`]: background tasks in one Worker shape (upload expiry; the storage
//!   lifecycle: access-time flush, evict, gc, verify, backup, and the on-demand
//!   import of a `registry:2` storage root; sync of upstream images;
//!   replicate, over the durable queue the store writes with each push).
//! - [`app`]: the composition root: builds store, auth, upstreams, proxy and workers
//!   and hands each what it needs, runs everything, shuts down in order;
//!   [`shutdown`]: the one shutdown signal the server and workers wait on;
//!   [`systemd`]: `Type=notify` readiness, reload and stop notices, and the
//!   watchdog that pings only while the accept loop and the index writer live.
//! - [`cli`]: the command line; the admin commands are clients of the admin API.
//! - [`migrate_config`]: `wharf config from-registry`, a registry:2 `config.yml`
//!   rewritten as a commented `wharf.toml` (offline).
//! - [`config`]: the TOML schema; [`logging`]: the subscriber and its
//!   non-blocking sink; [`metrics`]: Prometheus counters, and their last hour
//!   and day in memory for the web page (`metrics::history`); [`net`]:
//!   client addresses and trusted-proxy ranges, which config and http share;
//!   [`blob_body`]: a stored blob as an HTTP body, which responses and
//!   replication uploads share; [`build_info`]: version, commit, build date and
//!   profile (from `build.rs`), which the CLI, the log and the admin API share.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rust_2018_idioms)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod auth;
pub mod blob_body;
pub mod build_info;
pub mod cli;
pub mod config;
pub mod http;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod migrate_config;
pub mod net;
pub mod oci;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod tls;
pub mod upstream;
pub mod users;
pub mod workers;
