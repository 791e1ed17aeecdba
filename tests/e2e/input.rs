//! Bad input gets a clear error, exit code 2, and nothing is stored.

use crate::support::{Scratch, assert_exit, stderr};

fn send(scratch: &Scratch, content: &str) -> std::process::Output {
    let file = scratch.path("input.jsonl");
    std::fs::write(&file, content).unwrap();
    scratch.herald(&["send", file.to_str().unwrap()])
}

fn nothing_stored(scratch: &Scratch) {
    let db = scratch.path("var/herald.db");
    if db.exists() {
        assert_eq!(scratch.count("SELECT count(*) FROM events"), 0);
    }
}

#[test]
fn an_event_that_is_not_json_is_refused() {
    let scratch = Scratch::new();
    let out = send(
        &scratch,
        "{\"id\":\"a\",\"source\":\"s\",\"type\":\"t\"}\nthis is not json\n",
    );
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("line 2: not valid JSON"), "{err}");
    assert!(err.contains("nothing was stored"), "{err}");
    nothing_stored(&scratch);
}

#[test]
fn a_missing_id_is_refused() {
    let scratch = Scratch::new();
    let out = send(
        &scratch,
        r#"{"source":"s","type":"omero.server.up","data":{"server":"x"}}"#,
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("missing required field `id`"),
        "{}",
        stderr(&out)
    );
    nothing_stored(&scratch);
}

#[test]
fn bad_typed_data_names_the_field() {
    let scratch = Scratch::new();
    let out = send(
        &scratch,
        r#"{"id":"x","source":"s","type":"omero.user.created","data":{"user":{"name":"bob"}}}"#,
    );
    assert_exit(&out, 2);
    assert!(
        stderr(&out).contains("event x: data.user: missing field `id`"),
        "{}",
        stderr(&out)
    );
    nothing_stored(&scratch);
}

#[test]
fn a_duplicate_id_is_stored_once() {
    let scratch = Scratch::new();
    let event = r#"{"id":"d1","source":"s","type":"omero.server.up","data":{"server":"x"}}"#;
    assert_exit(&send(&scratch, event), 0);
    let again = send(&scratch, event);
    assert_exit(&again, 0);
    assert!(String::from_utf8_lossy(&again.stdout).contains("0 new event(s), 1 duplicate(s)"));
    assert_eq!(scratch.count("SELECT count(*) FROM events"), 1);
}

#[test]
fn a_config_with_an_unknown_key_names_key_line_and_fix() {
    let scratch = Scratch::with_config("state_dir: var\nmail:\n  form: omero@localhost\n");
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("herald.yaml:3"), "no line in {err}");
    assert!(err.contains("mail"), "no key in {err}");
    assert!(err.contains("unknown field `form`"), "{err}");
    assert!(err.contains("from"), "no fix in {err}");
}

#[test]
fn a_config_with_a_bad_value_names_key_line_and_fix() {
    let yaml = "state_dir: var\nrules:\n  - name: new-user\n    module: builtin:new-user\n    on: [omero.user.created]\n    limits: {fuel: lots}\n";
    let scratch = Scratch::with_config(yaml);
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("herald.yaml:6"), "no line in {err}");
    assert!(err.contains("rules[0].limits.fuel"), "no key in {err}");
}

#[test]
fn an_unknown_builtin_is_named_with_the_choices() {
    let yaml = "state_dir: var\nrules:\n  - {name: x, module: builtin:no-such-rule, on: [omero.user.created]}\n";
    let scratch = Scratch::with_config(yaml);
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 2);
    let err = stderr(&out);
    assert!(err.contains("no-such-rule"), "{err}");
    assert!(
        err.contains("new-user"),
        "the choices are not listed: {err}"
    );
}

#[test]
fn the_shipped_config_checks() {
    let scratch = Scratch::new();
    let out = scratch.herald(&["config", "check"]);
    assert_exit(&out, 0);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rule new-user: on omero.user.created"));
}

#[test]
fn no_admin_email_is_warned_about_with_the_fix() {
    let scratch = Scratch::with_config("state_dir: var\nrules: []\n");
    std::fs::write(
        scratch.path("directory.yaml"),
        "users:\n  - {id: 2, name: alice, email: alice@example.org}\ngroups:\n  - {id: 1, name: user, members: [2]}\n",
    )
    .unwrap();
    let out = scratch.herald_own(&["config", "check"]);
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(
        err.contains("no admin (member of the `system` group) has a valid email"),
        "{err}"
    );
    assert!(
        err.contains("fix: give root, or another member of `system`, an `email:`"),
        "{err}"
    );
}
