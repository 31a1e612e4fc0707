//! `storage.*` → `[storage]` and `[gc]`: wharf keeps its own data directory, so
//! registry:2's root becomes the `wharf import` line to run; upload purging
//! becomes `upload_expiry`; other drivers are listed with the reason.

use super::draft::{Draft, comment, kv_note};
use super::duration;
use super::tree::Node;

/// registry:2's filesystem root when `rootdirectory` is not set.
const REGISTRY_DEFAULT_ROOT: &str = "/var/lib/registry";

/// wharf's suggested data directory.
const WHARF_ROOT: &str = "/var/lib/wharf";

/// Storage drivers registry:2 knows besides `filesystem`.
const OTHER_DRIVERS: &[&str] = &["s3", "gcs", "azure", "swift", "oss", "inmemory"];

/// Maps and removes the `storage` keys of `root` (delete and readonly are
/// taken by the auth mapper before).
pub(super) fn map(root: &mut Node, d: &mut Draft, users: bool) {
    d.storage.push(kv_note(
        "root",
        WHARF_ROOT,
        "wharf's own data directory (index.redb, blobs/)",
    ));
    let fs_root = root.take_str("storage.filesystem.rootdirectory");
    let fs = root.take("storage.filesystem");
    let other: Vec<&str> = OTHER_DRIVERS
        .iter()
        .copied()
        .filter(|drv| root.take(&format!("storage.{drv}")).is_some())
        .collect();
    if fs_root.is_some() || fs.is_some() || other.is_empty() {
        let src = fs_root.as_deref().unwrap_or(REGISTRY_DEFAULT_ROOT);
        let user = if users { " --user NAME" } else { "" };
        d.storage.extend(comment(&format!(
            "storage.filesystem.rootdirectory {src:?}: wharf does not serve registry:2's\n\
             tree in place. With wharf running (and registry:2 stopped), import it once:\n\
             \x20   wharf import {src}{user}\n\
             Every blob is verified, every tag and manifest keeps its digest; a second run\n\
             copies nothing. Then {src} can be archived."
        )));
    }
    if let Some(Node::Map(m)) = &fs {
        for (k, _) in m {
            d.unmapped(
                &format!("storage.filesystem.{k}"),
                "wharf does its file work on a bounded blocking pool; nothing to tune",
            );
        }
    }
    for drv in other {
        let why = if drv == "s3" {
            "wharf's own S3 backend ([storage] backend = \"s3\", [storage.s3]) keeps its own \
             layout, so registry:2's bucket cannot be served in place: point [storage.s3] at a \
             new bucket or prefix, sync registry:2's bucket into a filesystem tree \
             (docker/registry/v2/) and `wharf import` that"
        } else {
            "wharf keeps blobs on a local file system or in an S3 bucket; copy the data into a \
             registry:2 filesystem tree (docker/registry/v2/) and `wharf import` that"
        };
        d.unmapped(&format!("storage.{drv}"), why);
    }
    if let Some(age) = root.take_str("storage.maintenance.uploadpurging.age") {
        match duration::from_go(&age) {
            Some(w) => d.gc.push(kv_note(
                "upload_expiry",
                &w,
                &format!("storage.maintenance.uploadpurging.age {age:?}"),
            )),
            None => d.unmapped(
                "storage.maintenance.uploadpurging.age",
                &format!("{age:?} is not a Go duration this tool reads; set upload_expiry by hand"),
            ),
        }
    }
    if let Some(enabled) = root.take("storage.maintenance.uploadpurging.enabled") {
        if !enabled.is_true() {
            d.unmapped(
                "storage.maintenance.uploadpurging.enabled",
                "wharf always removes abandoned uploads, after [gc] upload_expiry",
            );
        }
    }
    for (key, reason) in [
        (
            "storage.maintenance.uploadpurging.interval",
            "wharf checks for idle uploads on its own schedule; only the age (upload_expiry) \
             is set",
        ),
        (
            "storage.maintenance.uploadpurging.dryrun",
            "wharf has no dry run for upload expiry",
        ),
        (
            "storage.cache",
            "not needed: blob descriptors are in wharf's own index (redb), no cache to choose",
        ),
        (
            "storage.redirect",
            "wharf serves blobs itself from its file system; there is no storage URL to \
             redirect to",
        ),
        ("storage.tag", "wharf has no tag lookup concurrency to tune"),
    ] {
        if root.take(key).is_some() {
            d.unmapped(key, reason);
        }
    }
    d.storage.extend(comment(
        "Deletes do not free space at once in registry:2 (offline garbage-collect);\n\
         wharf collects unreferenced blobs online, see [gc].",
    ));
}
