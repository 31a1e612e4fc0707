//! Which repositories of the tree an import may write: exactly those a push
//! could (DESIGN, name routing). A name routed to an upstream (`docker.io/…`,
//! `library/…` on Docker Hub, a name holding mirrored content, any name with
//! `claim_on_push = false` outside `[hosted] prefixes`) would otherwise become
//! hosted behind the mirror's back and shadow the upstream's image, frozen,
//! for every mirror client. Those are left out with the refusal a push gets.

use crate::oci::RepoName;
use crate::oci::routing::{Intent, NameFacts, RouteRules, Target};

/// Why `name` may not be imported as hosted, or `None` when it may.
pub(super) fn refusal(
    routes: &RouteRules,
    facts: &dyn NameFacts,
    name: &RepoName,
) -> Option<String> {
    match routes.route(name, None, Intent::Push, facts) {
        Ok(Target::Hosted { .. }) => None,
        Ok(Target::Proxied(m)) => Some(format!(
            "not imported: {}",
            routes.write_refusal(name, &m, Intent::Push)
        )),
        Err(e) => Some(e.to_string()),
    }
}
