//! The `wharf.toml` being written: lines per section, the keys that could not
//! be mapped, and the rendering into one commented file. Values are quoted by
//! the `toml` crate, so any path or URL comes out as valid TOML.

/// What the mappers produce, rendered by [`Draft::render`].
#[derive(Debug, Default)]
pub(super) struct Draft {
    /// `[server]` lines.
    pub server: Vec<String>,
    /// `[storage]` lines.
    pub storage: Vec<String>,
    /// `[auth]` lines.
    pub auth: Vec<String>,
    /// `[[auth.rule]]` tables, headers included.
    pub rules: Vec<String>,
    /// `[[upstream]]` tables, headers included.
    pub upstream: Vec<String>,
    /// `[hosted]` lines.
    pub hosted: Vec<String>,
    /// `[gc]` lines.
    pub gc: Vec<String>,
    /// `[log]` lines.
    pub log: Vec<String>,
    /// `(config.yml key, why wharf has no equivalent)`.
    pub unmapped: Vec<(String, String)>,
    /// `REGISTRY_*` variables that were applied.
    pub env: Vec<String>,
}

/// `key = "value"` with the value quoted as TOML.
pub(super) fn kv(key: &str, value: &str) -> String {
    format!("{key} = {}", toml::Value::String(value.to_owned()))
}

/// `key = "value"  # note`.
pub(super) fn kv_note(key: &str, value: &str, note: &str) -> String {
    format!("{}  # {note}", kv(key, value))
}

/// A TOML array of strings.
pub(super) fn array(items: &[&str]) -> String {
    toml::Value::Array(
        items
            .iter()
            .map(|s| toml::Value::String((*s).to_owned()))
            .collect(),
    )
    .to_string()
}

/// Comment lines: `text` split on `\n`, each prefixed by `# `.
pub(super) fn comment(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            if l.is_empty() {
                "#".to_owned()
            } else {
                format!("# {l}")
            }
        })
        .collect()
}

impl Draft {
    /// Records a key wharf cannot map, with the reason.
    pub(super) fn unmapped(&mut self, key: &str, reason: &str) {
        self.unmapped.push((key.to_owned(), reason.to_owned()));
    }

    /// The whole file.
    pub(super) fn render(&self, source: &str) -> String {
        let mut out = comment(&format!(
            "wharf.toml written by `wharf config from-registry {source}` from a registry:2\n\
             configuration. Check it with `wharf check-config --config FILE`; every key is\n\
             documented in wharf's config/wharf.toml. Clients change nothing: same API,\n\
             same `docker login`, same htpasswd users."
        ));
        if !self.env.is_empty() {
            out.push("#".into());
            out.extend(comment(&format!(
                "Environment overrides applied (values not shown): {}",
                self.env.join(", ")
            )));
        }
        if !self.unmapped.is_empty() {
            out.push("#".into());
            out.extend(comment(&format!(
                "{} config.yml key(s) have no wharf equivalent: see the list at the end.",
                self.unmapped.len()
            )));
        }
        for (header, lines) in [
            ("[server]", &self.server),
            ("[storage]", &self.storage),
            ("[auth]", &self.auth),
        ] {
            section(&mut out, header, lines);
        }
        if !self.rules.is_empty() {
            out.push(String::new());
            out.extend(self.rules.iter().cloned());
        }
        if !self.upstream.is_empty() {
            out.push(String::new());
            out.extend(self.upstream.iter().cloned());
        }
        for (header, lines) in [
            ("[hosted]", &self.hosted),
            ("[gc]", &self.gc),
            ("[log]", &self.log),
        ] {
            section(&mut out, header, lines);
        }
        if !self.unmapped.is_empty() {
            out.push(String::new());
            out.push("# Not mapped (config.yml key: why):".into());
            for (key, reason) in &self.unmapped {
                out.push(format!("# - {key}:"));
                out.extend(wrap(reason, 72).into_iter().map(|l| format!("#     {l}")));
            }
        }
        out.push(String::new());
        out.join("\n")
    }
}

fn section(out: &mut Vec<String>, header: &str, lines: &[String]) {
    if lines.is_empty() {
        return;
    }
    out.push(String::new());
    out.push(header.to_owned());
    out.extend(lines.iter().cloned());
}

/// Splits `text` into lines of at most about `width` characters at spaces.
fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.len() - 1;
        if !lines[last].is_empty() && lines[last].len() + 1 + word.len() > width {
            lines.push(String::new());
        }
        let cur = lines.last_mut();
        if let Some(cur) = cur {
            if !cur.is_empty() {
                cur.push(' ');
            }
            cur.push_str(word);
        }
    }
    lines
}
