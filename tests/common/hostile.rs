//! A hostile replication target: a proxy (hyper, 127.0.0.1:0) in front of a
//! real registry that answers the requests a rule picks with what the rule
//! says (a status, headers, a body that is garbage or never ends) and
//! forwards every other request unchanged. Unlike `faulty` (the first N
//! requests), it picks requests by method and path, for as long as it runs,
//! so a target can misbehave for one repository or one step of a push only.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

/// How a picked request is answered.
#[derive(Clone, Debug)]
pub struct Answer {
    /// Its status.
    pub status: u16,
    /// Its headers.
    pub headers: Vec<(String, String)>,
    /// Its body.
    pub body: Body,
}

/// A picked request's body.
#[derive(Clone, Debug)]
pub enum Body {
    /// These bytes.
    Bytes(Vec<u8>),
    /// Announces `Content-Length: n`, then sends nothing and never ends.
    Stall(u64),
}

impl Answer {
    /// `status` with `body`.
    pub fn new(status: u16, body: &[u8]) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Body::Bytes(body.to_vec()),
        }
    }

    /// `status` with a body that never comes.
    pub fn stalled(status: u16) -> Answer {
        Answer {
            status,
            headers: Vec::new(),
            body: Body::Stall(100),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Answer {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// Which requests get an [`Answer`]: (method, path and query) → answer.
pub type Rule = dyn Fn(&Method, &str) -> Option<Answer> + Send + Sync;

/// A running hostile target; stops on drop.
pub struct Hostile {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    picked: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Requests the rule answered so far.
    pub fn picked(&self) -> usize {
        self.picked.load(Ordering::SeqCst)
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Starts a hostile target in front of `upstream` (`http://127.0.0.1:PORT`).
pub async fn hostile(
    upstream: &str,
    rule: impl Fn(&Method, &str) -> Option<Answer> + Send + Sync + 'static,
) -> Hostile {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let picked = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let rule: Arc<Rule> = Arc::new(rule);
    let shared = Arc::new((upstream.trim_end_matches('/').to_owned(), client));
    let count = picked.clone();
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (shared, rule, count) = (shared.clone(), rule.clone(), count.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (shared, rule, count) = (shared.clone(), rule.clone(), count.clone());
                        async move {
                            let path = req
                                .uri()
                                .path_and_query()
                                .map_or("/", |p| p.as_str())
                                .to_owned();
                            let resp = match rule(req.method(), &path) {
                                Some(a) => {
                                    count.fetch_add(1, Ordering::SeqCst);
                                    answer(&a)
                                }
                                None => forward(&shared.1, &shared.0, req).await,
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Hostile { url, picked, task }
}

fn answer(a: &Answer) -> http::Response<reqwest::Body> {
    let mut r = http::Response::builder().status(a.status);
    for (k, v) in &a.headers {
        r = r.header(k, v);
    }
    let body = match &a.body {
        Body::Bytes(b) => {
            r = r.header("content-length", b.len());
            reqwest::Body::from(b.clone())
        }
        Body::Stall(n) => {
            r = r.header("content-length", *n);
            reqwest::Body::wrap(Never)
        }
    };
    r.body(body).unwrap()
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    req: http::Request<hyper::body::Incoming>,
) -> http::Response<reqwest::Body> {
    let (parts, body) = req.into_parts();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut rb = client.request(parts.method.clone(), format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        if !HOP.contains(&k.as_str()) {
            rb = rb.header(k, v);
        }
    }
    if parts.headers.contains_key("content-length")
        || parts.headers.contains_key("transfer-encoding")
    {
        rb = rb.body(reqwest::Body::wrap_stream(
            http_body_util::BodyDataStream::new(body),
        ));
    }
    match rb.send().await {
        Ok(resp) => {
            let mut resp = http::Response::<reqwest::Body>::from(resp);
            for h in HOP {
                resp.headers_mut().remove(*h);
            }
            resp
        }
        Err(e) => http::Response::builder()
            .status(502)
            .body(reqwest::Body::from(format!("proxy: {e}")))
            .unwrap(),
    }
}

/// A body that never yields a byte and never ends.
struct Never;

impl http_body::Body for Never {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<bytes::Bytes>, std::io::Error>>> {
        std::task::Poll::Pending
    }
}
