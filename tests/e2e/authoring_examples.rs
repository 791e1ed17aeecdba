//! Every example rule in rules/examples passes its own cases through `herald test`.

use std::process::Command;

use crate::support::{assert_exit, repo, stderr, stdout};

#[test]
fn every_example_rule_passes_its_cases() {
    let examples = repo().join("rules/examples");
    let mut names: Vec<String> = std::fs::read_dir(&examples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("herald-rule.yaml").is_file())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert!(names.len() >= 3, "{names:?}");
    for name in &names {
        let tested = Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(&examples)
            .args(["test", name])
            .env("CARGO_NET_OFFLINE", "true")
            .env("CARGO_TARGET_DIR", repo().join("target/authoring-scaffold"))
            .env_remove("HERALD_CONFIG")
            .env_remove("RUSTFLAGS")
            .output()
            .unwrap();
        assert_exit(&tested, 0);
        let (out, err) = (stdout(&tested), stderr(&tested));
        assert!(!out.contains("FAIL"), "{name}\n{out}");
        assert!(err.contains(" passed, 0 failed"), "{name}\n{err}");
        let cases = std::fs::read_dir(examples.join(name).join("tests/cases"))
            .unwrap()
            .count();
        assert_eq!(
            out.matches("PASS ").count(),
            cases,
            "{name}: every case ran\n{out}"
        );
    }
}
