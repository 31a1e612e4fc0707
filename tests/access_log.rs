//! The access log of the daemon process: one whole line per request, with
//! every field, however many connections log at once, and none lost when the
//! process stops right after serving (the buffered lines are written at exit).

mod common;

use common::WharfProcess;

#[test]
fn every_request_gets_one_whole_line_even_right_before_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let w = WharfProcess::spawn(dir.path(), &dir.path().join("data"), "");
    let (threads, each) = (8, 100);
    std::thread::scope(|s| {
        for t in 0..threads {
            let url = w.url(&format!("/v2/team/t{t}/manifests/missing"));
            s.spawn(move || {
                let c = reqwest::blocking::Client::new();
                for _ in 0..each {
                    assert_eq!(c.get(&url).send().unwrap().status(), 404);
                }
            });
        }
    });
    w.signal("-TERM");
    // The log channel closes when the process closes stderr (it exited).
    let lines: Vec<String> = w.log.iter().collect();
    assert!(
        lines.iter().any(|l| l.contains("wharf stopped")),
        "the process logged its exit"
    );
    let access: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains("wharf::access"))
        .collect();
    assert_eq!(access.len(), threads * each, "one line per request");
    for t in 0..threads {
        let mine = access
            .iter()
            .filter(|l| l.contains(&format!("repo=\"team/t{t}\"")))
            .count();
        assert_eq!(mine, each, "team/t{t}");
    }
    for l in access {
        // `2026-11-30T11:59:39.023850Z  INFO wharf::access: request method=GET …`
        assert_eq!(&l[10..11], "T", "{l}");
        assert_eq!(&l[26..27], "Z", "{l}");
        let rest = &l[27..];
        assert!(
            rest.starts_with(
                "  INFO wharf::access: request method=GET route=\"manifest\" repo=\"team/t"
            ),
            "{l}"
        );
        for part in [
            " status=404 ",
            " bytes=",
            " ms=",
            " cache=\"-\" ",
            " user=\"-\" ",
        ] {
            assert!(rest.contains(part), "{part} missing from {l}");
        }
        assert!(rest.ends_with(" client=127.0.0.1"), "{l}");
    }
}
