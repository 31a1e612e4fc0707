//! The access log's text line, written by hand: one line per request is the
//! most frequent thing the daemon logs, and tracing-subscriber's generic
//! formatter spent more instructions on it (timestamp through `fmt`, each
//! field through `Debug` and styling wrappers) than the rest of a cached
//! manifest GET. The line is byte for byte what the default `Full` format
//! writes without colours:
//!
//! `2025-01-02T03:04:05.123456Z  INFO wharf::access: request method=GET route="manifest" …`
//!
//! Every other event, an access event inside a span, and any event when
//! colours are on go to the default formatter unchanged.

use std::cell::Cell;
use std::fmt;

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::{self, Format, Full, Writer};
use tracing_subscriber::fmt::time::SystemTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// The target of the access log's events.
pub const ACCESS_TARGET: &str = "wharf::access";

/// The text event formatter: access lines by hand, everything else by
/// tracing-subscriber's `Full` format.
pub struct TextFormat {
    full: Format<Full, SystemTime>,
}

impl Default for TextFormat {
    fn default() -> Self {
        TextFormat {
            full: format::format(),
        }
    }
}

impl<S, N> FormatEvent<S, N> for TextFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let meta = event.metadata();
        if meta.target() != ACCESS_TARGET
            || writer.has_ansi_escapes()
            || ctx.event_scope().is_some()
        {
            return self.full.format_event(ctx, writer, event);
        }
        write_timestamp(&mut writer, std::time::SystemTime::now())?;
        writer.write_str(match *meta.level() {
            Level::TRACE => "TRACE ",
            Level::DEBUG => "DEBUG ",
            Level::INFO => " INFO ",
            Level::WARN => " WARN ",
            Level::ERROR => "ERROR ",
        })?;
        writer.write_str(meta.target())?;
        writer.write_str(": ")?;
        let mut fields = Fields {
            w: &mut writer,
            first: true,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
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

/// Writes fields as the default visitor does: `name=value` separated by
/// spaces, the message bare, strings quoted and escaped as `Debug` does.
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    first: bool,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    /// The separator and `name=` (bare for the message).
    fn name(&mut self, field: &Field) -> fmt::Result {
        if self.first {
            self.first = false;
        } else {
            self.w.write_char(' ')?;
        }
        match field.name() {
            "message" => Ok(()),
            name => {
                self.w.write_str(name.strip_prefix("r#").unwrap_or(name))?;
                self.w.write_char('=')
            }
        }
    }

    fn put(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = self.name(field).and_then(|()| value(self.w));
        }
    }
}

/// `s` quoted as `{:?}` writes it; plain printable ASCII without copying
/// through the formatting machinery.
fn quoted(w: &mut Writer<'_>, s: &str) -> fmt::Result {
    if s.bytes()
        .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\')
    {
        w.write_char('"')?;
        w.write_str(s)?;
        w.write_char('"')
    } else {
        write!(w, "{s:?}")
    }
}

/// `v` in decimal.
fn decimal(w: &mut Writer<'_>, mut v: u64) -> fmt::Result {
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
    w.write_str(std::str::from_utf8(&buf[i..]).map_err(|_| fmt::Error)?)
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.put(field, |w| w.write_str(value));
        } else {
            self.put(field, |w| quoted(w, value));
        }
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, |w| decimal(w, value));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, |w| {
            if value < 0 {
                w.write_char('-')?;
            }
            decimal(w, value.unsigned_abs())
        });
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, |w| write!(w, "{value:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

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

    fn emit(fast: bool) -> String {
        let buf = Buf::default();
        let b = buf.clone();
        let builder = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_writer(move || b.clone());
        let record = || {
            let (status, bytes, ms) = (200u16, 1234u64, 0.25f64);
            let ip: std::net::IpAddr = "127.0.0.1".parse().unwrap();
            let method = http::Method::GET;
            tracing::info!(target: "wharf::access", %method, route = "manifest", repo = "team/app", status, bytes, ms, cache = "-", user = "a \"b\"\u{1b}", client = %ip, "request");
        };
        if fast {
            tracing::subscriber::with_default(
                builder.event_format(TextFormat::default()).finish(),
                record,
            );
        } else {
            tracing::subscriber::with_default(builder.finish(), record);
        }
        String::from_utf8(buf.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn access_lines_are_what_the_default_format_writes() {
        let (fast, full) = (emit(true), emit(false));
        // The timestamps differ by the time between the two calls.
        let cut = |s: &str| s[27..].to_owned();
        assert_eq!(cut(&fast), cut(&full));
        assert!(fast.contains("repo=\"team/app\""), "{fast}");
        assert_eq!(&fast[26..28], "Z ");
        assert_eq!(&fast[10..11], "T");
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
