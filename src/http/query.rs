//! Query strings: percent-decoded `key=value` pairs (clients encode `from=a%2Fb`).

/// Parsed query parameters in order.
#[derive(Debug, Default)]
pub struct Query(Vec<(String, String)>);

impl Query {
    /// Parses the query part of a URI (without `?`).
    pub fn parse(q: Option<&str>) -> Query {
        let Some(q) = q else { return Query::default() };
        Query(
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (decode(k), decode(v))
                })
                .collect(),
        )
    }

    /// Parses an `application/x-www-form-urlencoded` body, where `+` is a space.
    pub fn parse_form(body: &str) -> Query {
        Query::parse(Some(&body.replace('+', "%20")))
    }

    /// Every value of `key` (a token request may repeat `scope`).
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// First value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decoding; `+` stays `+` (media types contain it literally).
fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push(h * 16 + l);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes() {
        let q = Query::parse(Some(
            "mount=sha256%3Aab&from=library%2Fnginx&n=&x=%zz&t=a+b",
        ));
        assert_eq!(q.get("mount"), Some("sha256:ab"));
        assert_eq!(q.get("from"), Some("library/nginx"));
        assert_eq!(q.get("n"), Some(""));
        assert_eq!(q.get("x"), Some("%zz"));
        assert_eq!(q.get("t"), Some("a+b"));
        assert_eq!(q.get("missing"), None);
        assert_eq!(Query::parse(Some("a=%4")).get("a"), Some("%4"));
        let f = Query::parse_form("scope=repository%3Aa%3Apull+repository%3Ab%3Apush&scope=x");
        assert_eq!(
            f.all("scope").collect::<Vec<_>>(),
            vec!["repository:a:pull repository:b:push", "x"]
        );
    }
}
