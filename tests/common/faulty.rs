//! A fault-injecting proxy in front of a real registry (hyper, 127.0.0.1:0):
//! the first N requests it sees (or the first N of one method) are answered
//! with a chosen status and headers; every other request is forwarded to the
//! registry unchanged, bodies streamed both ways. The `Host` header is passed
//! on, so a registry that writes absolute `Location`s (Distribution) sends
//! its clients back through the proxy.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

/// What to inject.
#[derive(Clone, Debug)]
pub struct Fault {
    /// How many matching requests get the fault (the first ones).
    pub first: usize,
    /// Their status.
    pub status: u16,
    /// Their headers (`Retry-After`, ...).
    pub headers: Vec<(String, String)>,
    /// Only requests of this method match; None: all.
    pub method: Option<Method>,
}

impl Fault {
    /// The first `first` requests are answered `status`.
    pub fn new(first: usize, status: u16) -> Fault {
        Fault {
            first,
            status,
            headers: Vec::new(),
            method: None,
        }
    }

    /// Adds a header to the faulty answers.
    pub fn header(mut self, name: &str, value: &str) -> Fault {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Only requests with `method` count and get the fault.
    pub fn only(mut self, method: Method) -> Fault {
        self.method = Some(method);
        self
    }
}

/// A running fault-injecting proxy; stops on drop.
pub struct Faulty {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    requests: Arc<AtomicUsize>,
    faults: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Faulty {
    /// Requests received so far (faulted or forwarded).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Requests answered with the fault so far.
    pub fn faults(&self) -> usize {
        self.faults.load(Ordering::SeqCst)
    }
}

impl Drop for Faulty {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Hop-by-hop headers, never forwarded.
const HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Starts a proxy for `upstream` (`http://127.0.0.1:PORT`) injecting `fault`.
pub async fn faulty(upstream: &str, fault: Fault) -> Faulty {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let faults = Arc::new(AtomicUsize::new(0));
    let matched = Arc::new(AtomicUsize::new(0));
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let shared = Arc::new((upstream.trim_end_matches('/').to_owned(), fault, client));
    let (req_count, fault_count) = (requests.clone(), faults.clone());
    let task = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (shared, req_count, fault_count, matched) = (
                shared.clone(),
                req_count.clone(),
                fault_count.clone(),
                matched.clone(),
            );
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let shared = shared.clone();
                        req_count.fetch_add(1, Ordering::SeqCst);
                        let (upstream, fault, client) = &*shared;
                        let matches = fault.method.as_ref().is_none_or(|m| m == req.method());
                        let inject =
                            matches && matched.fetch_add(1, Ordering::SeqCst) < fault.first;
                        if inject {
                            fault_count.fetch_add(1, Ordering::SeqCst);
                        }
                        let upstream = upstream.clone();
                        let fault = fault.clone();
                        let client = client.clone();
                        async move {
                            let resp = if inject {
                                injected(&fault)
                            } else {
                                forward(&client, &upstream, req).await
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
    Faulty {
        url,
        requests,
        faults,
        task,
    }
}

fn injected(fault: &Fault) -> http::Response<reqwest::Body> {
    let body = format!(
        r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected fault {}"}}]}}"#,
        fault.status
    );
    let mut r = http::Response::builder()
        .status(fault.status)
        .header("content-type", "application/json")
        .header("content-length", body.len());
    for (k, v) in &fault.headers {
        r = r.header(k, v);
    }
    r.body(reqwest::Body::from(body)).unwrap()
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
    let has_body = parts.headers.contains_key("content-length")
        || parts.headers.contains_key("transfer-encoding");
    if has_body {
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
