//! Reading what an upstream answered: its `Retry-After`, transport failures, and
//! small bodies read under a cap whether or not they announce a length.

use bytes::Bytes;
use http::{HeaderMap, header};

use super::error::UpstreamError;

/// A 429's (or 503's) `Retry-After` in seconds: delay-seconds, or an
/// HTTP-date (IMF-fixdate, what RFC 9110 requires senders to use) turned into
/// the seconds left until then (0 once passed).
pub(super) fn retry_after(h: &HeaderMap) -> Option<u64> {
    let v = h.get(header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = v.parse() {
        return Some(secs);
    }
    let at = imf_fixdate(v)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some(at.saturating_sub(now))
}

/// Unix seconds of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
fn imf_fixdate(v: &str) -> Option<u64> {
    let (_, rest) = v.split_once(", ")?;
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    let month = parts.next()?;
    let year: u64 = parts.next()?.parse().ok()?;
    let time = parts.next()?;
    if parts.next()? != "GMT" || parts.next().is_some() {
        return None;
    }
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let month = MONTHS.iter().position(|m| *m == month)? as u64 + 1;
    let mut hms = time.split(':').map(|x| x.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if hms.next().is_some() || !(1..=31).contains(&day) || year < 1970 || h > 23 || m > 59 || s > 60
    {
        return None;
    }
    // Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
}

/// A failed exchange: the upstream is unavailable.
pub(super) fn transport(e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unavailable(e.to_string())
}

/// Reads a small response body (manifest, tag list, index), refusing one
/// larger than `max` whether or not it announced its length: a broken or
/// hostile upstream cannot make wharf buffer without bound.
pub(super) async fn read_capped(
    mut resp: reqwest::Response,
    max: u64,
    what: &str,
) -> Result<Bytes, UpstreamError> {
    let too_big = || UpstreamError::Invalid(format!("{what} larger than {} MiB", max >> 20));
    if resp.content_length().is_some_and(|n| n > max) {
        return Err(too_big());
    }
    let mut body = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if (body.len() + chunk.len()) as u64 > max {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body.freeze())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_dates_are_read() {
        assert_eq!(imf_fixdate("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            imf_fixdate("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(
            imf_fixdate("Tue, 29 Feb 2000 12:00:00 GMT"),
            Some(951_825_600)
        );
        assert_eq!(imf_fixdate("Sun, 06 Nov 1994 08:49:37 UTC"), None);
        assert_eq!(imf_fixdate("Sunday, 06-Nov-94 08:49:37 GMT"), None);
        assert_eq!(imf_fixdate("Sun, 06 Foo 1994 08:49:37 GMT"), None);
        assert_eq!(imf_fixdate("Sun, 06 Nov 1994 08:49 GMT"), None);
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let mut h = HeaderMap::new();
        h.insert(header::RETRY_AFTER, "7".parse().unwrap());
        assert_eq!(retry_after(&h), Some(7));
        h.insert(
            header::RETRY_AFTER,
            "Thu, 01 Jan 1970 00:00:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&h), Some(0), "a past date: now");
        let later = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 120;
        let date = {
            // `later` as an IMF-fixdate (the weekday is not checked).
            let days = later / 86_400;
            let secs = later % 86_400;
            let (y, m, d) = civil(days);
            let months = [
                "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
            ];
            format!(
                "Mon, {d:02} {} {y} {:02}:{:02}:{:02} GMT",
                months[(m - 1) as usize],
                secs / 3600,
                secs / 60 % 60,
                secs % 60
            )
        };
        h.insert(header::RETRY_AFTER, date.parse().unwrap());
        let got = retry_after(&h).unwrap();
        assert!((118..=120).contains(&got), "{date}: {got}");
        h.insert(header::RETRY_AFTER, "soon".parse().unwrap());
        assert_eq!(retry_after(&h), None);
    }

    /// Civil date of days since the epoch (the inverse, for the test).
    fn civil(z: u64) -> (u64, u64, u64) {
        let z = z + 719_468;
        let era = z / 146_097;
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + u64::from(m <= 2), m, d)
    }
}
