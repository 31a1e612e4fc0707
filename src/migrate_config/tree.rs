//! The `config.yml` as a tree of owned nodes. Mappers take the keys they
//! understand out of it, so whatever is left at the end is exactly the list of
//! keys wharf cannot map (nothing is dropped silently).

use yaml_rust2::Yaml;

/// One YAML node, simplified to what a registry configuration uses.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Node {
    /// A mapping, in file order; keys as written.
    Map(Vec<(String, Node)>),
    /// A sequence.
    List(Vec<Node>),
    /// A scalar, as text (`true`, `5000`, `/var/lib/registry`).
    Scalar(String),
    /// `~`, `null` or an empty value.
    Null,
}

impl Node {
    /// Converts a parsed document; `None` for YAML this tool cannot use
    /// (aliases, non-scalar keys).
    pub(super) fn from_yaml(y: &Yaml) -> Option<Node> {
        Some(match y {
            Yaml::Hash(h) => {
                let mut entries = Vec::with_capacity(h.len());
                for (k, v) in h {
                    entries.push((scalar_text(k)?, Node::from_yaml(v)?));
                }
                Node::Map(entries)
            }
            Yaml::Array(a) => Node::List(a.iter().map(Node::from_yaml).collect::<Option<_>>()?),
            Yaml::Null => Node::Null,
            Yaml::Alias(_) | Yaml::BadValue => return None,
            other => Node::Scalar(scalar_text(other)?),
        })
    }

    /// The text of a scalar node.
    pub(super) fn as_str(&self) -> Option<&str> {
        match self {
            Node::Scalar(s) => Some(s),
            _ => None,
        }
    }

    /// Whether a scalar reads as YAML `true`.
    pub(super) fn is_true(&self) -> bool {
        self.as_str()
            .is_some_and(|s| matches!(s.to_ascii_lowercase().as_str(), "true" | "yes" | "on"))
    }

    /// Removes and returns the child at a dotted path (`storage.delete.enabled`);
    /// an emptied parent mapping is removed too.
    pub(super) fn take(&mut self, path: &str) -> Option<Node> {
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        let Node::Map(entries) = self else {
            return None;
        };
        let i = entries.iter().position(|(k, _)| k == head)?;
        match rest {
            None => Some(entries.remove(i).1),
            Some(rest) => {
                let found = entries[i].1.take(rest);
                if matches!(&entries[i].1, Node::Map(m) if m.is_empty()) {
                    entries.remove(i);
                }
                found
            }
        }
    }

    /// Removes a scalar at `path` and returns its text (non-scalars stay).
    pub(super) fn take_str(&mut self, path: &str) -> Option<String> {
        match self.take(path)? {
            Node::Scalar(s) => Some(s),
            Node::Null => None,
            other => {
                self.put(path, other);
                None
            }
        }
    }

    /// Sets the node at a dotted path, creating mappings on the way.
    pub(super) fn put(&mut self, path: &str, value: Node) {
        let (head, rest) = match path.split_once('.') {
            Some((h, r)) => (h, Some(r)),
            None => (path, None),
        };
        if !matches!(self, Node::Map(_)) {
            *self = Node::Map(Vec::new());
        }
        let Node::Map(entries) = self else {
            return;
        };
        let i = match entries.iter().position(|(k, _)| k == head) {
            Some(i) => i,
            None => {
                entries.push((head.to_owned(), Node::Map(Vec::new())));
                entries.len() - 1
            }
        };
        match rest {
            None => entries[i].1 = value,
            Some(rest) => entries[i].1.put(rest, value),
        }
    }

    /// Every leaf left, as `(dotted path, short value)`, in file order.
    pub(super) fn leaves(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        self.collect_leaves("", &mut out);
        out
    }

    fn collect_leaves(&self, prefix: &str, out: &mut Vec<(String, String)>) {
        match self {
            Node::Map(entries) if !entries.is_empty() => {
                for (k, v) in entries {
                    let p = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    v.collect_leaves(&p, out);
                }
            }
            Node::Map(_) | Node::Null => out.push((prefix.to_owned(), String::new())),
            Node::List(items) => out.push((prefix.to_owned(), format!("[{} items]", items.len()))),
            Node::Scalar(s) => out.push((prefix.to_owned(), s.clone())),
        }
    }
}

fn scalar_text(y: &Yaml) -> Option<String> {
    Some(match y {
        Yaml::String(s) | Yaml::Real(s) => s.clone(),
        Yaml::Integer(i) => i.to_string(),
        Yaml::Boolean(b) => b.to_string(),
        Yaml::Null => String::new(),
        _ => return None,
    })
}
