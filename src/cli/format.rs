//! How the admin commands print for people: aligned tables, sizes like
//! `1.2 GiB`, times like `3m ago`.

use serde_json::Value;

/// `1023 B`, `1.2 KiB`, `3.4 GiB`.
pub fn size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut v = bytes as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A JSON number as a size (`-` when absent).
pub fn size_of(v: &Value) -> String {
    v.as_u64().map(size).unwrap_or_else(|| "-".into())
}

/// A span of seconds, coarsely: `45s`, `3m`, `5h`, `2d`.
pub fn span(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m", s / 60),
        s if s < 86_400 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    crate::store::unix_now()
}

/// A past unix time as `3m ago` (`-` when absent); the last few seconds read
/// `just now`, so a table printed right after an action does not depend on a
/// second boundary falling in between.
pub fn ago(v: &Value, now: u64) -> String {
    match v.as_u64() {
        Some(t) if now.saturating_sub(t) < JUST_NOW_SECS => "just now".into(),
        Some(t) => format!("{} ago", span(now - t)),
        None => "-".into(),
    }
}

/// How recent a time must be to read `just now`.
const JUST_NOW_SECS: u64 = 10;

/// A future unix time as `in 3m` (`-` when absent).
pub fn until(v: &Value, now: u64) -> String {
    match v.as_u64() {
        Some(t) if t <= now => "now".into(),
        Some(t) => format!("in {}", span(t - now)),
        None => "-".into(),
    }
}

/// `sha256:` and the first 12 hex digits, as `docker images` shows IDs.
pub fn short_digest(d: &str) -> String {
    match d.split_once(':') {
        Some((alg, hex)) if hex.len() > 12 => format!("{alg}:{}", &hex[..12]),
        _ => d.to_owned(),
    }
}

/// A JSON string, or `-` for null and absent.
pub fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// JSON text indented by two spaces per level, keys and values exactly as
/// they came (serde_json's `Value` would sort the keys).
pub fn pretty_json(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() * 2);
    let mut depth = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    let newline = |out: &mut String, depth: usize| {
        out.push('\n');
        out.push_str(&"  ".repeat(depth));
    };
    let mut chars = raw.trim().chars().peekable();
    while let Some(c) = chars.next() {
        if in_string {
            out.push(c);
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            '{' | '[' => {
                out.push(c);
                // An empty object or array stays on one line.
                while chars.peek().is_some_and(|n| n.is_whitespace()) {
                    chars.next();
                }
                if matches!(chars.peek(), Some('}' | ']')) {
                    if let Some(close) = chars.next() {
                        out.push(close);
                    }
                } else {
                    depth += 1;
                    newline(&mut out, depth);
                }
            }
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                newline(&mut out, depth);
                out.push(c);
            }
            ',' => {
                out.push(c);
                newline(&mut out, depth);
            }
            ':' => out.push_str(": "),
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    out
}

/// Columns padded to their widest cell, two spaces apart; right-aligned
/// columns hold numbers.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles; a title starting with `>` is
    /// right-aligned (the `>` is not printed).
    pub fn new(header: &[&'static str]) -> Table {
        Table {
            right: header.iter().map(|h| h.starts_with('>')).collect(),
            header: header.iter().map(|h| h.trim_start_matches('>')).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds one row.
    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as lines of text, ending in a newline.
    pub fn render(&self) -> String {
        let header: Vec<String> = self.header.iter().map(|h| (*h).to_owned()).collect();
        let all: Vec<&Vec<String>> = std::iter::once(&header).chain(&self.rows).collect();
        let widths: Vec<usize> = (0..self.header.len())
            .map(|i| {
                all.iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let mut out = String::new();
        for r in all {
            let mut line = String::new();
            for (i, w) in widths.iter().enumerate() {
                let cell = r.get(i).map(String::as_str).unwrap_or("");
                let pad = w.saturating_sub(cell.chars().count());
                if i > 0 {
                    line.push_str("  ");
                }
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table to standard output.
    pub fn print(&self) {
        print!("{}", self.render());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_times_for_people() {
        assert_eq!(size(0), "0 B");
        assert_eq!(size(1023), "1023 B");
        assert_eq!(size(1536), "1.5 KiB");
        assert_eq!(size(1_288_490_189), "1.2 GiB");
        assert_eq!(ago(&Value::from(1000 - 180), 1000), "3m ago");
        assert_eq!(ago(&Value::Null, 1000), "-");
        assert_eq!(ago(&Value::from(999), 1000), "just now");
        assert_eq!(ago(&Value::from(1000 - 10), 1000), "10s ago");
        assert_eq!(until(&Value::from(1000 + 7200), 1000), "in 2h");
        assert_eq!(
            short_digest("sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
            "sha256:e3b0c44298fc"
        );
    }

    #[test]
    fn json_is_indented_in_its_own_key_order() {
        let raw = r#"{"z":1,"a":{"s":"x,{\"y\"}:"},"e":[],"o":{},"l":[1,null]}"#;
        let pretty = pretty_json(raw);
        assert_eq!(
            pretty,
            "{\n  \"z\": 1,\n  \"a\": {\n    \"s\": \"x,{\\\"y\\\"}:\"\n  },\n  \"e\": [],\n  \"o\": {},\n  \"l\": [\n    1,\n    null\n  ]\n}"
        );
        let a: Value = serde_json::from_str(raw).unwrap();
        let b: Value = serde_json::from_str(&pretty).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NAME", ">SIZE"]);
        t.row(vec!["team/app".into(), "1.2 KiB".into()]);
        t.row(vec!["a".into(), "10 B".into()]);
        assert_eq!(
            t.render(),
            "NAME         SIZE\nteam/app  1.2 KiB\na            10 B\n"
        );
    }
}
