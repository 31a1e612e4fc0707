//! The systemd service protocol (`Type=notify`, `sd_notify(3)`): wharf tells
//! the service manager when it is ready (the listener bound, the index open),
//! reloading and stopping, with a human `STATUS=` line for `systemctl status`,
//! and pings the watchdog while it is really alive ([`watchdog`]).
//!
//! Everything here does nothing unless systemd set `NOTIFY_SOCKET` (and
//! `WATCHDOG_USEC` for the pings), so the same binary runs unchanged in a
//! shell, a container or a test.

pub mod watchdog;

use sd_notify::NotifyState;

/// One state change for the service manager.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// Serving: every listener is bound and the index is open (`READY=1`),
    /// with a status line.
    Ready(String),
    /// A SIGHUP reload began (`RELOADING=1`, stamped with `MONOTONIC_USEC`).
    Reloading,
    /// Shutdown began: no new connections, in-flight requests drain
    /// (`STOPPING=1`), with a status line.
    Stopping(String),
    /// Only a new status line.
    Status(String),
    /// Still alive (`WATCHDOG=1`).
    Watchdog,
}

/// Whether systemd listens for notifications (`NOTIFY_SOCKET` is set).
pub fn enabled() -> bool {
    std::env::var_os("NOTIFY_SOCKET").is_some_and(|s| !s.is_empty())
}

/// Sends `notice` now, on the calling thread: a datagram to a local socket,
/// which can block only when the manager stops reading. Failures are logged,
/// never fatal (a daemon must run on without its supervisor's ear).
pub fn send(notice: &Notice) {
    if !enabled() {
        return;
    }
    let monotonic;
    let states: Vec<NotifyState<'_>> = match notice {
        Notice::Ready(status) => vec![NotifyState::Ready, NotifyState::Status(status)],
        Notice::Reloading => {
            monotonic = NotifyState::monotonic_usec_now().ok();
            let mut s = vec![NotifyState::Reloading];
            s.extend(monotonic);
            s.push(NotifyState::Status("reloading configuration"));
            s
        }
        Notice::Stopping(status) => vec![NotifyState::Stopping, NotifyState::Status(status)],
        Notice::Status(status) => vec![NotifyState::Status(status)],
        Notice::Watchdog => vec![NotifyState::Watchdog],
    };
    if let Err(e) = deliver(&states) {
        tracing::warn!(error = %e, ?notice, "cannot notify systemd");
    }
}

/// Sends `states` to `NOTIFY_SOCKET`: a path through `sd_notify`, or an
/// abstract socket (`@name`, which `sd_notify(3)` allows and service managers
/// in containers use) directly, since the crate only connects to paths.
fn deliver(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    use std::os::unix::ffi::OsStrExt;
    let Some(target) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let Some(name) = target.as_bytes().strip_prefix(b"@") else {
        return sd_notify::notify(states);
    };
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    let msg: String = states.iter().map(|s| format!("{s}\n")).collect();
    let sent = std::os::unix::net::UnixDatagram::unbound()?.send_to_addr(msg.as_bytes(), &addr)?;
    if sent == msg.len() {
        Ok(())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::WriteZero,
            "incomplete notification",
        ))
    }
}

/// [`send`] from async code, on a blocking thread so the runtime never waits
/// on the socket.
pub async fn notify(notice: Notice) {
    if !enabled() {
        return;
    }
    if let Err(e) = tokio::task::spawn_blocking(move || send(&notice)).await {
        tracing::warn!(error = %e, "systemd notification task failed");
    }
}
