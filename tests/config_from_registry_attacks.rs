//! `wharf config from-registry` on hostile input: a YAML alias bomb and a huge
//! file must be refused with a clear error in bounded memory and time, not
//! take the machine down (each run here is capped at 1.5 GB of address space).

mod common;

use std::time::{Duration, Instant};

/// Runs `wharf config from-registry FILE` with its address space capped:
/// (exit code, stderr, how long it took).
fn capped(file: &std::path::Path) -> (i32, String, Duration) {
    let start = Instant::now();
    let out = std::process::Command::new("sh")
        .args([
            "-c",
            "ulimit -v 1500000; exec timeout 60 \"$0\" config from-registry \"$1\"",
        ])
        .arg(env!("CARGO_BIN_EXE_wharf"))
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        start.elapsed(),
    )
}

#[test]
fn a_yaml_alias_bomb_is_refused_in_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut y = String::from(
        "version: 0.1\na0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..10 {
        let p = format!("*a{}", i - 1);
        y.push_str(&format!("a{i}: &a{i} [{}]\n", vec![p; 9].join(",")));
    }
    let file = dir.path().join("config.yml");
    std::fs::write(&file, y).unwrap();
    let (code, err, took) = capped(&file);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("config.yml"), "{err}");
    assert!(err.to_lowercase().contains("alias"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn a_huge_file_is_refused_without_reading_it_whole() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(3 << 30).unwrap();
    let (code, err, took) = capped(&file);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("bytes"), "{err}");
    assert!(took < Duration::from_secs(20), "{took:?}");
}

#[test]
fn ordinary_anchors_still_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.yml");
    std::fs::write(
        &file,
        "version: 0.1\nlog: &l\n  level: debug\nhttp:\n  addr: :5000\n",
    )
    .unwrap();
    let (code, err, _) = capped(&file);
    assert_eq!(code, 0, "{err}");
}
