//! wharf: a LAN container registry daemon — pull-through mirror, private registry,
//! replication and housekeeping in one binary.
//!
//! # Layout
//!
//! Layers point one way: `oci` ← `store` ← `proxy` ← `http` ← `server` ← `app`;
//! [`upstream`] depends only on `oci`.
//!
//! - [`oci`]: types only (digests, names, manifest views, wire error codes).
//! - [`store`]: the redb index, upload sessions, and content behind the
//!   `BlobBackend` seam in `store::content` (`fs.rs` today): nothing outside
//!   `content/` sees a path or a file handle of content, readers get an opaque
//!   `BlobReader`.
//! - [`proxy`]: `Source` (hosted | mirror, resolved once per request by name
//!   routing), which answers blob, manifest, tags and referrers reads with the
//!   cache policy (TTL, stale-on-error, 404s) inside; the pull-through engine and
//!   the one download per digest (`inflight`).
//! - [`upstream`]: one registry transport (auth challenges, tokens, limits, breaker).
//! - [`auth`]: who may do what.
//! - [`http`]: the typed router, name routing of each request into its `Source`,
//!   the one error table, and one handler file per resource.
//! - [`server`]: the accept loop, hyper-util connections and the graceful drain.
//! - [`workers`]: background tasks (upload expiry, and later sync, replicate, evict, gc).
//! - [`app`]: builds the shared state, runs everything, shuts down in order;
//!   [`shutdown`]: the one shutdown signal the server and workers wait on.
//! - [`config`]: the TOML schema; [`metrics`]: Prometheus counters; [`net`]:
//!   client addresses and trusted-proxy ranges, which config and http share.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![deny(rust_2018_idioms)]
#![deny(clippy::unwrap_used, clippy::expect_used)]

pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod http;
pub mod limits;
pub mod metrics;
pub mod net;
pub mod oci;
pub mod proxy;
pub mod reload;
pub mod server;
pub mod shutdown;
pub mod store;
pub mod tls;
pub mod upstream;
pub mod users;
pub mod workers;
