//! The charts are well-formed XML, escape what they show, scale their values
//! into the plot, and survive empty, single-point and enormous series.

use super::*;

/// A strict well-formedness check (no XML parser is among the dependencies):
/// one `<svg>` root, balanced tags, quoted unique attributes, text and
/// attribute values free of `<`, `>` and bare `&`.
fn well_formed(s: &str) -> Result<(), String> {
    fn text(t: &str) -> Result<(), String> {
        if t.contains('<') || t.contains('>') {
            return Err(format!("unescaped markup in {t:?}"));
        }
        let mut rest = t;
        while let Some(i) = rest.find('&') {
            rest = &rest[i + 1..];
            let end = rest.find(';').ok_or(format!("bare & in {t:?}"))?;
            let entity = &rest[..end];
            let numeric = entity
                .strip_prefix('#')
                .is_some_and(|d| !d.is_empty() && d.chars().all(|c| c.is_ascii_digit()));
            if !numeric && !["amp", "lt", "gt", "quot", "apos"].contains(&entity) {
                return Err(format!("unknown entity &{entity}; in {t:?}"));
            }
        }
        Ok(())
    }
    fn name_ok(n: &str) -> bool {
        !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:".contains(c))
            && n.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
    }
    let mut stack: Vec<&str> = Vec::new();
    let mut roots = 0;
    let mut rest = s;
    while let Some(i) = rest.find('<') {
        let between = &rest[..i];
        if stack.is_empty() && !between.trim().is_empty() {
            return Err(format!("text outside the root: {between:?}"));
        }
        text(between)?;
        rest = &rest[i + 1..];
        let end = rest.find('>').ok_or("unterminated tag")?;
        let tag = &rest[..end];
        rest = &rest[end + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            match stack.pop() {
                Some(open) if open == name => continue,
                other => return Err(format!("</{name}> closes {other:?}")),
            }
        }
        let self_closing = tag.ends_with('/');
        let body = tag.trim_end_matches('/');
        let (name, mut attrs) = body.split_once(' ').unwrap_or((body, ""));
        if !name_ok(name) {
            return Err(format!("bad element name {name:?}"));
        }
        let mut seen = Vec::new();
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let (attr, after) = attrs
                .split_once("=\"")
                .ok_or(format!("bad attrs {attrs:?}"))?;
            if !name_ok(attr) || seen.contains(&attr) {
                return Err(format!("bad or repeated attribute {attr:?} in <{name}>"));
            }
            seen.push(attr);
            let (value, after) = after.split_once('"').ok_or("unterminated value")?;
            text(value)?;
            attrs = after;
            if !(attrs.is_empty() || attrs.starts_with(' ')) {
                return Err(format!("attributes run together in <{name}>"));
            }
        }
        if stack.is_empty() {
            roots += 1;
            if name != "svg" {
                return Err(format!("root is <{name}>"));
            }
        }
        if !self_closing {
            stack.push(name);
        }
    }
    if !rest.trim().is_empty() {
        return Err(format!("trailing text {rest:?}"));
    }
    match (stack.is_empty(), roots) {
        (true, 1) => Ok(()),
        _ => Err(format!("unclosed {stack:?}, {roots} roots")),
    }
}

/// Checks what every chart must be, and returns it.
fn checked(svg: String) -> String {
    if let Err(e) = well_formed(&svg) {
        panic!("{e}\n{svg}");
    }
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 "));
    assert!(svg.contains(" role=\"img\" aria-label=\""));
    assert!(svg.contains("\"><title>"), "a <title> first: {svg}");
    let lower = svg.to_lowercase();
    for banned in [
        "<script",
        "href",
        "style",
        "url(",
        "javascript:",
        "nan",
        "inf",
    ] {
        assert!(!lower.contains(banned), "{banned} in {svg}");
    }
    assert_eq!(
        lower.matches("http").count(),
        1,
        "only the namespace: {svg}"
    );
    assert!(!svg.contains(" width=\"-") && !svg.contains(" height=\"-"));
    svg
}

const T0: u64 = 1_700_000_000 - 1_700_000_000 % 3600;

fn hour(title: &str) -> Frame<'_> {
    Frame {
        title,
        start: T0,
        step: 60,
    }
}

fn attr_values<'a>(svg: &'a str, attr: &str) -> Vec<&'a str> {
    let pat = format!(" {attr}=\"");
    svg.match_indices(&pat)
        .filter_map(|(i, _)| svg[i + pat.len()..].split('"').next())
        .collect()
}

#[test]
fn the_checker_rejects_what_it_should() {
    assert!(well_formed("<svg><g></svg>").is_err());
    assert!(well_formed("<svg a=\"1\" a=\"2\"/>").is_err());
    assert!(well_formed("<svg>a & b</svg>").is_err());
    assert!(well_formed("<svg>x</svg><svg/>").is_err());
    assert!(well_formed("<svg a=1/>").is_err());
    assert!(well_formed("<svg><t>&amp;&#8722;</t></svg>").is_ok());
}

#[test]
fn labels_and_titles_are_escaped() {
    let nasty = r#"<script>alert("x")</script> & 'q'"#;
    let values = [Some(0.5)];
    for svg in [
        line_chart(&hour(nasty), Unit::Ratio, &values),
        stacked_bars(&hour(nasty), [(nasty, &[1, 2]), ("up</text>", &[3])]),
        storage_gauge(nasty, &[(nasty, 10), ("pushed", 5)], 100),
    ] {
        let svg = checked(svg);
        assert!(
            svg.contains("&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &apos;q&apos;")
        );
    }
}

#[test]
fn the_largest_ratio_and_round_byte_values_reach_the_top() {
    let top = c(TOP);
    let base = c(BASE);
    let svg = checked(line_chart(
        &hour("hit ratio"),
        Unit::Ratio,
        &[Some(0.0), Some(0.5), Some(1.0)],
    ));
    assert_eq!(
        attr_values(&svg, "cy"),
        vec![base.as_str(), "106.0", top.as_str()]
    );
    assert!(svg.contains(">100%</text>") && svg.contains(">50%</text>"));

    let mib4 = 4 << 20;
    let svg = checked(line_chart(
        &hour("bytes"),
        Unit::Bytes,
        &[Some(mib4 as f64)],
    ));
    assert_eq!(attr_values(&svg, "cy"), vec![top.as_str()]);
    assert!(
        svg.contains(">4 MiB</text>") && svg.contains(">1 MiB</text>"),
        "{svg}"
    );

    // Stacked: local 3 MiB + upstream 1 MiB fill the plot; the next bucket
    // half of it.
    let svg = checked(stacked_bars(
        &hour("bytes"),
        [
            ("local", &[3 << 20, 1 << 20]),
            ("upstream", &[1 << 20, 1 << 20]),
        ],
    ));
    let ys = attr_values(&svg, "y");
    assert!(ys.contains(&top.as_str()), "{ys:?}");
    assert!(ys.contains(&"106.0"), "{ys:?}");
}

#[test]
fn awkward_maxima_land_in_the_upper_half() {
    for max in [1u64, 3, 7, 999, 1000, 1023, 1025, 5 << 30, 123_456_789_012] {
        let scale = Scale::new(Unit::Bytes, max as f64);
        assert!(scale.top >= max as f64, "{max}: top {}", scale.top);
        assert!(
            scale.top <= (2.5 * max as f64).max(4.0),
            "{max}: top {}",
            scale.top
        );
    }
}

#[test]
fn empty_series_say_no_data_yet() {
    for svg in [
        line_chart(&hour("hit ratio"), Unit::Ratio, &[]),
        line_chart(&hour("hit ratio"), Unit::Ratio, &[None; 60]),
        stacked_bars(&hour("bytes"), [("local", &[]), ("upstream", &[])]),
    ] {
        let svg = checked(svg);
        assert!(svg.contains(">no data yet</text>"), "{svg}");
        assert!(!svg.contains("<circle") && !svg.contains("class=\"line\""));
        assert!(!svg.contains("−0m"), "{svg}");
    }
    let svg = checked(stacked_bars(
        &hour("bytes"),
        [("local", &[0; 60]), ("upstream", &[0; 60])],
    ));
    assert!(svg.contains(">no traffic yet</text>"));
    let svg = checked(storage_gauge("storage", &[("cached", 0), ("pushed", 0)], 0));
    assert!(svg.contains("nothing stored yet") && svg.contains("unlimited"));
}

#[test]
fn a_single_point_is_a_dot_and_gaps_split_the_line() {
    let svg = checked(line_chart(
        &hour("hit ratio"),
        Unit::Ratio,
        &[None, Some(0.25), None],
    ));
    assert_eq!(svg.matches("<circle").count(), 1);
    assert!(!svg.contains("class=\"line\""));
    assert!(svg.contains("22:01 UTC: 25%"), "{svg}");
    let svg = checked(line_chart(
        &hour("hit ratio"),
        Unit::Ratio,
        &[Some(0.1), Some(0.2), None, Some(0.3), Some(0.4)],
    ));
    assert_eq!(svg.matches("class=\"line\"").count(), 2);
    assert!(!svg.contains("no data yet"));
}

#[test]
fn time_labels_are_relative_to_now() {
    let svg = checked(line_chart(&hour("h"), Unit::Ratio, &[Some(1.0); 60]));
    for l in [">−60m<", ">−45m<", ">−30m<", ">−15m<", ">now<"] {
        assert!(svg.contains(l), "{l} in {svg}");
    }
    let day = Frame {
        title: "d",
        start: T0,
        step: 3600,
    };
    let svg = checked(line_chart(&day, Unit::Ratio, &[Some(1.0); 24]));
    for l in [">−24h<", ">−18h<", ">−12h<", ">−6h<", ">now<"] {
        assert!(svg.contains(l), "{l} in {svg}");
    }
}

#[test]
fn huge_values_neither_overflow_nor_produce_nan() {
    let max = u64::MAX;
    let svg = checked(stacked_bars(
        &hour("bytes"),
        [("local", &[max, 1]), ("upstream", &[max, 0])],
    ));
    assert!(svg.contains("EiB"));
    let svg = checked(line_chart(
        &hour("bytes"),
        Unit::Bytes,
        &[Some(max as f64), Some(f64::NAN)],
    ));
    assert!(svg.contains("16 EiB"), "{svg}");
    let svg = checked(storage_gauge(
        "storage",
        &[("cached", max), ("pushed", max)],
        max,
    ));
    assert!(svg.contains("class=\"budget\""));
    assert_eq!(format_bytes(max), "16 EiB");
}

#[test]
fn the_gauge_draws_its_budget_line_only_with_a_budget() {
    let gib = 1u64 << 30;
    let svg = checked(storage_gauge(
        "storage",
        &[("cached", gib), ("pushed", gib)],
        4 * gib,
    ));
    // Stacked by origin over the whole width: cached is half of it.
    assert!(
        svg.contains(r#"class="part-0" x="8.0" y="26" width="292.0""#),
        "{svg}"
    );
    // The meter: cached (1 GiB) fills a quarter of the budget (4 GiB), whose
    // line ends it.
    assert!(
        svg.contains(r#"class="budget-used" x="8.0" y="60" width="146.0""#),
        "{svg}"
    );
    assert!(svg.contains(r#"<line class="budget" x1="592.0""#), "{svg}");
    assert!(svg.contains("cache budget: 1 GiB of 4 GiB used (25%)"));
    let svg = checked(storage_gauge(
        "storage",
        &[("cached", gib), ("pushed", gib)],
        0,
    ));
    assert!(!svg.contains("class=\"budget\"") && !svg.contains("budget-used"));
    assert!(svg.contains("cache budget: unlimited"));
    // Over budget (eviction lags): the line sits inside the meter.
    let svg = checked(storage_gauge("storage", &[("cached", 2 * gib)], gib));
    assert!(svg.contains(r#"<line class="budget" x1="300.0""#), "{svg}");
}

#[test]
fn units_read_naturally() {
    assert_eq!(format_bytes(0), "0 B");
    assert_eq!(format_bytes(1023), "1023 B");
    assert_eq!(format_bytes(1536), "1.5 KiB");
    assert_eq!(format_bytes(200 << 30), "200 GiB");
    assert_eq!(format_percent(0.932), "93.2%");
    assert_eq!(format_percent(1.0), "100%");
    assert_eq!(format_percent(f64::NAN), "0%");
}

#[test]
fn the_history_charts_follow_a_snapshot() {
    use crate::metrics::history::{Counts, History, ManualClock};
    let clock = std::sync::Arc::new(ManualClock::at(T0 + 30));
    let h = History::new(clock.clone());
    h.record(Counts {
        hit: 3,
        miss: 1,
        served_local: 3 << 20,
        fetched_upstream: 1 << 20,
        ..Counts::default()
    });
    let charts = history_charts(&h.snapshot());
    let hit = checked(charts.hit_ratio_hour);
    assert!(hit.contains("22:00 UTC: 75%"), "{hit}");
    checked(charts.hit_ratio_day);
    let bytes = checked(charts.bytes_hour);
    assert!(bytes.contains("22:00 UTC: served locally 3 MiB, fetched from upstreams 1 MiB"));
    let day = checked(charts.bytes_day);
    assert!(day.contains(">−24h<"), "{day}");
}
