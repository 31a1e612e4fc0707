//! A fault-injecting proxy in front of a real registry (hyper, 127.0.0.1:0):
//! the first N requests it sees (or the first N of one method) are answered
//! with a chosen status and headers; every other request is forwarded to the
//! registry unchanged, bodies streamed both ways. The `Host` header is passed
//! on, so a registry that writes absolute `Location`s (Distribution) sends
//! its clients back through the proxy.

use std::sync::atomic::{AtomicUsize, Ordering};

use http::Method;

use super::hostile::{Hostile, Reply, full, hostile};

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

/// A running fault-injecting proxy (a [`Hostile`] whose hook is the fault);
/// stops on drop.
pub struct Faulty {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    inner: Hostile,
}

impl Faulty {
    /// Requests received so far (faulted or forwarded).
    pub fn requests(&self) -> usize {
        self.inner.requests()
    }

    /// Requests answered with the fault so far.
    pub fn faults(&self) -> usize {
        self.inner.answered()
    }
}

/// Starts a proxy for `upstream` (`http://127.0.0.1:PORT`) injecting `fault`.
pub async fn faulty(upstream: &str, fault: Fault) -> Faulty {
    let matched = AtomicUsize::new(0);
    let inner = hostile(upstream, move |req| {
        let matches = fault.method.as_ref().is_none_or(|m| *m == req.method);
        (matches && matched.fetch_add(1, Ordering::SeqCst) < fault.first).then(|| injected(&fault))
    })
    .await;
    Faulty {
        url: inner.url.clone(),
        inner,
    }
}

fn injected(fault: &Fault) -> Reply {
    let body = format!(
        r#"{{"errors":[{{"code":"UNAVAILABLE","message":"injected fault {}"}}]}}"#,
        fault.status
    );
    let mut headers: Vec<(&str, &str)> = vec![("content-type", "application/json")];
    headers.extend(fault.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    full(fault.status, &headers, body)
}
