//! The TOML configuration: schema, embedded defaults, validation, and the size and
//! duration notations (`512MiB`, `5m`). Every key is documented in `config/wharf.toml`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

mod replicate;
pub mod s3;
mod sync;

pub use sync::DEFAULT_RATELIMIT_FLOOR;

/// Why a configuration cannot be used; the message names the key and, where it can,
/// the line.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// TOML syntax, an unknown key or a value of the wrong type.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, which names the key and line.
        message: String,
    },
    /// Values that parse but do not make sense together.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Which key and why.
        message: String,
    },
}

/// A byte count written as `0`, `512MiB`, `200GiB`, `10GB`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ByteSize(pub u64);

/// Splits `"512MiB"` into `(512, "MiB")`; `what` names the notation in errors.
fn number_and_unit<'a>(s: &'a str, what: &str) -> Result<(u64, &'a str), String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n = num.parse().map_err(|_| format!("{s:?} is not {what}"))?;
    Ok((n, unit.trim()))
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = number_and_unit(s, "a size like \"512MiB\" or \"200GiB\"")?;
        let mult: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            "TB" => 1_000_000_000_000,
            u => {
                return Err(format!(
                    "unknown size unit {u:?} in {s:?} (use B, KiB, MiB, GiB, TiB)"
                ));
            }
        };
        n.checked_mul(mult)
            .map(ByteSize)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

/// A duration written as `500ms`, `30s`, `5m`, `1h`, `7d`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = number_and_unit(s, "a duration like \"30s\", \"5m\" or \"1h\"")?;
        let d = match unit {
            // Zero needs no unit (`[gc] interval = "0"`: only on demand).
            "" if n == 0 => Duration::ZERO,
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "d" => Duration::from_secs(n.saturating_mul(86_400)),
            u => {
                return Err(format!(
                    "unknown duration unit {u:?} in {s:?} (use ms, s, m, h, d)"
                ));
            }
        };
        Ok(HumanDuration(d))
    }
}

macro_rules! deserialize_via_from_str {
    ($t:ty) => {
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
deserialize_via_from_str!(ByteSize);
deserialize_via_from_str!(HumanDuration);

/// The whole file. Missing sections take their defaults; unknown keys are errors.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// `[server]`
    pub server: ServerConfig,
    /// `[storage]`
    pub storage: StorageConfig,
    /// `[auth]`
    pub auth: AuthConfig,
    /// `[[upstream]]`; empty means the Docker Hub preset.
    pub upstream: Vec<UpstreamConfig>,
    /// `[hosted]`
    pub hosted: HostedConfig,
    /// `[[peer]]`
    pub peer: Vec<PeerConfig>,
    /// `[[sync]]`
    pub sync: Vec<SyncConfig>,
    /// `[[replicate]]`
    pub replicate: Vec<ReplicateConfig>,
    /// `[gc]`
    pub gc: GcConfig,
    /// `[ui]`
    pub ui: UiConfig,
    /// `[log]`
    pub log: LogConfig,
}

/// `[server]`: where and how to listen.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to bind.
    pub listen: SocketAddr,
    /// PEM certificate chain; with `tls_key`, serve HTTPS.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key.
    pub tls_key: Option<PathBuf>,
    /// Base URL used where an absolute URL is needed (Location headers, token realm).
    pub public_url: Option<String>,
    /// How long SIGTERM waits for in-flight requests before cutting them.
    pub drain_timeout: HumanDuration,
    /// How long a client may take to send a request's headers (slowloris).
    pub header_timeout: HumanDuration,
    /// How long a request body may stall between two reads before it is cut.
    pub body_timeout: HumanDuration,
    /// Most uploads one client address may stream at the same time.
    pub uploads_per_client: usize,
    /// Most blob downloads (cache fills from an upstream or peer) one client
    /// address may have started that are still running; they go on after the
    /// client leaves, so each costs until it ends.
    pub downloads_per_client: usize,
    /// Most blob downloads running at once, whoever started them.
    pub max_downloads: usize,
    /// Reverse proxies whose `X-Forwarded-For`/`Forwarded` headers are believed.
    pub trusted_proxies: Vec<crate::net::Cidr>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([0, 0, 0, 0], 5000)),
            tls_cert: None,
            tls_key: None,
            public_url: None,
            drain_timeout: HumanDuration(Duration::from_secs(30)),
            header_timeout: HumanDuration(Duration::from_secs(30)),
            body_timeout: HumanDuration(Duration::from_secs(60)),
            uploads_per_client: 32,
            downloads_per_client: 32,
            max_downloads: 256,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[storage]`: the data directory and the cache budget.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Holds `index.redb`, `blobs/` and `tmp/`.
    pub root: PathBuf,
    /// Budget for mirrored content; 0 = unlimited.
    pub max_cache_size: ByteSize,
    /// Eviction goes down to this fraction of `max_cache_size`.
    pub low_watermark: f64,
    /// Where blob content lives: `fs` (files under `root`) or `s3`.
    pub backend: String,
    /// `[storage.s3]`: the bucket, when `backend = "s3"`.
    pub s3: Option<s3::S3Config>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            root: PathBuf::from("./wharf-data"),
            max_cache_size: ByteSize(0),
            low_watermark: 0.9,
            backend: "fs".into(),
            s3: None,
        }
    }
}

/// Who may pull without credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnonymousPull {
    /// Everything.
    All,
    /// Only proxied (mirrored) content.
    Mirrored,
    /// Nothing.
    None,
}

impl<'de> Deserialize<'de> for AnonymousPull {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Bool(bool),
            Str(String),
        }
        match Raw::deserialize(d)? {
            Raw::Bool(true) => Ok(AnonymousPull::All),
            Raw::Bool(false) => Ok(AnonymousPull::None),
            Raw::Str(s) if s == "mirrored" => Ok(AnonymousPull::Mirrored),
            Raw::Str(s) => Err(serde::de::Error::custom(format!(
                "anonymous_pull must be true, false or \"mirrored\", not {s:?}"
            ))),
        }
    }
}

/// How clients authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthScheme {
    /// HTTP Basic on every request.
    Basic,
    /// Bearer tokens from `/token`, the Docker Hub flow.
    Token,
    /// Token when users exist and anonymous pulls are allowed (the only scheme
    /// under which dockerd, containerd and containers/image pull anonymously
    /// from a registry that also takes logins), Basic otherwise.
    Auto,
}

impl AuthScheme {
    /// The scheme in force for `auth`: `auto` resolved.
    pub fn effective(auth: &AuthConfig) -> AuthScheme {
        match auth.scheme {
            AuthScheme::Auto
                if auth.htpasswd.is_some() && auth.anonymous_pull != AnonymousPull::None =>
            {
                AuthScheme::Token
            }
            AuthScheme::Auto => AuthScheme::Basic,
            s => s,
        }
    }
}

/// `[auth]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// bcrypt htpasswd file.
    pub htpasswd: Option<PathBuf>,
    /// What anonymous clients may pull.
    pub anonymous_pull: AnonymousPull,
    /// basic, token or auto.
    pub scheme: AuthScheme,
    /// Users allowed to use the `/_wharf/` admin API.
    pub admins: Vec<String>,
    /// ACL rules; first match wins.
    pub rule: Vec<AuthRule>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            htpasswd: None,
            anonymous_pull: AnonymousPull::All,
            scheme: AuthScheme::Auto,
            admins: Vec::new(),
            rule: Vec::new(),
        }
    }
}

/// One `[[auth.rule]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthRule {
    /// User names; `"*"` matches any authenticated user.
    pub users: Vec<String>,
    /// Repository globs (`team/*`).
    pub repos: Vec<String>,
    /// pull, push, delete; empty denies.
    pub actions: Vec<Action>,
}

/// What a request does to a repository, for authorization.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Read.
    Pull,
    /// Write.
    Push,
    /// Remove.
    Delete,
}

/// One `[[upstream]]` registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamConfig {
    /// Registry host as clients write it (`docker.io`, `ghcr.io`).
    pub name: String,
    /// Base URL of its v2 API.
    pub url: String,
    /// Whether unqualified names go here.
    #[serde(default)]
    pub default: bool,
    /// How long a tag is trusted before revalidation.
    #[serde(default = "default_manifest_ttl")]
    pub manifest_ttl: HumanDuration,
    /// governor limit on calls to this upstream.
    #[serde(default)]
    pub requests_per_second: Option<u32>,
    /// Credentials for the upstream.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the password (never the password inline).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
}

fn default_manifest_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

impl Config {
    /// The routing rules of this configuration.
    pub fn route_rules(&self) -> crate::oci::routing::RouteRules {
        crate::oci::routing::RouteRules {
            upstreams: self
                .upstream
                .iter()
                .map(|u| (u.name.clone(), u.default))
                .collect(),
            hosted_prefixes: self.hosted.prefixes.clone(),
            claim_on_push: self.hosted.claim_on_push,
            hosted_only: self.hosted.only,
        }
    }
}

impl UpstreamConfig {
    /// The preset used when no `[[upstream]]` is configured.
    pub fn docker_hub() -> Self {
        UpstreamConfig {
            name: "docker.io".into(),
            url: "https://registry-1.docker.io".into(),
            default: true,
            manifest_ttl: default_manifest_ttl(),
            requests_per_second: None,
            username: None,
            password_file: None,
        }
    }
}

/// `[hosted]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HostedConfig {
    /// Name prefixes reserved for pushes, never proxied.
    pub prefixes: Vec<String>,
    /// A push to a name no upstream claims explicitly makes it hosted.
    pub claim_on_push: bool,
    /// A plain private registry: every name hosted, no upstream contacted.
    pub only: bool,
}

impl Default for HostedConfig {
    fn default() -> Self {
        HostedConfig {
            prefixes: Vec::new(),
            claim_on_push: true,
            only: false,
        }
    }
}

/// `[ui]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UiConfig {
    /// The web page at `/ui/` (same users and rules as the API); false: `/ui/`
    /// answers 404.
    pub enabled: bool,
}

impl Default for UiConfig {
    fn default() -> Self {
        UiConfig { enabled: true }
    }
}

/// One `[[peer]]` wharf on the LAN.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    /// Base URL of the peer.
    pub url: String,
}

/// One `[[sync]]` job keeping upstream images warm.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Fully qualified image (`docker.io/library/nginx`).
    pub image: String,
    /// Tags or tag globs.
    pub tags: Vec<String>,
    /// How often.
    #[serde(default = "default_sync_every")]
    pub every: HumanDuration,
    /// Platforms of an index to keep (default: all).
    #[serde(default)]
    pub platforms: Vec<String>,
    /// Under this many pulls left in Docker Hub's window
    /// (`ratelimit-remaining`), the rule stops fetching for the pass.
    #[serde(default = "default_ratelimit_floor")]
    pub ratelimit_floor: u64,
}

fn default_ratelimit_floor() -> u64 {
    DEFAULT_RATELIMIT_FLOOR
}

fn default_sync_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(3600))
}

/// One `[[replicate]]` rule: hosted repositories matching `repos` are copied
/// to the registry at `to` (see `workers/replicate/`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicateConfig {
    /// Repository globs (`team/*`; `*` crosses `/`, as in `[[auth.rule]]`).
    pub repos: Vec<String>,
    /// Base URL of the target registry (any v2 registry).
    pub to: String,
    /// Credentials for the target.
    #[serde(default)]
    pub username: Option<String>,
    /// File holding the target's password.
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// How often the tags on both sides are compared (the reconcile).
    #[serde(default = "default_reconcile_every")]
    pub every: HumanDuration,
    /// Whether tag and manifest deletions follow to the target.
    #[serde(default)]
    pub delete: bool,
}

fn default_reconcile_every() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

impl ReplicateConfig {
    /// The target's URL without a trailing `/`: the rule's identity in the
    /// replication queue.
    pub fn target(&self) -> &str {
        self.to.trim_end_matches('/')
    }
}

/// `[gc]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GcConfig {
    /// How often online collection runs.
    pub interval: HumanDuration,
    /// Blobs younger than this are never collected.
    pub grace: HumanDuration,
    /// Uploads idle longer than this are abandoned and removed.
    pub upload_expiry: HumanDuration,
}

impl Default for GcConfig {
    fn default() -> Self {
        GcConfig {
            interval: HumanDuration(Duration::from_secs(3600)),
            grace: HumanDuration(Duration::from_secs(600)),
            upload_expiry: HumanDuration(Duration::from_secs(86_400)),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// A level or a tracing filter (`info,wharf=debug`).
    pub level: String,
    /// text or json.
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            format: LogFormat::Text,
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Pull => "pull",
            Action::Push => "push",
            Action::Delete => "delete",
        })
    }
}

impl Config {
    /// Reads and validates a file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parses and validates TOML text; `path` only labels messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: parse_error_message(text, &e),
        })?;
        cfg.validate(text).map_err(|message| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        })?;
        if cfg.upstream.is_empty() && !cfg.hosted.only {
            cfg.upstream.push(UpstreamConfig::docker_hub());
        }
        Ok(cfg)
    }

    /// The embedded defaults used when `wharf serve` runs without `--config`.
    pub fn embedded_default() -> Config {
        let mut cfg = Config::default();
        cfg.upstream.push(UpstreamConfig::docker_hub());
        cfg
    }

    fn validate(&self, text: &str) -> Result<(), String> {
        let at = |key: &str| match line_of(text, key) {
            Some(l) => format!("line {l}: "),
            None => String::new(),
        };
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            let key = if self.server.tls_cert.is_some() {
                "tls_cert"
            } else {
                "tls_key"
            };
            return Err(format!(
                "{}server.tls_cert and server.tls_key must be set together",
                at(key)
            ));
        }
        if let Some(u) = &self.server.public_url {
            if !(u.starts_with("http://") || u.starts_with("https://")) {
                return Err(format!(
                    "{}server.public_url must start with http:// or https://",
                    at("public_url")
                ));
            }
        }
        if self.auth.scheme == AuthScheme::Basic
            && self.auth.htpasswd.is_some()
            && self.auth.anonymous_pull != AnonymousPull::None
        {
            return Err(format!(
                "{}auth.scheme = \"basic\" with users and anonymous pulls cannot work: dockerd, \
                 containerd and podman/skopeo meet a Basic challenge on /v2/ and give up (or \
                 send empty credentials) instead of pulling anonymously; use scheme = \"auto\" \
                 (the default) or \"token\", or set anonymous_pull = false",
                at("scheme")
            ));
        }
        if self.hosted.only && !self.upstream.is_empty() {
            return Err(format!(
                "{}hosted.only = true makes wharf a plain private registry that contacts no \
                 upstream; remove the [[upstream]] sections (or set only = false)",
                at("[[upstream]]")
            ));
        }
        if self.hosted.only && !self.peer.is_empty() {
            return Err(format!(
                "{}hosted.only = true contacts no upstream and mirrors nothing, so [[peer]] \
                 would never be asked; remove the [[peer]] sections",
                at("[[peer]]")
            ));
        }
        for (key, n) in [
            ("downloads_per_client", self.server.downloads_per_client),
            ("max_downloads", self.server.max_downloads),
        ] {
            if n == 0 {
                return Err(format!("{}server.{key} must be at least 1", at(key)));
            }
        }
        if self.server.uploads_per_client == 0 {
            return Err(format!(
                "{}server.uploads_per_client must be at least 1",
                at("uploads_per_client")
            ));
        }
        for (key, d) in [
            ("header_timeout", self.server.header_timeout),
            ("body_timeout", self.server.body_timeout),
        ] {
            if d.0.is_zero() {
                return Err(format!("{}server.{key} must be longer than 0s", at(key)));
            }
        }
        let wm = self.storage.low_watermark;
        if !(wm > 0.0 && wm <= 1.0) {
            return Err(format!(
                "{}storage.low_watermark must be in (0, 1], not {wm}",
                at("low_watermark")
            ));
        }
        let mut names = std::collections::HashSet::new();
        for u in &self.upstream {
            if u.name.contains('/') || u.name.parse::<crate::oci::RepoName>().is_err() {
                return Err(format!(
                    "{}upstream.name {:?} must be a lowercase registry host without port or path (it is the first component of proxied names)",
                    at(&u.name),
                    u.name
                ));
            }
            if !names.insert(u.name.as_str()) {
                return Err(format!(
                    "{}upstream.name {:?} appears twice",
                    at(&u.name),
                    u.name
                ));
            }
            if !(u.url.starts_with("http://") || u.url.starts_with("https://")) {
                return Err(format!(
                    "{}upstream.url {:?} must start with http:// or https://",
                    at(&u.url),
                    u.url
                ));
            }
            if has_userinfo(&u.url) {
                return Err(format!(
                    "{}upstream.url must not hold credentials (user:password@host): use username and password_file",
                    at("url")
                ));
            }
            if u.requests_per_second == Some(0) {
                return Err(format!(
                    "{}upstream.requests_per_second must be at least 1",
                    at("requests_per_second")
                ));
            }
        }
        if self.upstream.iter().filter(|u| u.default).count() > 1 {
            return Err(format!(
                "{}only one [[upstream]] may have default = true",
                at("default")
            ));
        }
        for p in &self.peer {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return Err(format!(
                    "{}peer.url {:?} must start with http:// or https://",
                    at(&p.url),
                    p.url
                ));
            }
            if has_userinfo(&p.url) {
                return Err(format!(
                    "{}peer.url must not hold credentials (user:password@host): peers are asked anonymously",
                    at("url")
                ));
            }
        }
        s3::validate(self, &at)?;
        replicate::validate(&self.replicate, &at)?;
        sync::validate(self, &at)?;
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(format!(
                "{}log.level {:?} is not a level or tracing filter",
                at("level"),
                self.log.level
            ));
        }
        Ok(())
    }
}

/// First 1-based line mentioning `needle`, to point validation errors at the file.
fn line_of(text: &str, needle: &str) -> Option<usize> {
    text.lines().position(|l| l.contains(needle)).map(|i| i + 1)
}

/// A TOML error as shown to the operator: toml's own rendering (which quotes
/// the offending line), except in a file that writes an inline secret
/// (`secret_access_key = ...`): then only where and what, whatever line the
/// error is on, so a mistyped secret never lands in a terminal or the
/// journal. The error need not start on the secret's line: inside a
/// multi-line string or array its line is one of the secret's own.
fn parse_error_message(text: &str, e: &toml::de::Error) -> String {
    if !holds_inline_secret(text) {
        return e.to_string();
    }
    let message = e.message().trim();
    let Some(before) = e.span().and_then(|span| text.get(..span.start)) else {
        return format!("{message} (no line is shown: the file holds a secret)");
    };
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let rest = &text[line_start..];
    let line = rest.split('\n').next().unwrap_or(rest);
    // The key is named only when it is a known one: the first word of a
    // line inside a multi-line value is the secret's own text.
    let first = line
        .trim_start()
        .split(|c: char| c.is_whitespace() || c == '=')
        .next()
        .unwrap_or("");
    let key = ["secret_access_key_file", "secret_access_key"]
        .into_iter()
        .find(|k| first.contains(k))
        .map_or(String::new(), |k| format!(", {k}"));
    let number = before.matches('\n').count() + 1;
    let column = before[line_start..].chars().count() + 1;
    format!(
        "line {number}, column {column}{key}: {message} (no line is shown: the file holds a secret)"
    )
}

/// Whether `text` writes a secret inline: a line (not a comment) that
/// mentions a secret other than by a `*_file` key.
fn holds_inline_secret(text: &str) -> bool {
    text.lines().any(|l| {
        let l = l.trim_start().to_ascii_lowercase();
        !l.starts_with('#') && l.replace("secret_access_key_file", "").contains("secret")
    })
}

/// Whether `url` carries credentials (`user:password@host`). Refused in
/// every URL key: URLs are logged, named in `/metrics` labels and shown by
/// `wharf status`, so a secret there would leak; credentials have keys of
/// their own (`username`, `password_file`).
pub(crate) fn has_userinfo(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', '?', '#'])
        .next()
        .is_some_and(|authority| authority.contains('@'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_in_a_url_are_refused_without_echoing_them() {
        for (toml, key) in [
            (
                "[[upstream]]\nname=\"a\"\nurl=\"https://bob:s3cret@a.example\"\n",
                "upstream.url",
            ),
            (
                "[[peer]]\nurl=\"http://bob:s3cret@10.0.0.2:5000\"\n",
                "peer.url",
            ),
            (
                "[[replicate]]\nrepos=[\"team/*\"]\nto=\"http://bob:s3cret@b.example\"\n",
                "replicate.to",
            ),
        ] {
            let e = parse(toml).unwrap_err().to_string();
            assert!(e.contains(key) && e.contains("credentials"), "{e}");
            assert!(!e.contains("s3cret"), "the secret is echoed: {e}");
        }
        assert!(!has_userinfo("http://a.example/path@x"));
        assert!(has_userinfo("http://u@a.example"));
    }

    fn parse(s: &str) -> Result<Config, ConfigError> {
        Config::parse(s, Path::new("t.toml"))
    }

    #[test]
    fn empty_file_gives_defaults_and_docker_hub() {
        let c = parse("").unwrap();
        assert_eq!(c.server.listen.port(), 5000);
        assert_eq!(c.upstream.len(), 1);
        assert!(c.upstream[0].default);
        assert_eq!(c.gc.upload_expiry.0, Duration::from_secs(86_400));
    }

    #[test]
    fn embedded_defaults_match_the_documented_ones() {
        let c = Config::embedded_default();
        assert_eq!(c.server.listen, "0.0.0.0:5000".parse().unwrap());
        assert_eq!(c.storage.root, PathBuf::from("./wharf-data"));
        assert_eq!(c.upstream[0].url, "https://registry-1.docker.io");
        assert_eq!(c.auth.anonymous_pull, AnonymousPull::All);
        assert!(c.auth.htpasswd.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let e = parse("[server]\nlisten = \"127.0.0.1:1\"\nlisen = 3\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("lisen"), "{e}");
        assert!(e.contains("line 3"), "{e}");
    }

    #[test]
    fn sizes_and_durations() {
        assert_eq!("512MiB".parse::<ByteSize>().unwrap().0, 512 << 20);
        assert_eq!("200GiB".parse::<ByteSize>().unwrap().0, 200 << 30);
        assert_eq!("0".parse::<ByteSize>().unwrap().0, 0);
        assert!("12XB".parse::<ByteSize>().is_err());
        assert_eq!(
            "5m".parse::<HumanDuration>().unwrap().0,
            Duration::from_secs(300)
        );
        assert!("5 weeks".parse::<HumanDuration>().is_err());
        assert_eq!("0".parse::<HumanDuration>().unwrap().0, Duration::ZERO);
        assert!(
            "5".parse::<HumanDuration>().is_err(),
            "only zero goes without a unit"
        );
        let e = parse("[gc]\ngrace = \"10 parsecs\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 2") && e.contains("grace"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_key() {
        let e = parse("[server]\ntls_cert = \"/a\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("tls_key") && e.contains("line 2"), "{e}");
        let e = parse("[auth]\nanonymous_pull = \"sometimes\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("anonymous_pull"), "{e}");
        let two = "[[upstream]]\nname=\"a\"\nurl=\"http://a\"\ndefault=true\n[[upstream]]\nname=\"b\"\nurl=\"http://b\"\ndefault=true\n";
        assert!(parse(two).unwrap_err().to_string().contains("default"));
    }
}
