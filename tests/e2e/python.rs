//! Rules in Python on the real binary: a scaffold built with componentize-py, tested and
//! delivered; the ported default rules' mail byte-identical to the Rust rules'; hostile Python
//! rules contained with named reasons; replays byte-identical.
//!
//! Each Python component is built at most once per run, into `target/python-e2e/<name>-<hash>/`
//! (reused while its sources are unchanged); the tests share its compiled-component cache.
//! componentize-py is installed by `herald rule build` itself into `target/python-e2e/xdg`
//! (or `HERALD_COMPONENTIZE_PY` is used when set).

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use crate::support::{Scratch, assert_exit, repo, stderr, stdout};

/// One build at a time: two cores, and componentize-py's install must happen once.
static BUILDS: Mutex<()> = Mutex::new(());

fn work_dir() -> PathBuf {
    repo().join("target/python-e2e")
}

/// Run herald in `dir` with no herald.yaml around, componentize-py installed under target/.
fn herald_in(dir: &Path, args: &[&str]) -> Output {
    share_run_cache();
    Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(dir)
        .args(args)
        .env("XDG_CACHE_HOME", work_dir().join("xdg"))
        .env_remove("HERALD_CONFIG")
        .output()
        .expect("run the herald binary")
}

/// A built Python rule: its folder (a copy of the sources) and component.
struct Built {
    dir: PathBuf,
    wasm: PathBuf,
}

impl Built {
    /// The compiled-component cache `herald rule build` filled: replays reuse it.
    fn cache(&self) -> PathBuf {
        shared_cache()
    }
}

/// The compiled-component cache every Python rule of these tests shares (private, as
/// Herald only trusts a cache folder nobody else can write).
fn shared_cache() -> PathBuf {
    private_dir(&work_dir().join("cache"))
}

/// `dir`, made if missing, that only this user may write (a cache Herald trusts).
fn private_dir(dir: &Path) -> PathBuf {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .unwrap();
    dir.to_owned()
}

/// `herald rule run` keeps Python rules compiled in `$XDG_CACHE_HOME/herald/compiled`: the
/// shared cache too.
fn share_run_cache() {
    let herald = work_dir().join("xdg/herald");
    std::fs::create_dir_all(&herald).unwrap();
    let link = herald.join("compiled");
    if !link.is_symlink() {
        let _ = std::fs::remove_dir_all(&link);
        let _ = std::os::unix::fs::symlink(shared_cache(), &link);
    }
}

/// Make the cache `herald rule build` and `herald test` use in `dir` the shared one.
fn share_cache(dir: &Path) {
    let herald = dir.join("target/herald");
    std::fs::create_dir_all(&herald).unwrap();
    std::os::unix::fs::symlink(shared_cache(), herald.join("cache")).unwrap();
}

/// Build the Python rule in `source` (relative to the repo) once: a copy of it under
/// target/python-e2e, named by the hash of its sources and the SDK's.
fn built(source: &str) -> Built {
    let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
    let source = repo().join(source);
    let name = source.file_name().unwrap().to_string_lossy().into_owned();
    let dir = work_dir().join(format!("{name}-{:016x}", sources_hash(&source)));
    let wasm = dir.join(format!("{}.wasm", rule_name(&source)));
    if !wasm.is_file() {
        remove_older_builds(&name);
        copy_tree(&source, &dir);
        share_cache(&dir);
        let out = herald_in(&dir, &["rule", "build"]);
        assert_exit(&out, 0);
        assert!(wasm.is_file(), "no {}: {}", wasm.display(), stderr(&out));
    }
    Built { dir, wasm }
}

/// Drop the builds of `name` from earlier sources (`<name>-<hash>`), each 18 MB or more.
fn remove_older_builds(name: &str) {
    let Ok(entries) = std::fs::read_dir(work_dir()) else {
        return;
    };
    for path in entries.filter_map(|e| e.ok().map(|e| e.path())) {
        let file = path.file_name().unwrap().to_string_lossy();
        let hash = file
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix('-'));
        if hash.is_some_and(|h| h.len() == 16 && h.chars().all(|c| c.is_ascii_hexdigit())) {
            let _ = std::fs::remove_dir_all(&path);
        }
    }
}

fn rule_name(source: &Path) -> String {
    let entry = std::fs::read_to_string(source.join("herald-rule.yaml")).unwrap();
    let value: serde_yaml::Value = serde_yaml::from_str(&entry).unwrap();
    value["rules"][0]["name"].as_str().unwrap().to_owned()
}

/// A hash of the rule's files, the Python SDK and the WIT.
fn sources_hash(source: &Path) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for root in [
        source.to_owned(),
        repo().join("sdk/python/herald"),
        repo().join("sdk/wit"),
    ] {
        for file in files(&root) {
            file.strip_prefix(&root).unwrap().hash(&mut hasher);
            std::fs::read(&file).unwrap().hash(&mut hasher);
        }
    }
    hasher.finish()
}

/// The files under `dir`, sorted, without caches.
fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy();
        if name == "__pycache__" || name == "target" || name.ends_with(".wasm") {
            continue;
        }
        if path.is_dir() {
            out.extend(files(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

fn copy_tree(from: &Path, to: &Path) {
    for file in files(from) {
        let target = to.join(file.strip_prefix(from).unwrap());
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(&file, &target).unwrap();
    }
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).unwrap();
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replace(from, to)).unwrap();
}

#[test]
fn a_new_python_rule_builds_tests_fails_with_a_diff_runs_and_delivers() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(
        !tmp.path().starts_with(repo()),
        "the scaffold must live outside the repo"
    );
    let made = herald_in(
        tmp.path(),
        &["rule", "new", "welcome-py", "--lang", "python"],
    );
    assert_exit(&made, 0);
    let rule = tmp.path().join("welcome-py");
    for file in [
        "app.py",
        "herald-rule.yaml",
        "README.md",
        ".gitignore",
        "events/user-created.json",
        "tests/cases/new-user.yaml",
        "herald/__init__.py",
        "herald/world.py",
        "wit/rule.wit",
    ] {
        assert!(rule.join(file).is_file(), "rule new wrote no {file}");
    }
    assert!(!rule.join("Cargo.toml").exists());
    // Its component is new on every run (componentize-py's output varies), so it is compiled
    // into a cache of its own that goes with the temp dir, and `rule run` uses it too.
    let cache = private_dir(&rule.join("target/herald/cache"));
    let run_cache = tmp.path().join("xdg/herald/compiled");
    std::fs::create_dir_all(run_cache.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&cache, &run_cache).unwrap();

    let passed = {
        let _one_at_a_time = BUILDS.lock().unwrap_or_else(|e| e.into_inner());
        herald_in(&rule, &["test"])
    };
    assert_exit(&passed, 0);
    let report = stdout(&passed);
    assert!(report.contains("PASS new-user: fuel "), "{report}");
    assert!(
        report.contains("of 500,000,000") && report.contains("MiB of 64.0 MiB"),
        "{report}"
    );
    assert!(rule.join("welcome-py.wasm").is_file());

    // A broken expectation fails with a diff of the one changed line.
    let case = rule.join("tests/cases/new-user.yaml");
    edit(&case, "Welcome to OMERO, dave", "Welcome aboard, dave");
    let wasm = rule.join("welcome-py.wasm");
    let failed = herald_in(&rule, &["test", "--wasm", wasm.to_str().unwrap()]);
    assert_exit(&failed, 1);
    let report = stdout(&failed);
    assert!(report.contains("FAIL new-user"), "{report}");
    assert!(
        report.contains("-  subject: '[OMERO] Welcome aboard, dave'")
            && report.contains("+  subject: '[OMERO] Welcome to OMERO, dave'"),
        "{report}"
    );

    let ran = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(&rule)
        .args(["rule", "run", "welcome-py.wasm"])
        .args(["--event", "events/user-created.json"])
        .env("XDG_CACHE_HOME", tmp.path().join("xdg"))
        .output()
        .unwrap();
    assert_exit(&ran, 0);
    assert!(
        stdout(&ran).contains("[OMERO] dave joined lab"),
        "{}",
        stdout(&ran)
    );
    assert!(stderr(&ran).contains("of 64.0 MiB"), "{}", stderr(&ran));

    // Deployed: the entry of herald-rule.yaml in a herald.yaml, mail delivered.
    let entry = std::fs::read_to_string(rule.join("herald-rule.yaml")).unwrap();
    let config = format!(
        "state_dir: var\nsandbox: {{cache_dir: {}}}\n{}",
        cache.display(),
        entry.replace(
            "module: welcome-py.wasm",
            &format!("module: {}", wasm.display())
        )
    );
    let scratch = Scratch::with_config(&config);
    let events = rule.join("events/user-created.json");
    let out = scratch.herald_own(&["replay", "--deliver", events.to_str().unwrap()]);
    assert_exit(&out, 0);
    let mails = scratch.mails();
    assert_eq!(mails.len(), 2, "{mails:?}\n{}", stdout(&out));
    let welcome = mails
        .iter()
        .find(|(name, _)| name.contains("--dave@example.org--"))
        .expect("dave's welcome");
    let text = String::from_utf8_lossy(&welcome.1);
    assert!(
        text.contains("Subject: [OMERO] Welcome to OMERO, dave"),
        "{text}"
    );
    assert!(text.contains("your OMERO account is ready."), "{text}");
}

#[test]
fn the_python_default_rules_pass_their_cases() {
    for source in ["rules/python/new-user", "rules/python/failed-login"] {
        let rule = built(source);
        let wasm = rule.wasm.to_str().unwrap();
        let out = herald_in(&rule.dir, &["test", "--wasm", wasm]);
        assert_exit(&out, 0);
        let report = stdout(&out);
        assert!(!report.contains("FAIL"), "{source}: {report}");
        assert!(report.matches("PASS ").count() >= 2, "{source}: {report}");
    }
}

/// The recorded cases whose rules have a Python port, and the rules swapped for it.
const RECORDINGS: &[&str] = &[
    "new-user-group",
    "failed-login-stock",
    "failed-login-both",
    "failed-login-user-specific",
    "failed-login-user-all",
    "failed-login-system-all",
    "failed-login-quiet",
    "enriched",
];

#[test]
fn the_python_default_rules_mail_byte_identical_to_the_rust_rules() {
    let new_user = built("rules/python/new-user");
    let failed_login = built("rules/python/failed-login");
    let recordings = repo().join("tests/recordings");
    for case in RECORDINGS {
        let case = recordings.join(case);
        let yaml = std::fs::read_to_string(case.join("herald.yaml")).unwrap();
        assert!(!yaml.contains("sandbox:"), "{}", case.display());
        let mut swapped = yaml
            .replace(
                "path: ../directory.yaml",
                &format!("path: {}", recordings.join("directory.yaml").display()),
            )
            .replace(
                "module: builtin:new-user,",
                &format!("module: {}, lang: python,", new_user.wasm.display()),
            );
        for (from, indent) in [
            ("module: builtin:new-user\n", "    "),
            ("module: builtin:failed-login\n", "    "),
        ] {
            let wasm = if from.contains("new-user") {
                &new_user
            } else {
                &failed_login
            };
            swapped = swapped.replace(
                from,
                &format!("module: {}\n{indent}lang: python\n", wasm.wasm.display()),
            );
        }
        assert!(
            swapped.contains("lang: python")
                && !swapped.contains("builtin:new-user")
                && !swapped.contains("builtin:failed-login"),
            "the Rust rules are still in\n{swapped}"
        );
        let swapped = format!(
            "sandbox: {{cache_dir: {}}}\n{swapped}",
            new_user.cache().display()
        );
        let scratch = Scratch::with_config(&swapped);
        let events = case.join("events.jsonl");
        let expected = case.join("expected");
        let out = scratch.herald_own(&[
            "replay",
            events.to_str().unwrap(),
            "--expect",
            expected.to_str().unwrap(),
        ]);
        assert_exit(&out, 0);
        assert!(
            stderr(&out).contains("every message matches"),
            "{}: {}",
            case.display(),
            stderr(&out)
        );
    }
}

/// (rule name, misdeed, extra limits, the reason the CLI must print)
const HOSTILE: &[(&str, &str, &str, &str)] = &[
    ("fuel", "loop", "{wall_time: 60s}", "FAILED out of fuel"),
    (
        "deadline",
        "loop",
        "{fuel: 1000000000000, wall_time: 1s}",
        "FAILED deadline",
    ),
    ("memory", "memory", "{wall_time: 60s}", "FAILED memory"),
    (
        "recursion",
        "recursion",
        "",
        "FAILED panic: RecursionError: maximum recursion depth exceeded (at app.py:",
    ),
    (
        "unbounded",
        "recursion-unbounded",
        "{wall_time: 60s}",
        "FAILED out of fuel",
    ),
    (
        "exception",
        "raise",
        "",
        "FAILED panic: KeyError: 'missing key, on purpose' (at app.py:",
    ),
    (
        "flood",
        "flood",
        "{memory: 256MiB, fuel: 1000000000000, wall_time: 60s}",
        "FAILED output cap: returned 100000 messages",
    ),
    (
        "inject",
        "header-injection",
        "",
        "FAILED invalid header: message 0: the subject",
    ),
    (
        "error",
        "error",
        "",
        "FAILED rule error: refusing on purpose",
    ),
];

/// Each hostile rule on its own `test.NAME` event, then the same event type with
/// `behave: true`; the Rust new-user rule on a user-created event in between.
fn hostile_config(wasm: &Path, cache: &Path) -> String {
    let types: Vec<String> = HOSTILE.iter().map(|(n, ..)| format!("test.{n}")).collect();
    let mut yaml = format!(
        "state_dir: var\ningest: {{custom_types: [{}]}}\nsandbox: {{cache_dir: {}}}\nrules:\n  \
         - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n",
        types.join(", "),
        cache.display()
    );
    for (name, misdeed, limits, _) in HOSTILE {
        yaml.push_str(&format!(
            "  - name: {name}\n    module: {}\n    lang: python\n    on: [test.{name}]\n    \
             config: {{misdeed: {misdeed}}}\n",
            wasm.display()
        ));
        if !limits.is_empty() {
            yaml.push_str(&format!("    limits: {limits}\n"));
        }
    }
    yaml
}

fn hostile_events() -> String {
    let time = r#""time":"2026-11-23T09:00:00Z""#;
    let mut lines = Vec::new();
    for (i, (name, ..)) in HOSTILE.iter().enumerate() {
        lines.push(format!(
            r#"{{"id":"bad-{i}","source":"t","type":"test.{name}",{time},"data":{{}}}}"#
        ));
        lines.push(format!(
            r#"{{"id":"good-{i}","source":"t","type":"omero.user.created",{time},"data":{{"user":{{"id":{},"name":"u{i}"}}}}}}"#,
            100 + i
        ));
        lines.push(format!(
            r#"{{"id":"again-{i}","source":"t","type":"test.{name}",{time},"data":{{"behave":true}}}}"#
        ));
    }
    lines.join("\n") + "\n"
}

#[test]
fn hostile_python_rules_fail_alone_with_named_reasons() {
    let hostile = built("tests/rules/python-hostile");
    let scratch = Scratch::with_config(&hostile_config(&hostile.wasm, &hostile.cache()));
    std::fs::write(scratch.path("events.jsonl"), hostile_events()).unwrap();
    let events = scratch.path("events.jsonl");
    let out = scratch.herald_own(&["replay", "--deliver", events.to_str().unwrap()]);
    assert_exit(&out, 1); // some invocations failed; everything else ran
    let text = stdout(&out);
    for (name, _, _, reason) in HOSTILE {
        assert!(
            text.contains(&format!("  {name}: {reason}")),
            "no `{name}: {reason}` in\n{text}"
        );
    }
    assert_eq!(
        text.matches("new-user: 2 message(s)").count(),
        HOSTILE.len(),
        "{text}"
    );
    // Each hostile rule, run again on the `behave` event, works: one mail each.
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule <> 'new-user'"),
        HOSTILE.len() as i64
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_runs WHERE state = 'failed'"),
        HOSTILE.len() as i64
    );
    // The store keeps the exception with the traceback's file and line.
    assert_eq!(
        scratch.count(
            "SELECT count(*) FROM rule_runs WHERE rule = 'exception' AND state = 'failed' \
             AND code = 'panic' \
             AND reason LIKE '%KeyError%app.py:%Traceback (most recent call last)%'"
        ),
        1
    );
}

#[test]
fn two_replays_through_a_python_rule_give_identical_bytes() {
    let hostile = built("tests/rules/python-hostile");
    let config = format!(
        "state_dir: var\ningest: {{custom_types: [test.chance]}}\nsandbox: {{cache_dir: {}}}\n\
         rules:\n  - {{name: chance, module: {}, lang: python, on: [test.chance], config: {{misdeed: chance}}}}\n",
        hostile.cache().display(),
        hostile.wasm.display()
    );
    let events = "{\"id\":\"c-1\",\"source\":\"t\",\"type\":\"test.chance\",\"time\":\"2026-11-23T09:00:00Z\",\"data\":{}}\n\
                  {\"id\":\"c-2\",\"source\":\"t\",\"type\":\"test.chance\",\"time\":\"2026-11-23T10:00:00Z\",\"data\":{}}\n";
    let replay = || {
        let scratch = Scratch::with_config(&config);
        std::fs::write(scratch.path("events.jsonl"), events).unwrap();
        let file = scratch.path("events.jsonl");
        let out = scratch.herald_own(&["replay", "--deliver", file.to_str().unwrap()]);
        assert_exit(&out, 0);
        scratch.mails()
    };
    let (first, second) = (replay(), replay());
    assert_eq!(first.len(), 2, "{first:?}");
    assert_eq!(first, second, "two replays differ");
    let text = |i: usize| String::from_utf8_lossy(&first[i].1).into_owned();
    // The clock reads each event's time; random is seeded per event, so the two differ.
    assert!(text(0).contains("time 1795424400.0"), "{}", text(0));
    assert!(text(1).contains("time 1795428000.0"), "{}", text(1));
    let random = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("random "))
            .map(str::to_owned)
    };
    assert_ne!(random(&text(0)), random(&text(1)));
}

#[test]
fn a_python_rule_entry_without_lang_python_is_warned_about_with_the_fix() {
    let hostile = built("tests/rules/python-hostile");
    let entry = |lang: &str| {
        format!(
            "state_dir: var\ningest: {{custom_types: [test.chance]}}\nsandbox: {{cache_dir: {}}}\n\
             rules:\n  - {{name: chance, module: {},{lang} on: [test.chance], config: {{misdeed: chance}}}}\n",
            hostile.cache().display(),
            hostile.wasm.display()
        )
    };
    let warning = "is a Python rule (componentize-py) but its limits are below";
    let bare = Scratch::with_config(&entry(""));
    let out = bare.herald_own(&["config", "check"]);
    assert_exit(&out, 0);
    assert!(
        stderr(&out).contains(warning) && stderr(&out).contains("add `lang: python` to its entry"),
        "{}",
        stderr(&out)
    );
    let declared = Scratch::with_config(&entry(" lang: python,"));
    let out = declared.herald_own(&["config", "check"]);
    assert_exit(&out, 0);
    assert!(!stderr(&out).contains(warning), "{}", stderr(&out));
}

/// The hostile Python rule, built, and `rule run` arguments for one event of `kind`.
fn hostile_run(kind: &str) -> (Built, Vec<String>) {
    let hostile = built("tests/rules/python-hostile");
    let events = hostile.dir.join(format!("{kind}.json"));
    let event = serde_json::json!({
        "id": "x-1", "source": "t", "type": kind, "time": "2026-11-23T09:00:00Z", "data": {}
    });
    std::fs::write(&events, event.to_string()).unwrap();
    let args = ["rule", "run", hostile.wasm.to_str().unwrap(), "--event"]
        .map(str::to_owned)
        .into_iter()
        .chain([events.to_str().unwrap().to_owned()])
        .collect();
    (hostile, args)
}

#[test]
fn a_python_exception_shows_its_traceback_in_rule_run_and_a_bad_setting_is_refused_at_load() {
    let (hostile, args) = hostile_run("test.raise");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let raised = herald_in(
        &hostile.dir,
        &[&args[..], &["--rule-config", "{misdeed: raise}"]].concat(),
    );
    assert_exit(&raised, 1);
    let report = stdout(&raised);
    assert!(
        report.contains("FAILED panic: KeyError: 'missing key, on purpose' (at app.py:")
            && report.contains("in raise_error)\nTraceback (most recent call last):"),
        "{report}"
    );
    // The traceback says it all; the interpreter's wasm frames are not shown.
    assert!(
        !stderr(&raised).contains("wasm backtrace"),
        "{}",
        stderr(&raised)
    );
    assert!(
        stderr(&raised).contains("of 64.0 MiB"),
        "{}",
        stderr(&raised)
    );

    let refused = herald_in(
        &hostile.dir,
        &[&args[..], &["--rule-config", "{misdeed: 3}"]].concat(),
    );
    assert_exit(&refused, 2);
    assert!(
        stderr(&refused).contains("invalid type: an integer, expected a string"),
        "{}",
        stderr(&refused)
    );
}

#[test]
fn a_missing_python_is_named_with_the_fix() {
    let tmp = tempfile::tempdir().unwrap();
    let made = herald_in(tmp.path(), &["rule", "new", "nopy", "--lang", "python"]);
    assert_exit(&made, 0);
    let out = Command::new(env!("CARGO_BIN_EXE_herald"))
        .current_dir(tmp.path().join("nopy"))
        .args(["rule", "build"])
        .env("XDG_CACHE_HOME", tmp.path().join("cache"))
        .env("HERALD_PYTHON", tmp.path().join("no-such-python"))
        .env_remove("HERALD_COMPONENTIZE_PY")
        .output()
        .unwrap();
    assert_exit(&out, 2);
    let text = stderr(&out);
    assert!(
        text.contains("installing componentize-py==0.25.1 into"),
        "{text}"
    );
    assert!(
        text.contains("install Python 3.10 or later (e.g. `apt install python3 python3-venv`)"),
        "{text}"
    );
}

#[test]
fn a_python_rule_sees_no_files_environment_or_sockets() {
    let (hostile, args) = hostile_run("test.escape");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let ran = herald_in(
        &hostile.dir,
        &[&args[..], &["--rule-config", "{misdeed: escape}"]].concat(),
    );
    assert_exit(&ran, 0);
    let report = stdout(&ran);
    for door in ["file", "listdir", "socket"] {
        assert!(
            report.contains(&format!("| {door}: refused (")),
            "{door}:\n{report}"
        );
    }
    assert!(report.contains("| environ: got None"), "{report}");
}
