//! Unit tests for the `broadcast` rule.

use super::*;
use herald_sdk::log::LogLevel;
use herald_sdk::testing::{TestHost, event};

fn user(id: i64, name: &str) -> User {
    User {
        id,
        name: name.into(),
        first_name: None,
        last_name: None,
        email: Some(format!("{name}@example.org")),
    }
}

/// root 0 and guest 1 (built-ins), alice 2 (admin, active, lab owner),
/// bob 3 (active, lab), carol 4 (inactive, lab), dave 5 (active, imaging).
fn host() -> TestHost {
    let mut host = TestHost::new();
    for (id, name) in [
        (0, "root"),
        (1, "guest"),
        (2, "alice"),
        (3, "bob"),
        (4, "carol"),
        (5, "dave"),
    ] {
        host = host.user(user(id, name));
    }
    host.member("system", 0, false)
        .member("system", 2, false)
        .member("user", 0, false)
        .member("user", 2, false)
        .member("user", 3, false)
        .member("user", 5, false)
        .member("guest", 1, false)
        .member("lab", 2, true)
        .member("lab", 3, false)
        .member("lab", 4, false)
        .member("imaging", 5, false)
}

fn broadcast() -> Broadcast {
    Broadcast {
        subject: "Maintenance on Friday".into(),
        body: "OMERO will be down from 18:00.\n".into(),
        html: None,
        everyone: false,
        inactive: false,
        user_ids: vec![],
        user_names: vec![],
        group_ids: vec![],
        group_names: vec![],
        extra: vec![],
    }
}

fn run(b: Broadcast) -> Vec<Message> {
    host().install();
    BroadcastRule::handle(event("herald.broadcast", Payload::Broadcast(b))).unwrap()
}

fn to(out: &[Message]) -> String {
    format!("{:?}", out[0].to).replace("Recipient::", "")
}

fn warnings() -> Vec<String> {
    TestHost::current()
        .logs
        .into_iter()
        .filter(|(level, _)| matches!(level, LogLevel::Warn))
        .map(|(_, text)| text)
        .collect()
}

#[test]
fn everyone_means_active_users_as_given() {
    let out = run(Broadcast {
        everyone: true,
        ..broadcast()
    });
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].subject, "Maintenance on Friday");
    assert_eq!(out[0].text, "OMERO will be down from 18:00.\n");
    assert_eq!(out[0].html, None);
    assert_eq!(out[0].addressing, herald_sdk::Addressing::Individual);
    // The engine expands the active users itself.
    assert_eq!(to(&out), "[ActiveUsers]");
    assert!(warnings().is_empty());
}

#[test]
fn everyone_inactive_means_every_user() {
    let out = run(Broadcast {
        everyone: true,
        inactive: true,
        ..broadcast()
    });
    assert_eq!(
        to(&out),
        "[UserId(0), UserId(1), UserId(2), UserId(3), UserId(4), UserId(5)]"
    );
}

#[test]
fn everyone_ignores_users_and_groups_with_a_warning() {
    let out = run(Broadcast {
        everyone: true,
        user_ids: vec![4],
        group_names: vec!["lab".into()],
        ..broadcast()
    });
    assert_eq!(to(&out), "[ActiveUsers]");
    assert_eq!(
        warnings(),
        ["broadcast: users and groups ignored (everyone is set)"]
    );
}

#[test]
fn group_by_name_drops_inactive_members() {
    let out = run(Broadcast {
        group_names: vec!["lab".into()],
        ..broadcast()
    });
    assert_eq!(to(&out), "[UserId(2), UserId(3)]");
}

#[test]
fn group_by_name_with_inactive_keeps_them() {
    let out = run(Broadcast {
        group_names: vec!["lab".into()],
        inactive: true,
        ..broadcast()
    });
    assert_eq!(to(&out), "[UserId(2), UserId(3), UserId(4)]");
}

#[test]
fn union_of_ids_names_and_groups_without_duplicates() {
    host().install();
    let imaging_id = directory::group_by_name("imaging").unwrap().id;
    let out = run(Broadcast {
        user_ids: vec![3, 2],
        user_names: vec!["alice".into(), "dave".into()],
        group_ids: vec![imaging_id],
        group_names: vec!["lab".into()],
        ..broadcast()
    });
    assert_eq!(to(&out), "[UserId(3), UserId(2), UserId(5)]");
}

#[test]
fn unknown_names_and_ids_are_warned_and_skipped() {
    let out = run(Broadcast {
        user_ids: vec![4, 6, 99],
        user_names: vec!["nobody".into(), "bob".into()],
        group_ids: vec![42],
        group_names: vec!["ghosts".into()],
        extra: vec!["visitor@example.net".into()],
        ..broadcast()
    });
    // carol (4) is inactive, 6 and 99 do not exist.
    assert_eq!(to(&out), r#"[UserId(3), Address("visitor@example.net")]"#);
    assert_eq!(
        warnings(),
        [
            "broadcast: unknown user id 6, skipped",
            "broadcast: unknown user id 99, skipped",
            "broadcast: unknown user name 'nobody', skipped",
            "broadcast: unknown group id 42, skipped",
            "broadcast: unknown group name 'ghosts', skipped",
        ]
    );
}

#[test]
fn extra_addresses_only() {
    let out = run(Broadcast {
        extra: vec!["a@example.net".into(), "b@example.net".into()],
        ..broadcast()
    });
    assert_eq!(
        to(&out),
        r#"[Address("a@example.net"), Address("b@example.net")]"#
    );
}

#[test]
fn everyone_plus_extra() {
    let out = run(Broadcast {
        everyone: true,
        extra: vec!["v@example.net".into()],
        ..broadcast()
    });
    assert_eq!(to(&out), r#"[ActiveUsers, Address("v@example.net")]"#);
}

#[test]
fn html_part_is_passed_through() {
    let out = run(Broadcast {
        user_names: vec!["bob".into()],
        html: Some("<p>Down <b>Friday</b></p>".into()),
        ..broadcast()
    });
    assert_eq!(out[0].html.as_deref(), Some("<p>Down <b>Friday</b></p>"));
    assert_eq!(out[0].text, "OMERO will be down from 18:00.\n");
}

#[test]
fn nobody_left_sends_nothing() {
    let out = run(Broadcast {
        user_names: vec!["carol".into()],
        ..broadcast()
    });
    assert!(out.is_empty());
    assert_eq!(
        warnings(),
        ["broadcast: no recipients left after resolving users and groups"]
    );
}

#[test]
fn inactive_user_by_id_with_inactive() {
    let out = run(Broadcast {
        user_ids: vec![4],
        inactive: true,
        ..broadcast()
    });
    assert_eq!(to(&out), "[UserId(4)]");
}

#[test]
fn any_config_key_is_an_error() {
    host()
        .config(serde_json::json!({"mode": "enriched"}))
        .install();
    let ev = event("herald.broadcast", Payload::Broadcast(broadcast()));
    let err = BroadcastRule::handle(ev).unwrap_err();
    assert!(err.contains("unknown field `mode`"), "{err}");
}
