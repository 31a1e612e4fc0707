//! wharf: a LAN container registry daemon — pull-through mirror, private registry,
//! replication and housekeeping in one binary.
//!
//! # Layout
//!
//! Layers point one way: `oci` ← `store` ← `http` ← `server` ← `app`.
//!
//! - [`oci`]: types only (digests, names, manifest views, wire error codes).
//! - [`store`]: the redb index and content-addressed files behind registry operations.
//! - [`auth`]: who may do what.
//! - [`http`]: the typed router, the one error table, and one handler file per resource.
//! - [`server`]: the accept loop, hyper-util connections and the graceful drain.
//! - [`workers`]: background tasks (upload expiry; the storage lifecycle: access-time
//!   flush, evict, gc, verify; later sync and replicate).
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
