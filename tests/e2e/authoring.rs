//! The rule authoring kit on the real binary: `herald rule new` outside the repo, `herald test`
//! passing and failing with a diff, `herald rule run`, and a missing `export_rule!` named.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

use crate::support::{Scratch, assert_exit, fixture_wasm, repo, stderr, stdout};

/// Run herald in `dir` with no herald.yaml around, building rules offline into a target
/// folder kept between runs (so only the first run compiles wit-bindgen and serde).
fn herald_in(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir)
        .args(args)
        .env("CARGO_NET_OFFLINE", "true")
        .env("CARGO_TARGET_DIR", repo().join("target/authoring-scaffold"))
        .env_remove("HERALD_CONFIG")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_BUILD_TARGET")
        .output()
        .expect("run the herald binary")
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn a_new_rule_builds_tests_fails_with_a_diff_and_runs() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(
        !tmp.path().starts_with(repo()),
        "the scaffold must live outside the repo"
    );
    let started = Instant::now();
    let made = herald_in(tmp.path(), &["rule", "new", "welcome-users"]);
    assert_exit(&made, 0);
    let rule = tmp.path().join("welcome-users");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "herald-rule.yaml",
        "README.md",
        "events/user-created.json",
        "tests/cases/new-user.yaml",
        "herald-sdk/Cargo.toml",
        "herald-sdk/wit/rule.wit",
        ".cargo/config.toml",
    ] {
        assert!(rule.join(file).is_file(), "rule new wrote no {file}");
    }
    let manifest = std::fs::read_to_string(rule.join("Cargo.toml")).unwrap();
    assert!(
        manifest.contains("[workspace]") && manifest.contains("path = \"herald-sdk\""),
        "{manifest}"
    );

    let formatted = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .current_dir(&rule)
        .args(["fmt", "--check"])
        .output()
        .unwrap();
    assert_exit(&formatted, 0);

    let passed = herald_in(&rule, &["test"]);
    assert_exit(&passed, 0);
    eprintln!(
        "herald rule new → passing herald test: {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let report = stdout(&passed);
    assert!(report.contains("PASS new-user: fuel "), "{report}");
    assert!(
        report.contains("of 10,000,000") && report.contains("MiB of 16.0 MiB"),
        "{report}"
    );
    assert!(
        !report.contains("memory 0.0 MiB"),
        "the memory used is measured\n{report}"
    );
    assert!(rule.join("welcome-users.wasm").is_file());

    edit(
        &rule.join("tests/cases/new-user.yaml"),
        "dave joined lab",
        "dave joined the lab",
    );
    let failed = herald_in(&rule, &["test"]);
    assert_exit(&failed, 1);
    let report = stdout(&failed);
    assert!(report.contains("FAIL new-user"), "{report}");
    assert!(
        report.contains("-  subject: '[OMERO] dave joined the lab'"),
        "{report}"
    );
    assert!(
        report.contains("+  subject: '[OMERO] dave joined lab'"),
        "{report}"
    );
    assert!(
        stderr(&failed).contains("0 passed, 1 failed"),
        "{}",
        stderr(&failed)
    );

    let ran = herald_in(
        &rule,
        &[
            "rule",
            "run",
            "welcome-users.wasm",
            "--event",
            "events/user-created.json",
            "--rule-config",
            "{tell_owners: false}",
        ],
    );
    assert_exit(&ran, 0);
    let out = stdout(&ran);
    assert!(
        out.contains("-> dave@example.org  [OMERO] Welcome to OMERO, dave"),
        "{out}"
    );
    assert!(
        !out.contains("alice@example.org"),
        "tell_owners: false still told the owner\n{out}"
    );

    // Deployed with a wrong-typed config or a typo in `on:`, `config check` refuses it.
    let wasm = rule.join("welcome-users.wasm");
    let checked = config_check(
        tmp.path(),
        &format!(
            "  - name: welcome\n    module: {}\n    on: [omero.user.created]\n    config:\n      tell_owners: \"yes\"\n",
            wasm.display()
        ),
    );
    assert_exit(&checked, 2);
    let err = stderr(&checked);
    assert!(err.contains("herald.yaml:7:20: rules[0].config.tell_owners: rule `welcome` refuses its config: invalid type: string \"yes\", expected a boolean"), "{err}");
    assert!(err.contains("fix: give `tell_owners` a value"), "{err}");
    let checked = config_check(
        tmp.path(),
        &format!(
            "  - name: welcome\n    module: {}\n    on: [omero.user.create]\n",
            wasm.display()
        ),
    );
    assert_exit(&checked, 2);
    let err = stderr(&checked);
    assert!(err.contains("herald.yaml:5:10: rules[0].on[0]: rule `welcome` would never run on `omero.user.create`"), "{err}");
    assert!(err.contains("did you mean `omero.user.created`?"), "{err}");
}

/// `herald config check` on a herald.yaml in `dir` whose `rules:` are `rules`.
fn config_check(dir: &Path, rules: &str) -> Output {
    std::fs::copy(
        repo().join("etc/directory.yaml"),
        dir.join("directory.yaml"),
    )
    .unwrap();
    let config = dir.join("herald.yaml");
    std::fs::write(&config, format!("state_dir: var\nrules:\n{rules}")).unwrap();
    herald_in(dir, &["--config", "herald.yaml", "config", "check"])
}

#[test]
fn a_default_rule_with_a_wrong_typed_config_or_an_unknown_type_is_refused_at_its_line() {
    let tmp = tempfile::tempdir().unwrap();
    let bad_config = "  - name: failed-login\n    module: builtin:failed-login\n    on: [omero.login.failed]\n    config: {contact_system: \"yes\"}\n";
    let checked = config_check(tmp.path(), bad_config);
    assert_exit(&checked, 2);
    let err = stderr(&checked);
    assert!(err.contains("herald.yaml:6:30: rules[0].config.contact_system: rule `failed-login` refuses its config: invalid type: string \"yes\", expected a boolean"), "{err}");
    let unknown_key = "  - name: new-user\n    module: builtin:new-user\n    on: [omero.user.created]\n    config:\n      mood: parity\n";
    let err = stderr(&config_check(tmp.path(), unknown_key));
    assert!(
        err.contains("herald.yaml:7:13: rules[0].config.mood"),
        "{err}"
    );
    assert!(err.contains("unknown field `mood`"), "{err}");
    let typo =
        "  - name: failed-login\n    module: builtin:failed-login\n    on: [omero.login.fail]\n";
    let checked = config_check(tmp.path(), typo);
    assert_exit(&checked, 2);
    let err = stderr(&checked);
    assert!(err.contains("herald.yaml:5:10: rules[0].on[0]: rule `failed-login` would never run on `omero.login.fail`"), "{err}");
    assert!(err.contains("did you mean `omero.login.failed`?"), "{err}");
    let good = "  - name: failed-login\n    module: builtin:failed-login\n    on: [omero.login.failed]\n    config: {contact_system: true}\n";
    assert_exit(&config_check(tmp.path(), good), 0);
}

#[test]
fn a_panic_shows_its_message_and_a_wasm_backtrace_and_a_missing_export_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    assert_exit(&herald_in(tmp.path(), &["rule", "new", "panicky"]), 0);
    let rule = tmp.path().join("panicky");
    let lib = rule.join("src/lib.rs");
    edit(
        &lib,
        "let mut mails = vec![welcome];",
        "assert!(!settings.tell_owners, \"owners of {name} are not ready\");\n        let mut mails = vec![welcome];",
    );
    assert_exit(&herald_in(&rule, &["rule", "build"]), 0);
    let event = [
        "rule",
        "run",
        "panicky.wasm",
        "--event",
        "events/user-created.json",
    ];
    let ran = herald_in(&rule, &event);
    assert_exit(&ran, 1);
    let (out, err) = (stdout(&ran), stderr(&ran));
    assert!(out.contains("owners of dave are not ready"), "{out}");
    assert!(out.contains("src/lib.rs:"), "the panic's location\n{out}");
    assert!(
        err.contains("wasm backtrace:") && err.contains("panicky"),
        "{err}"
    );

    edit(&lib, "export_rule!(Welcome, config = Settings);", "");
    let built = herald_in(&rule, &["rule", "build"]);
    assert_exit(&built, 2);
    assert!(
        stderr(&built).contains("export_rule!(YourRule);"),
        "{}",
        stderr(&built)
    );
}

#[test]
fn a_rule_built_against_contract_0_1_0_loads_and_replays_its_recorded_mail() {
    let wasm = fixture_wasm("herald-rule-new-user-0-1-0");
    let bytes = std::fs::read(&wasm).unwrap();
    let has = |needle: &str| bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(
        has("herald:rule/host@0.1.0"),
        "the fixture imports the 0.1.0 contract"
    );
    assert!(
        !has("check-config"),
        "a 0.1.0 rule has no check-config export"
    );
    let recording = repo().join("tests/recordings/new-user-group");
    let scratch = Scratch::with_config(&format!(
        "state_dir: var\ndirectory: {{path: {}}}\nrules:\n  \
         - {{name: new-user, module: {}, on: [omero.user.created], config: {{mode: parity}}}}\n  \
         - {{name: new-group, module: builtin:new-group, on: [omero.group.created]}}\n",
        repo().join("tests/recordings/directory.yaml").display(),
        wasm.display()
    ));
    assert_exit(&scratch.herald_own(&["config", "check"]), 0);
    let events = recording.join("events.jsonl");
    let expected = recording.join("expected");
    let replayed = scratch.herald_own(&[
        "replay",
        events.to_str().unwrap(),
        "--expect",
        expected.to_str().unwrap(),
    ]);
    assert_exit(&replayed, 0);
    assert!(
        stderr(&replayed).contains("every message matches"),
        "{}",
        stderr(&replayed)
    );
}
