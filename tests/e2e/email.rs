//! `herald email`: OMERO's `admin email` arguments, error order, output lines and exit codes.

use crate::support::{Scratch, assert_exit, stderr, stdout};

fn email(scratch: &Scratch, args: &[&str]) -> std::process::Output {
    let mut all = vec!["email"];
    all.extend_from_slice(args);
    scratch.herald(&all)
}

#[test]
fn no_recipients_is_no_body_exit_12() {
    let scratch = Scratch::new();
    let out = email(&scratch, &["Subject", "Body"]);
    assert_exit(&out, 12);
    assert_eq!(
        stderr(&out).trim(),
        "ApiUsageException:No recipients specified."
    );
    assert!(
        !scratch.path("var/herald.db").exists(),
        "nothing may be queued"
    );
}

#[test]
fn unknown_names_are_dropped_and_then_no_recipients() {
    let scratch = Scratch::new();
    let out = email(
        &scratch,
        &["--user-name", "nobody", "--group-id", "99", "S", "B"],
    );
    assert_exit(&out, 12);
    let err = stderr(&out);
    assert!(err.contains("Unknown user: nobody"), "{err}");
    assert!(err.contains("Unknown group: 99"), "{err}");
    assert!(
        err.contains("ApiUsageException:No recipients specified."),
        "{err}"
    );
}

#[test]
fn blank_subject_is_no_subject_exit_13() {
    let scratch = Scratch::new();
    let out = email(&scratch, &["--everyone", " ", "Body"]);
    assert_exit(&out, 13);
    assert_eq!(
        stderr(&out).trim(),
        "Failed to send emails:\nno-subject: Email must contain subject."
    );
}

#[test]
fn empty_body_from_stdin_is_no_body_exit_12() {
    let scratch = Scratch::new();
    let out = email(&scratch, &["--everyone", "Subject"]);
    assert_exit(&out, 12);
    assert_eq!(
        stderr(&out).trim(),
        "ApiUsageException:Email must contain body."
    );
}

#[test]
fn blank_sender_is_no_sender_exit_13_before_the_subject_check() {
    let yaml = "state_dir: var\nmail: {from: \"\"}\nrules:\n  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}\n";
    let scratch = Scratch::with_config(yaml);
    let out = scratch.herald_own(&["email", "--everyone", "", "Body"]);
    assert_exit(&out, 13);
    assert_eq!(
        stderr(&out).trim(),
        "Failed to send emails:\nno-sender: mail.from cannot be empty."
    );
}

#[test]
fn everyone_with_users_warns_and_wait_reports_real_results() {
    let scratch = Scratch::new();
    let out = email(
        &scratch,
        &[
            "--everyone",
            "--user-name",
            "dave",
            "--extra",
            "ext@example.net",
            "--extra",
            "not-an-address",
            "--wait",
            "10",
            "Maintenance",
            "The",
            "server",
            "restarts",
            "at",
            "noon.",
        ],
    );
    assert_exit(&out, 0);
    let err = stderr(&out);
    assert!(err.contains("Warning: users and groups ignored"), "{err}");
    assert!(
        err.contains("Invalid email address: not-an-address"),
        "{err}"
    );
    // Active users: alice, bob (sent), carol (no email); plus the valid extra.
    assert_eq!(
        stdout(&out),
        "Successfully sent 3 of 3 emails\n1 users had no email address\n1 email addresses were invalid\n"
    );
    let mails = scratch.mails();
    assert_eq!(mails.len(), 3);
    let body = String::from_utf8_lossy(&mails[0].1).into_owned();
    assert!(
        body.contains("Subject: Maintenance\r\n"),
        "no prefix is added: {body}"
    );
    assert!(body.contains("The server restarts at noon."), "{body}");
}

#[test]
fn inactive_members_are_filtered_unless_asked_for() {
    let active = Scratch::new();
    let out = email(&active, &["--group-name", "lab", "--wait", "10", "S", "B"]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "Successfully sent 2 of 2 emails\n");
    let all = Scratch::new();
    let out = email(
        &all,
        &[
            "--group-name",
            "lab",
            "--inactive",
            "--wait",
            "10",
            "S",
            "B",
        ],
    );
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), "Successfully sent 3 of 3 emails\n");
    assert!(
        all.mails()
            .iter()
            .any(|(name, _)| name.contains("dave@example.org"))
    );
}

#[test]
fn without_wait_the_broadcast_is_queued_durably_then_delivered() {
    let scratch = Scratch::new();
    let out = email(
        &scratch,
        &["--user-id", "2", "--user-id", "4", "Hello", "-"],
    );
    // `-` reads the body from stdin, which is empty here: no-body.
    assert_exit(&out, 12);
    let out = email(
        &scratch,
        &["--user-id", "2", "--user-id", "4", "Hello", "Body"],
    );
    assert_exit(&out, 0);
    assert_eq!(
        stdout(&out),
        "Queued 1 emails\n1 users had no email address\n"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        1
    );
    assert!(scratch.mails().is_empty());
    assert_exit(&scratch.herald(&["deliver", "--until-empty"]), 0);
    assert_eq!(scratch.mails().len(), 1);
}

/// A directory of `n` active users with an email each (ids from 10), beside OMERO's built-ins.
fn big_directory(n: usize) -> String {
    let mut yaml = String::from("users:\n");
    for i in 0..n {
        let id = 10 + i;
        yaml.push_str(&format!(
            "  - {{id: {id}, name: user{id}, email: user{id}@example.org}}\n"
        ));
    }
    let members: Vec<String> = (0..n).map(|i| (10 + i).to_string()).collect();
    yaml.push_str(&format!(
        "groups:\n  - {{id: 1, name: user, members: [{}]}}\n",
        members.join(", ")
    ));
    yaml
}

/// Users the broadcast test reaches: past the 10,000 at which the rule, lifting every user into
/// the sandbox, ran out of its default fuel; the engine now expands `active-users` itself.
const EVERYONE: usize = 20_000;

#[test]
fn everyone_reaches_20000_users_with_one_outbox_row_each() {
    let shipped = std::fs::read_to_string(crate::support::repo().join("etc/herald.yaml")).unwrap();
    let scratch = Scratch::with_config(&shipped);
    std::fs::write(scratch.path("directory.yaml"), big_directory(EVERYONE)).unwrap();
    let out = scratch.herald_own(&["email", "--everyone", "Maintenance", "Downtime at noon."]);
    assert_exit(&out, 0);
    assert_eq!(stdout(&out), format!("Queued {EVERYONE} emails\n"));
    let rows = EVERYONE as i64;
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE state = 'queued'"),
        rows
    );
    assert_eq!(
        scratch.count("SELECT count(DISTINCT recipient) FROM outbox"),
        rows
    );
}

#[test]
fn the_recipient_cap_still_guards_rules_without_an_override() {
    let yaml = "state_dir: var\nrules:\n  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}\n";
    let scratch = Scratch::with_config(yaml);
    std::fs::write(scratch.path("directory.yaml"), big_directory(1001)).unwrap();
    let out = scratch.herald_own(&["email", "--everyone", "S", "B"]);
    assert_exit(&out, 13);
    let err = stderr(&out);
    assert!(
        err.contains("1001 recipients after expansion; the cap is 1000 (limits.max_recipients)"),
        "{err}"
    );
    assert_eq!(scratch.count("SELECT count(*) FROM outbox"), 0);
}
