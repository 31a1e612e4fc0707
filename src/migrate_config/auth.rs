//! `auth.*`, `storage.delete` and `storage.maintenance.readonly` → `[auth]`
//! and `[[auth.rule]]`. registry:2 has no ACLs: every htpasswd user may pull and
//! push, and delete only when `storage.delete.enabled`; the rules say exactly that.

use super::draft::{Draft, array, comment, kv};
use super::tree::Node;

/// Maps and removes the auth-related keys of `root`; whether there are users
/// (an htpasswd file).
pub(super) fn map(root: &mut Node, d: &mut Draft) -> bool {
    let delete = root
        .take("storage.delete.enabled")
        .is_some_and(|n| n.is_true());
    root.take("storage.delete");
    let readonly = root
        .take("storage.maintenance.readonly.enabled")
        .is_some_and(|n| n.is_true());
    root.take("storage.maintenance.readonly");
    let htpasswd = root.take_str("auth.htpasswd.path");
    if root.take("auth.htpasswd.realm").is_some() {
        d.unmapped(
            "auth.htpasswd.realm",
            "wharf names its own realm; clients do not need to know it",
        );
    }
    let token = root.take("auth.token");
    if root.take("auth.silly").is_some() {
        d.unmapped(
            "auth.silly",
            "a scheme for registry:2's own tests; wharf offers htpasswd users (basic or its own \
             tokens)",
        );
    }
    let mut actions = vec!["pull"];
    if !readonly {
        actions.push("push");
    }
    if delete {
        actions.push("delete");
    }
    match (&htpasswd, &token) {
        (Some(path), _) => {
            d.auth.push(kv("htpasswd", path));
            d.auth.extend(comment(
                "auth.htpasswd.path: the same bcrypt file works as it is (htpasswd -B lines);\n\
                 wharf re-reads it when it changes. registry:2 asked every client to log in,\n\
                 with a Basic challenge: so does wharf here.",
            ));
            d.auth.push("anonymous_pull = false".into());
            d.auth.push(kv("scheme", "basic"));
            d.auth.extend(comment(
                "The admin commands (wharf import, ls, gc, ...) need a user listed here\n\
                 (or run them on this host before any user exists):\n\
                 admins = [\"alice\"]",
            ));
        }
        (None, Some(_)) => {
            d.auth.push("anonymous_pull = false".into());
            d.auth.extend(comment(
                "auth.token: registry:2 trusted tokens signed by an external token server.\n\
                 wharf is its own token server (scheme = \"token\", realm /token on this\n\
                 address) for the users of its htpasswd file, and cannot verify tokens that\n\
                 another issuer signed. To keep logins: put the users in an htpasswd file\n\
                 (`wharf user add NAME --htpasswd /etc/wharf/htpasswd`), set htpasswd to it\n\
                 and scheme = \"token\"; `docker login` then talks to wharf. Until then no one\n\
                 pulls anonymously, and pushes come only from this host.",
            ));
            d.unmapped(
                "auth.token",
                "realm, service, issuer and rootcertbundle belong to the external token \
                 server, which wharf does not use (see the comment in [auth])",
            );
        }
        (None, None) => {
            d.auth.push("anonymous_pull = true".into());
            d.auth.extend(comment(
                "registry:2 had no auth: anyone could pull and push. wharf without users lets\n\
                 anyone pull, but takes pushes and deletes only from this host (loopback).\n\
                 To let others push, add users and name the file here:\n\
                 wharf user add NAME --htpasswd /etc/wharf/htpasswd\n\
                 htpasswd = \"/etc/wharf/htpasswd\"",
            ));
        }
    }
    let users = htpasswd.is_some();
    if users && actions.len() < 3 {
        let why = match (readonly, delete) {
            (true, true) => "storage.maintenance.readonly: pull and delete only",
            (true, false) => "storage.maintenance.readonly and no storage.delete: pull only",
            _ => "storage.delete.enabled is false (registry:2's default): no deletes",
        };
        d.rules.extend(comment(&format!(
            "registry:2 has no per-user rights: every user may do the same. {why}."
        )));
        d.rules.push("[[auth.rule]]".into());
        d.rules.push(format!("users = {}", array(&["*"])));
        d.rules.push(format!("repos = {}", array(&["*"])));
        d.rules.push(format!("actions = {}", array(&actions)));
    } else if users {
        d.auth.extend(comment(
            "storage.delete.enabled = true: with no [[auth.rule]], every user may pull,\n\
             push and delete, as on registry:2.",
        ));
    } else if !delete || readonly {
        d.auth.extend(comment(
            "storage.delete.enabled / readonly: without users only this host writes or\n\
             deletes; once you add users, add an [[auth.rule]] with the actions to allow.",
        ));
    }
    users
}
