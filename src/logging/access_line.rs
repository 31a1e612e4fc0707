//! The access log's text line, written by hand straight into the log sink:
//! one line per request is the most frequent thing the daemon logs, and
//! going through tracing-subscriber's generic formatter (each field through
//! `dyn Debug`, the timestamp through `fmt`) cost more instructions than the
//! rest of a cached manifest GET. The line is byte for byte what the default
//! `Full` format writes without colours (a test compares them):
//!
//! `2025-01-02T03:04:05.123456Z  INFO wharf::access: request method=GET route="manifest" …`
//!
//! The tracing filter still decides (the caller asks `tracing::enabled!`
//! first). The direct path is installed only for text logs to the sink
//! without colours; otherwise ([`write()`] says so) the caller emits the same
//! fields as a tracing event: JSON logs, a terminal, a test's subscriber.

use std::cell::{Cell, RefCell};
use std::fmt::{self, Write as _};
use std::net::IpAddr;
use std::sync::OnceLock;

use tracing::Level;

use super::sink::Sink;

/// The target of the access log's events.
pub const ACCESS_TARGET: &str = "wharf::access";

/// Where access lines go directly, once [`install`]ed.
static DIRECT: OnceLock<Sink> = OnceLock::new();

/// Sends access lines straight to `sink` from now on (text logs, no colours).
pub(super) fn install(sink: Sink) {
    let _ = DIRECT.set(sink);
}

/// One request's access-log fields.
#[derive(Debug, Clone, Copy)]
pub struct AccessLine<'a> {
    /// INFO, or WARN for a server error.
    pub level: Level,
    /// The request method (a prefix of a long extension method).
    pub method: &'a str,
    /// The route's name.
    pub route: &'a str,
    /// The repository, or empty.
    pub repo: &'a str,
    /// The response status.
    pub status: u16,
    /// Body bytes sent (0 for HEAD).
    pub bytes: u64,
    /// Milliseconds to the response head.
    pub ms: f64,
    /// `X-Cache`, or `-`.
    pub cache: &'a str,
    /// The user, or `-`.
    pub user: &'a str,
    /// The client address.
    pub client: IpAddr,
}

thread_local! {
    /// This thread's line buffer.
    static LINE: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Writes `line` to the sink if the direct path is installed; false means
/// the caller logs it as a tracing event instead.
pub fn write(line: &AccessLine<'_>) -> bool {
    let Some(sink) = DIRECT.get() else {
        return false;
    };
    LINE.with(|buf| {
        let Ok(mut buf) = buf.try_borrow_mut() else {
            return false;
        };
        buf.clear();
        if format_line(&mut buf, line, std::time::SystemTime::now()).is_err() {
            return false;
        }
        sink.append(buf.as_bytes());
        true
    })
}

/// The line as the default `Full` format writes it, newline included.
fn format_line(out: &mut String, l: &AccessLine<'_>, now: std::time::SystemTime) -> fmt::Result {
    write_timestamp(out, now)?;
    out.push_str(match l.level {
        Level::TRACE => "TRACE ",
        Level::DEBUG => "DEBUG ",
        Level::INFO => " INFO ",
        Level::WARN => " WARN ",
        Level::ERROR => "ERROR ",
    });
    out.push_str(ACCESS_TARGET);
    out.push_str(": request method=");
    out.push_str(l.method);
    out.push_str(" route=");
    quoted(out, l.route)?;
    out.push_str(" repo=");
    quoted(out, l.repo)?;
    out.push_str(" status=");
    decimal(out, u64::from(l.status));
    out.push_str(" bytes=");
    decimal(out, l.bytes);
    write!(out, " ms={:?} cache=", l.ms)?;
    quoted(out, l.cache)?;
    out.push_str(" user=");
    quoted(out, l.user)?;
    out.push_str(" client=");
    match l.client {
        IpAddr::V4(v4) => {
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    out.push('.');
                }
                decimal(out, u64::from(octet));
            }
        }
        IpAddr::V6(v6) => write!(out, "{v6}")?,
    }
    out.push('\n');
    Ok(())
}

thread_local! {
    /// The second and its `YYYY-MM-DDTHH:MM:SS` last formatted on this thread.
    static SECOND: Cell<(u64, [u8; 19])> = const { Cell::new((u64::MAX, [0; 19])) };
}

/// `YYYY-MM-DDTHH:MM:SS.uuuuuuZ ` (RFC 3339, UTC, microseconds, then a
/// space), as tracing-subscriber's `SystemTime` timer writes it; the date
/// part is formatted once a second per thread.
fn write_timestamp(w: &mut impl fmt::Write, now: std::time::SystemTime) -> fmt::Result {
    let Ok(since) = now.duration_since(std::time::UNIX_EPOCH) else {
        return w.write_str("<unknown time> ");
    };
    let secs = since.as_secs();
    let prefix = SECOND.with(|c| {
        let (s, p) = c.get();
        if s == secs {
            return p;
        }
        let p = civil(secs);
        c.set((secs, p));
        p
    });
    w.write_str(std::str::from_utf8(&prefix).map_err(|_| fmt::Error)?)?;
    let mut frac = *b".000000Z ";
    let mut micros = since.subsec_micros();
    for i in (1..7).rev() {
        frac[i] = b'0' + (micros % 10) as u8;
        micros /= 10;
    }
    w.write_str(std::str::from_utf8(&frac).map_err(|_| fmt::Error)?)
}

/// `YYYY-MM-DDTHH:MM:SS` of unix second `secs` (years 1970..=9999; the
/// civil-from-days algorithm of Howard Hinnant's date library).
fn civil(secs: u64) -> [u8; 19] {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = (yoe + era * 400 + u64::from(month <= 2)).min(9999);
    let mut out = *b"0000-00-00T00:00:00";
    let mut put = |at: usize, width: usize, mut v: u64| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, year);
    put(5, 2, month);
    put(8, 2, day);
    put(11, 2, rem / 3600);
    put(14, 2, rem % 3600 / 60);
    put(17, 2, rem % 60);
    out
}

/// `s` quoted as `{:?}` writes it; plain printable ASCII without the
/// formatting machinery.
fn quoted(out: &mut String, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        out.push('"');
        out.push_str(s);
        out.push('"');
        Ok(())
    } else {
        write!(out, "{s:?}")
    }
}

/// `v` in decimal.
fn decimal(out: &mut String, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    for b in &buf[i..] {
        out.push(char::from(*b));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    use tracing::Level;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What tracing-subscriber's default format writes for `l`, as
    /// `http::record` emits it when the direct path is not installed.
    fn default_format(l: &AccessLine<'_>) -> String {
        let buf = Buf::default();
        let b = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || b.clone())
            .finish();
        let AccessLine {
            method,
            route,
            repo,
            status,
            bytes,
            ms,
            cache,
            user,
            client,
            ..
        } = *l;
        tracing::subscriber::with_default(subscriber, || {
            if l.level == Level::WARN {
                tracing::warn!(target: "wharf::access", %method, route, repo, status, bytes, ms, cache, user, %client, "request");
            } else {
                tracing::info!(target: "wharf::access", %method, route, repo, status, bytes, ms, cache, user, %client, "request");
            }
        });
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn access_lines_are_what_the_default_format_writes() {
        let lines = [
            AccessLine {
                level: Level::INFO,
                method: "GET",
                route: "manifest",
                repo: "team/app",
                status: 200,
                bytes: 1234,
                ms: 0.25,
                cache: "-",
                user: "-",
                client: "127.0.0.1".parse().unwrap(),
            },
            AccessLine {
                level: Level::INFO,
                method: "PROPFIND",
                route: "unmatched",
                repo: "",
                status: 404,
                bytes: 0,
                ms: 12.000_001,
                cache: "HIT",
                user: "a \"b\"\u{1b} \\ é",
                client: "::1".parse().unwrap(),
            },
            AccessLine {
                level: Level::WARN,
                method: "PUT",
                route: "manifest",
                repo: "a/b",
                status: 503,
                bytes: u64::MAX,
                ms: 1e-7,
                cache: "STALE",
                user: "ci",
                client: "10.200.0.255".parse().unwrap(),
            },
        ];
        for l in &lines {
            let mut ours = String::new();
            format_line(&mut ours, l, std::time::SystemTime::now()).unwrap();
            let theirs = default_format(l);
            // The timestamps differ by the time between the two calls.
            assert_eq!(ours[27..], theirs[27..], "{ours}{theirs}");
            assert_eq!(&ours[26..28], "Z ");
        }
    }

    #[test]
    fn timestamps_match_the_default_timer() {
        for secs in [
            0u64,
            951_782_400,
            1_700_000_000,
            4_102_444_799,
            1_709_164_800,
        ] {
            let t = std::time::UNIX_EPOCH + std::time::Duration::new(secs, 7_654_321);
            let mut ours = String::new();
            write_timestamp(&mut ours, t).unwrap();
            let theirs = humantime_like(t);
            assert_eq!(ours, format!("{theirs} "), "{secs}");
        }
    }

    /// The default timer's text for `t`, through its public Display.
    fn humantime_like(t: std::time::SystemTime) -> String {
        let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        let days = secs / 86_400;
        // Cross-checked against a slow day-by-day walk from 1970.
        let (mut y, mut d) = (1970u64, days);
        let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
        while d >= if leap(y) { 366 } else { 365 } {
            d -= if leap(y) { 366 } else { 365 };
            y += 1;
        }
        let lens = [
            31,
            if leap(y) { 29 } else { 28 },
            31,
            30,
            31,
            30,
            31,
            31,
            30,
            31,
            30,
            31,
        ];
        let mut m = 0;
        while d >= lens[m] {
            d -= lens[m];
            m += 1;
        }
        let rem = secs % 86_400;
        let micros = t
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_micros();
        format!(
            "{y:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{micros:06}Z",
            m + 1,
            d + 1,
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )
    }
}
