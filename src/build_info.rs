//! What this binary is: version, git commit, build date and cargo profile, as
//! `build.rs` recorded them. `wharf --version`, the `wharf serving` log line and
//! `GET /_wharf/v1/status` all say the same thing, so an operator can tell which
//! build answers on a host (and a bug report can name it).

/// The crate version (`Cargo.toml`).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The git commit it was built from (`1a2b3c4d5e6f`, `-dirty` when the work tree
/// had changes); empty when not built from a git checkout.
const COMMIT: &str = env!("WHARF_GIT_COMMIT");

/// The day it was built (`YYYY-MM-DD`, UTC; `SOURCE_DATE_EPOCH` when set).
pub const DATE: &str = env!("WHARF_BUILD_DATE");

/// The cargo profile it was built with (`release`, `dev`, ...).
pub const PROFILE: &str = env!("WHARF_BUILD_PROFILE");

/// The build in one phrase: `commit 1a2b3c4d5e6f, built 2026-11-30, release`
/// (without the commit when it is unknown).
pub const SUMMARY: &str = env!("WHARF_BUILD_SUMMARY");

/// The long `--version` text: `0.1.0 (commit 1a2b3c4d5e6f, built 2026-11-30, release)`.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WHARF_BUILD_SUMMARY"),
    ")"
);

/// The git commit, when the binary was built from a git checkout of wharf.
pub fn commit() -> Option<&'static str> {
    (!COMMIT.is_empty()).then_some(COMMIT)
}

/// The build, as the admin API reports it.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Build {
    /// The git commit, or null.
    pub commit: Option<&'static str>,
    /// The build day.
    pub date: &'static str,
    /// The cargo profile.
    pub profile: &'static str,
}

/// This binary's build.
pub fn build() -> Build {
    Build {
        commit: commit(),
        date: DATE,
        profile: PROFILE,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_long_version_names_every_fact() {
        let long = super::LONG_VERSION;
        assert!(long.starts_with(super::VERSION), "{long}");
        assert!(long.contains(super::DATE) && long.contains(super::PROFILE));
        let date = super::DATE.as_bytes();
        assert_eq!(date.len(), 10, "{}", super::DATE);
        assert_eq!((date[4], date[7]), (b'-', b'-'));
    }
}
