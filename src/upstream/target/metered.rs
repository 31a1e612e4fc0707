//! A blob body on its way to a target: exactly the announced number of bytes
//! (a source that runs short or long fails the upload instead of sending a
//! wrong blob), counted into the target's bytes-sent total as they leave, and
//! watched for stalls. A big upload has no total timeout; what ends it is a
//! silence: no byte taken by the connection, or no answer after the last one,
//! for [`READ_TIMEOUT`](super::super::client::READ_TIMEOUT).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Instant;

/// When an upload last moved, and what went wrong on the source side.
pub(super) struct Progress {
    start: Instant,
    last_ms: AtomicU64,
    source_error: Mutex<Option<String>>,
}

impl Progress {
    /// Starts the clock.
    pub(super) fn new() -> Arc<Progress> {
        Arc::new(Progress {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
            source_error: Mutex::new(None),
        })
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.fetch_max(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }

    fn fail(&self, why: String) {
        if let Ok(mut e) = self.source_error.lock() {
            e.get_or_insert(why);
        }
    }

    /// Why the body failed on our side (the source, not the target), if it did.
    pub(super) fn source_error(&self) -> Option<String> {
        self.source_error.lock().ok().and_then(|e| e.clone())
    }

    /// Resolves once nothing has moved for `idle`.
    pub(super) async fn stalled(&self, idle: Duration) {
        loop {
            let until = self.last() + idle;
            if Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }
}

/// The body of a blob PUT.
pub(super) struct Metered {
    inner: reqwest::Body,
    size: u64,
    seen: u64,
    sent: Arc<AtomicU64>,
    progress: Arc<Progress>,
}

impl Metered {
    /// `inner`, which must yield exactly `size` bytes; each byte taken is
    /// added to `sent`.
    pub(super) fn new(
        inner: reqwest::Body,
        size: u64,
        sent: Arc<AtomicU64>,
        progress: Arc<Progress>,
    ) -> Metered {
        Metered {
            inner,
            size,
            seen: 0,
            sent,
            progress,
        }
    }

    fn refuse(&self, why: String) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.progress.fail(why.clone());
        Poll::Ready(Some(Err(why.into())))
    }
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

impl Body for Metered {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    let n = d.len() as u64;
                    if this.seen.saturating_add(n) > this.size {
                        return this.refuse(format!(
                            "the blob source gave more than the {} bytes announced",
                            this.size
                        ));
                    }
                    this.seen += n;
                    this.sent.fetch_add(n, Ordering::Relaxed);
                    this.progress.touch();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => this.refuse(format!("the blob source failed: {e}")),
            None if this.seen < this.size => this.refuse(format!(
                "the blob source ended after {} of {} bytes",
                this.seen, this.size
            )),
            None => {
                this.progress.touch();
                Poll::Ready(None)
            }
        }
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.size)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn drain(size: u64, data: &'static [u8]) -> (Result<(), String>, u64, Option<String>) {
        let sent = Arc::new(AtomicU64::new(0));
        let progress = Progress::new();
        let mut m = Metered::new(
            reqwest::Body::from(data),
            size,
            sent.clone(),
            progress.clone(),
        );
        let mut r = Ok(());
        while let Some(f) = m.frame().await {
            if let Err(e) = f {
                r = Err(e.to_string());
                break;
            }
        }
        (r, sent.load(Ordering::Relaxed), progress.source_error())
    }

    #[tokio::test]
    async fn exactly_the_announced_length_passes() {
        let (r, sent, err) = drain(5, b"hello").await;
        assert_eq!((r, sent, err), (Ok(()), 5, None));
        let (r, _, err) = drain(6, b"hello").await;
        assert!(r.unwrap_err().contains("after 5 of 6"));
        assert!(err.is_some());
        let (r, sent, _) = drain(4, b"hello").await;
        assert!(r.unwrap_err().contains("more than the 4"));
        assert_eq!(sent, 0, "the overlong chunk is not counted as sent");
    }

    #[tokio::test]
    async fn a_stall_is_noticed_after_the_idle_time() {
        let p = Progress::new();
        let idle = Duration::from_millis(200);
        p.touch();
        let t0 = Instant::now();
        p.stalled(idle).await;
        let waited = Instant::now() - t0;
        assert!(waited >= Duration::from_millis(150), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
    }
}
