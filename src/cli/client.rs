//! The admin commands' HTTP client: talks JSON to `/_wharf/v1/` with Basic
//! credentials, and turns every failure into a message a person can act on
//! (the daemon is not running, `--user` is missing, the API's own message).

use std::io::{IsTerminal, Read};
use std::time::Duration;

use serde_json::Value;

/// Options every admin command takes.
#[derive(Debug, Clone, clap::Args)]
pub struct AdminArgs {
    /// The running daemon's URL.
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    pub url: String,
    /// Log in as this admin user; the password comes from WHARF_PASSWORD or
    /// --password-stdin (or a prompt on a terminal).
    #[arg(long)]
    pub user: Option<String>,
    /// Read the password from standard input.
    #[arg(long, requires = "user")]
    pub password_stdin: bool,
    /// Print the API's JSON (pretty) instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// Why an admin command failed; the message is what the user sees.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Nothing answers at the URL.
    #[error("cannot connect to {url}: is wharf running at {url}? ({cause})")]
    Connect {
        /// The daemon URL.
        url: String,
        /// What the connection attempt said.
        cause: String,
    },
    /// 401 without credentials.
    #[error("{message}: pass --user NAME (the password from WHARF_PASSWORD or --password-stdin)")]
    NeedsUser {
        /// The API's message.
        message: String,
    },
    /// 401 with credentials.
    #[error("{message} (user {user}); check the password in WHARF_PASSWORD or --password-stdin")]
    BadLogin {
        /// The user.
        user: String,
        /// The API's message.
        message: String,
    },
    /// The API answered with an error; its message.
    #[error("{0}")]
    Api(String),
    /// Anything else (a bad URL, a reply that is not the admin API's).
    #[error("{0}")]
    Other(String),
}

/// One answer of the API: parsed, and the bytes as they came (what `--json`
/// prints, keys in the API's order).
pub struct Reply {
    value: Value,
    raw: String,
}

impl std::ops::Deref for Reply {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

/// A connection to one daemon's admin API.
pub struct Client {
    base: String,
    http: reqwest::Client,
    credentials: Option<(String, String)>,
    runtime: tokio::runtime::Runtime,
    /// `--json`: print the API's JSON as is.
    pub json: bool,
}

/// The password for `--user`: stdin, WHARF_PASSWORD, or a prompt on a terminal.
fn password(args: &AdminArgs) -> Result<String, CliError> {
    if args.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| CliError::Other(format!("cannot read the password from stdin: {e}")))?;
        return Ok(s.trim_end_matches(['\n', '\r']).to_owned());
    }
    if let Ok(p) = std::env::var("WHARF_PASSWORD") {
        return Ok(p);
    }
    if std::io::stdin().is_terminal() {
        return crate::users::prompt("Password: ").map_err(|e| CliError::Other(e.to_string()));
    }
    Err(CliError::Other(
        "--user needs a password: set WHARF_PASSWORD or pass --password-stdin".into(),
    ))
}

impl Client {
    /// A client for the daemon `args` names.
    pub fn new(args: &AdminArgs) -> Result<Client, CliError> {
        let base = args.url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::Other(format!(
                "--url {base:?} must start with http:// or https://"
            )));
        }
        let credentials = match &args.user {
            Some(u) => Some((u.clone(), password(args)?)),
            None => None,
        };
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .user_agent(concat!("wharf-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::Other(e.to_string()))?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Other(format!("cannot start the async runtime: {e}")))?;
        Ok(Client {
            base,
            http,
            credentials,
            runtime,
            json: args.json,
        })
    }

    /// Runs `f` to completion on the client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// `GET /_wharf/v1/<path>`.
    pub fn get(&self, path: &str) -> Result<Reply, CliError> {
        self.block_on(self.get_async(path))
    }

    /// `POST /_wharf/v1/<path>` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Reply, CliError> {
        self.block_on(self.post_async(path, body))
    }

    /// [`Client::get`], for use inside [`Client::block_on`].
    pub async fn get_async(&self, path: &str) -> Result<Reply, CliError> {
        self.send(self.http.get(self.url(path))).await
    }

    /// [`Client::post`], for use inside [`Client::block_on`].
    pub async fn post_async(&self, path: &str, body: &Value) -> Result<Reply, CliError> {
        let bytes = serde_json::to_vec(body).map_err(|e| CliError::Other(e.to_string()))?;
        let req = self
            .http
            .post(self.url(path))
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(bytes);
        self.send(req).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}/_wharf/v1/{path}", self.base)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<Reply, CliError> {
        let req = match &self.credentials {
            Some((u, p)) => req.basic_auth(u, Some(p)),
            None => req,
        };
        let resp = req.send().await.map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                CliError::Connect {
                    url: self.base.clone(),
                    cause: root_cause(&e),
                }
            } else {
                CliError::Other(format!(
                    "request to {} failed: {}",
                    self.base,
                    root_cause(&e)
                ))
            }
        })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| CliError::Other(format!("reading the answer failed: {e}")))?;
        let value: Option<Value> = serde_json::from_slice(&body).ok();
        if status.is_success() {
            return match value {
                Some(value) => Ok(Reply {
                    value,
                    raw: String::from_utf8_lossy(&body).into_owned(),
                }),
                None => Err(CliError::Other(format!(
                    "{} answered {status} without JSON: is it wharf's admin API?",
                    self.base
                ))),
            };
        }
        let message = value
            .as_ref()
            .and_then(|v| v["error"]["message"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| {
                format!(
                    "{} answered {status}: is it wharf (with the /_wharf/v1/ admin API)?",
                    self.base
                )
            });
        Err(match (status.as_u16(), &self.credentials) {
            (401, None) => CliError::NeedsUser { message },
            (401, Some((user, _))) => CliError::BadLogin {
                user: user.clone(),
                message,
            },
            _ => CliError::Api(message),
        })
    }

    /// Prints an answer as the API sent it, indented (what `--json` shows).
    pub fn print_json(&self, reply: &Reply) {
        println!("{}", super::format::pretty_json(&reply.raw));
    }
}

/// The innermost cause of an error (reqwest wraps hyper wraps io).
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
