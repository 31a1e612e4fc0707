//! What a request needs, computed by the HTTP layer from its typed route and the
//! local name routing chose, so authorization decides on this value alone and
//! never on an HTTP type.

use crate::config::Action;

/// The permission one request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    /// Nothing: health, readiness, metrics and the token endpoint.
    Open,
    /// `GET /v2/`: anonymous callers are challenged once users exist, which is
    /// how clients learn to log in (or, in token mode, fetch anonymous tokens).
    ApiRoot,
    /// `/v2/_catalog`: the listing is filtered by what the caller may pull.
    Catalog,
    /// The `/_wharf/` admin API.
    Admin,
    /// `action` on the repository stored under `local`.
    Repo {
        /// The local name (what the rules and tokens are checked against).
        local: String,
        /// pull, push or delete.
        action: Action,
        /// The scope a Bearer challenge asks for (`repository:NAME:pull,push`).
        scope: String,
    },
}
