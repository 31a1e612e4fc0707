//! A hostile registry in front of a real one (hyper, 127.0.0.1:0): a `hook`
//! sees every request and either answers it itself (a made-up tag list, a
//! blob that drips one byte at a time, headers and then silence, ...) or
//! lets it through unchanged (bodies streamed both ways). What no real
//! registry does on demand: a hostile upstream for the sync attacks, a
//! hostile target for the replication attacks. Unlike `faulty` (the first N
//! requests), the hook picks requests by what they are, for as long as it
//! runs.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use http_body_util::combinators::BoxBody;

type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// What the hostile upstream answers with.
pub type Reply = http::Response<BoxBody<Bytes, BoxError>>;

/// A whole answer of `status` with `headers` and `body`.
pub fn full(status: u16, headers: &[(&str, &str)], body: impl Into<Bytes>) -> Reply {
    let mut r = http::Response::builder().status(status);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let body = http_body_util::Full::new(body.into()).map_err(|e: Infallible| match e {});
    r.body(BoxBody::new(body)).unwrap()
}

/// A 200 that announces `body`'s length and sends it one byte per `every`.
pub fn drip(headers: &[(&str, &str)], body: Vec<u8>, every: Duration) -> Reply {
    let mut r = http::Response::builder()
        .status(200)
        .header("content-length", body.len());
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let body = Drip {
        rest: body.into(),
        every,
        sleep: None,
    };
    r.body(BoxBody::new(body)).unwrap()
}

/// `status` with `headers`, announcing a 100-byte body that never comes (the
/// connection stays open).
pub fn stalled(status: u16, headers: &[(&str, &str)]) -> Reply {
    let mut r = http::Response::builder()
        .status(status)
        .header("content-length", 100);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    r.body(BoxBody::new(Never)).unwrap()
}

/// A request's method and its path with the query.
pub fn line(req: &http::request::Parts) -> (&http::Method, &str) {
    (
        &req.method,
        req.uri.path_and_query().map_or("/", |p| p.as_str()),
    )
}

/// A body that never yields a byte and never ends.
struct Never;

impl Body for Never {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Poll::Pending
    }
}

struct Drip {
    rest: Bytes,
    every: Duration,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for Drip {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.rest.is_empty() {
            return Poll::Ready(None);
        }
        let every = self.every;
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(every)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.sleep = None;
                let byte = self.rest.split_to(1);
                Poll::Ready(Some(Ok(Frame::data(byte))))
            }
        }
    }
}

/// A running hostile upstream; stops on drop.
pub struct Hostile {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: Arc<AtomicUsize>,
    answered: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    /// Requests received so far (answered by the hook or forwarded).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests the hook answered itself so far.
    pub fn answered(&self) -> usize {
        self.answered.load(Ordering::SeqCst)
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

/// Starts a hostile upstream in front of `upstream` (`http://127.0.0.1:PORT`).
pub async fn hostile<F>(upstream: &str, hook: F) -> Hostile
where
    F: Fn(&http::request::Parts) -> Option<Reply> + Send + Sync + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let shared = Arc::new((upstream.trim_end_matches('/').to_owned(), hook, client));
    let (counted, hooked) = (requests.clone(), answered.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (shared, counted, hooked) = (shared.clone(), counted.clone(), hooked.clone());
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        counted.fetch_add(1, Ordering::SeqCst);
                        let (shared, hooked) = (shared.clone(), hooked.clone());
                        async move {
                            let (upstream, hook, client) = &*shared;
                            let (parts, body) = req.into_parts();
                            let resp = match hook(&parts) {
                                Some(r) => {
                                    hooked.fetch_add(1, Ordering::SeqCst);
                                    r
                                }
                                None => forward(client, upstream, parts, body).await,
                            };
                            Ok::<_, Infallible>(resp)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Hostile {
        url,
        requests,
        answered,
        task,
    }
}

async fn forward(
    client: &reqwest::Client,
    upstream: &str,
    parts: http::request::Parts,
    body: hyper::body::Incoming,
) -> Reply {
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
            let resp = http::Response::<reqwest::Body>::from(resp);
            let (mut p, b) = resp.into_parts();
            for h in HOP {
                p.headers.remove(*h);
            }
            http::Response::from_parts(p, BoxBody::new(b.map_err(|e| Box::new(e) as BoxError)))
        }
        Err(e) => full(502, &[], format!("proxy: {e}")),
    }
}
