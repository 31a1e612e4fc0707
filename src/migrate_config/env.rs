//! The `REGISTRY_*` environment overrides `registry:2` honours (what users set
//! with `docker run -e`): `REGISTRY_STORAGE_DELETE_ENABLED=true` sets
//! `storage.delete.enabled`. The variable's name is the key path upper-cased and
//! joined by `_`; the value is read as YAML, as registry:2 does.

use yaml_rust2::YamlLoader;

use super::tree::Node;

/// The prefix registry:2 reads.
const PREFIX: &str = "REGISTRY_";

/// Variables with the prefix that are not configuration keys.
const NOT_KEYS: &[&str] = &["REGISTRY_CONFIGURATION_PATH"];

/// Applies every `REGISTRY_*` variable of `env` to `root`; returns the names of
/// those applied (sorted, for a stable output).
pub(super) fn apply(
    root: &mut Node,
    env: impl IntoIterator<Item = (String, String)>,
) -> Vec<String> {
    let mut vars: Vec<(String, String)> = env
        .into_iter()
        .filter(|(k, _)| k.starts_with(PREFIX) && k.len() > PREFIX.len())
        .filter(|(k, _)| !NOT_KEYS.contains(&k.as_str()))
        .collect();
    // Shorter names first: `REGISTRY_STORAGE` (a whole section) before the keys
    // inside it, so the more specific variable wins.
    vars.sort_by(|a, b| a.0.len().cmp(&b.0.len()).then(a.0.cmp(&b.0)));
    let mut applied = Vec::new();
    for (name, value) in vars {
        let comps: Vec<&str> = name[PREFIX.len()..]
            .split('_')
            .filter(|c| !c.is_empty())
            .collect();
        if comps.is_empty() {
            continue;
        }
        set(root, &comps, parse_value(&value));
        applied.push(name);
    }
    applied.sort();
    applied
}

/// Reads a value as YAML (`true` is a boolean, `5000` a number); anything that
/// is not one plain YAML document stays the literal text.
fn parse_value(value: &str) -> Node {
    YamlLoader::load_from_str(value)
        .ok()
        .and_then(|docs| docs.first().and_then(Node::from_yaml))
        .unwrap_or_else(|| Node::Scalar(value.to_owned()))
}

/// Walks `comps` from `node`: at each mapping the longest run of components
/// that names an existing key (case-insensitively, `_` inside keys allowed)
/// is taken, else one component becomes a new lower-case key.
fn set(node: &mut Node, comps: &[&str], value: Node) {
    if !matches!(node, Node::Map(_)) {
        *node = Node::Map(Vec::new());
    }
    let Node::Map(entries) = node else {
        return;
    };
    let found = (1..=comps.len()).rev().find_map(|j| {
        let candidate = comps[..j].join("_");
        entries
            .iter()
            .position(|(k, _)| k.eq_ignore_ascii_case(&candidate))
            .map(|i| (i, j))
    });
    let (i, used) = match found {
        Some(f) => f,
        None => {
            entries.push((comps[0].to_ascii_lowercase(), Node::Null));
            (entries.len() - 1, 1)
        }
    };
    if used == comps.len() {
        entries[i].1 = value;
    } else {
        set(&mut entries[i].1, &comps[used..], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(s: &str) -> Node {
        Node::from_yaml(&YamlLoader::load_from_str(s).unwrap()[0]).unwrap()
    }

    #[test]
    fn names_map_to_key_paths_and_values_are_yaml() {
        let mut root =
            yaml("storage:\n  filesystem:\n    rootdirectory: /a\nhttp:\n  addr: :5000\n");
        let applied = apply(
            &mut root,
            [
                (
                    "REGISTRY_STORAGE_DELETE_ENABLED".to_owned(),
                    "true".to_owned(),
                ),
                ("REGISTRY_HTTP_ADDR".to_owned(), "127.0.0.1:6000".to_owned()),
                (
                    "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY".to_owned(),
                    "/b".to_owned(),
                ),
                (
                    "REGISTRY_CONFIGURATION_PATH".to_owned(),
                    "/etc/x.yml".to_owned(),
                ),
                ("HOME".to_owned(), "/root".to_owned()),
            ],
        );
        assert_eq!(applied.len(), 3, "{applied:?}");
        assert!(root.take("storage.delete.enabled").unwrap().is_true());
        assert_eq!(
            root.take_str("http.addr").as_deref(),
            Some("127.0.0.1:6000")
        );
        assert_eq!(
            root.take_str("storage.filesystem.rootdirectory").as_deref(),
            Some("/b")
        );
    }
}
