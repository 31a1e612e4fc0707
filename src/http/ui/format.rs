//! How values read on the page: sizes, times, digests, and URL path segments
//! (a repository name is one segment: `team%2Fapp`).

/// `1.5 MiB`: binary units, one decimal past KiB.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = UNITS[0];
    for u in &UNITS[1..] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    format!("{v:.1} {unit}")
}

/// `3 min ago` / `in 2 h` for Unix seconds against `now`; `never` for none.
pub fn when(t: Option<u64>, now: u64) -> String {
    let Some(t) = t else {
        return "never".into();
    };
    let (d, future) = if t > now {
        (t - now, true)
    } else {
        (now - t, false)
    };
    let span = match d {
        0..=59 => format!("{d} s"),
        60..=3599 => format!("{} min", d / 60),
        3600..=86_399 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86_400),
    };
    if future {
        format!("in {span}")
    } else {
        format!("{span} ago")
    }
}

/// The first 12 hex digits of a digest (`sha256:0123456789ab`), for tables;
/// the whole digest goes in the title.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) => format!("{alg}:{}", hex.get(..12).unwrap_or(hex)),
        None => d.to_owned(),
    }
}

/// A repository name as URL path segments (`team/app`, each component
/// encoded on its own): slashes stay slashes, because proxies decode or refuse
/// an encoded `%2F` (nginx with a path in `proxy_pass`, Apache by default).
pub fn repo_path(name: &str) -> String {
    name.split('/').map(segment).collect::<Vec<_>>().join("/")
}

/// Percent-encodes `s` as one URL path segment: everything but unreserved
/// characters (so `/` and `:` too: a digest segment never reads as a scheme).
pub fn segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Percent-decodes one path segment; `None` when it is not valid UTF-8 or
/// holds a control character or a malformed escape.
pub fn decode_segment(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).ok()?;
    (!text.chars().any(char::is_control)).then_some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(bytes(10), "10 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(5 * 1024 * 1024 * 1024), "5.0 GiB");
        assert_eq!(when(None, 10), "never");
        assert_eq!(when(Some(0), 120), "2 min ago");
        assert_eq!(when(Some(7200), 0), "in 2 h");
        assert_eq!(
            short_digest("sha256:0123456789abcdef"),
            "sha256:0123456789ab"
        );
        assert_eq!(segment("team/app"), "team%2Fapp");
        assert_eq!(segment("sha256:ab"), "sha256%3Aab");
        assert_eq!(decode_segment("team%2Fapp").as_deref(), Some("team/app"));
        assert_eq!(decode_segment("%zz"), None);
        assert_eq!(decode_segment("a%0Ab"), None);
        assert_eq!(decode_segment("%"), None);
        assert_eq!(decode_segment("%ff"), None);
    }
}
