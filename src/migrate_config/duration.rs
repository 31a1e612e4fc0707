//! Go durations (`60s`, `1h30m`, `168h`, registry:2's notation) rewritten in
//! wharf's (`60s`, `5400s`, `7d`).

/// wharf's notation for a Go duration, or `None` when it is not one (or has
/// fractions below a millisecond).
pub(super) fn from_go(s: &str) -> Option<String> {
    let s = s.trim();
    if s == "0" {
        return Some("0".into());
    }
    let mut ms: u64 = 0;
    let mut rest = s;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let per: u64 = match &rest[..unit_len] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            _ => return None,
        };
        ms = ms.checked_add(n.checked_mul(per)?)?;
        rest = &rest[unit_len..];
    }
    Some(if ms % 86_400_000 == 0 && ms > 0 {
        format!("{}d", ms / 86_400_000)
    } else if ms % 3_600_000 == 0 && ms > 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 && ms > 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1_000 == 0 {
        format!("{}s", ms / 1_000)
    } else {
        format!("{ms}ms")
    })
}

#[cfg(test)]
mod tests {
    use super::from_go;

    #[test]
    fn go_durations_become_wharf_durations() {
        assert_eq!(from_go("60s").as_deref(), Some("1m"));
        assert_eq!(from_go("168h").as_deref(), Some("7d"));
        assert_eq!(from_go("1h30m").as_deref(), Some("90m"));
        assert_eq!(from_go("1500ms").as_deref(), Some("1500ms"));
        assert_eq!(from_go("45s").as_deref(), Some("45s"));
        assert_eq!(from_go("1.5h"), None);
        assert_eq!(from_go("soon"), None);
        assert_eq!(from_go(""), None);
    }
}
