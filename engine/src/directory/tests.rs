//! Unit tests of the directory: lookups, built-ins and every validation message.

use super::*;
use crate::config::{Diagnostic, at, expect_invalid};

const EXAMPLE: &str = "\
users:
  - {id: 0, name: root, first_name: root, last_name: root}
  - {id: 1, name: guest, first_name: Guest, last_name: Account}
  - {id: 2, name: alice, first_name: Alice, last_name: Liddell, email: alice@example.org}
groups:
  - {id: 0, name: system, members: [0, 2]}
  - {id: 1, name: user, members: [2]}
  - {id: 2, name: guest, members: [1]}
  - {id: 3, name: lab, members: [2], owners: [2]}
";

fn parse(text: &str) -> Result<Directory, DirectoryError> {
    Directory::parse(text, Path::new("etc/directory.yaml"))
}

/// The diagnostic of a directory that must fail.
fn fail(text: &str) -> Diagnostic {
    expect_invalid(parse(text))
}

fn names(users: &[&User]) -> Vec<String> {
    users.iter().map(|user| user.name().to_owned()).collect()
}

#[test]
fn the_documented_example_parses_and_answers_lookups() {
    let dir = parse(EXAMPLE).unwrap();
    assert_eq!(dir.users().len(), 3);
    assert_eq!(dir.groups().len(), 4);
    let alice = dir.user_by_name("alice").unwrap();
    assert_eq!(alice.id, 2);
    assert_eq!(dir.user_by_id(2), Some(alice));
    assert_eq!(dir.group_by_id(3).unwrap().name, "lab");
    assert_eq!(dir.group_by_name("lab").unwrap().owners, [2]);
    assert_eq!(dir.members("lab"), [(alice, true)]);
    assert_eq!(
        names(
            &dir.members("system")
                .iter()
                .map(|m| m.0)
                .collect::<Vec<_>>()
        ),
        ["root", "alice"]
    );
    assert!(dir.members("system").iter().all(|(_, owner)| !owner));
    assert!(dir.members("nope").is_empty());
    let groups: Vec<&str> = dir.groups_of(2).iter().map(|g| g.name.as_str()).collect();
    assert_eq!(groups, ["system", "user", "lab"]);
    assert_eq!(names(&dir.admins()), ["root", "alice"]);
    assert_eq!(names(&dir.active_users()), ["alice"]);
    assert!(dir.user_by_id(99).is_none() && dir.user_by_name("bob").is_none());
    assert!(dir.group_by_id(99).is_none() && dir.group_by_name("x").is_none());
}

#[test]
fn an_empty_file_gives_the_builtins() {
    for text in ["", "{}", "# nothing yet\n", "users:\ngroups:\n"] {
        let dir = parse(text).unwrap();
        let users: Vec<(i64, &str)> = dir.users().iter().map(|u| (u.id, u.name())).collect();
        assert_eq!(users, [(0, "root"), (1, "guest")], "{text:?}");
        let groups: Vec<(i64, &str)> = dir
            .groups()
            .iter()
            .map(|g| (g.id, g.name.as_str()))
            .collect();
        assert_eq!(groups, [(0, "system"), (1, "user"), (2, "guest")]);
    }
    let dir = Directory::default();
    let guest = dir.user_by_id(1).unwrap();
    assert_eq!(
        (guest.first_name(), guest.last_name()),
        (Some("Guest"), Some("Account"))
    );
    assert_eq!(names(&dir.admins()), ["root"]);
    assert_eq!(names(&dir.active_users()), ["root"]);
    assert_eq!(
        names(&dir.members("guest").iter().map(|m| m.0).collect::<Vec<_>>()),
        ["guest"]
    );
    assert_eq!(dir.user_by_name("root").unwrap().email(), None);
}

#[test]
fn missing_builtins_come_first_and_present_ones_are_kept() {
    let text = "users:\n  - {id: 5, name: bob}\n  - {id: 1, name: guest}\ngroups:\n  - {id: 1, name: user, members: [5]}\n";
    let dir = parse(text).unwrap();
    let ids: Vec<i64> = dir.users().iter().map(|u| u.id).collect();
    assert_eq!(ids, [0, 5, 1]);
    assert_eq!(
        dir.user_by_id(1).unwrap().first_name(),
        None,
        "the file's guest is kept as written"
    );
    let ids: Vec<i64> = dir.groups().iter().map(|g| g.id).collect();
    assert_eq!(ids, [0, 2, 1]);
    assert_eq!(names(&dir.active_users()), ["bob"]);
    assert_eq!(names(&dir.admins()), ["root"]);
}

#[test]
fn number_like_names_stay_text() {
    let dir = parse("users:\n  - {id: 7, name: 0123}\ngroups:\n  - {id: 8, name: 2024}\n").unwrap();
    assert_eq!(dir.user_by_id(7).unwrap().name(), "0123");
    assert_eq!(dir.group_by_id(8).unwrap().name, "2024");
}

#[test]
fn members_may_be_builtin_users_not_listed_in_the_file() {
    let dir = parse("groups:\n  - {id: 3, name: lab, members: [0, 1], owners: [0]}\n").unwrap();
    let members: Vec<(&str, bool)> = dir
        .members("lab")
        .iter()
        .map(|(u, o)| (u.name(), *o))
        .collect();
    assert_eq!(members, [("root", true), ("guest", false)]);
}

#[test]
fn duplicate_user_id_points_at_the_second_with_a_fix() {
    let d = fail("users:\n  - {id: 2, name: alice}\n  - {id: 2, name: bob}\n");
    assert_eq!((d.location, d.path.as_str()), (at(3, 10), "users[1].id"));
    assert_eq!(
        d.message,
        "user id `2` is already used by users[0] (line 2)"
    );
    assert_eq!(d.fix, "give each user their own OMERO id");
    assert!(
        d.to_string()
            .starts_with("etc/directory.yaml:3:10: users[1].id: user id `2`")
    );
}

#[test]
fn duplicate_user_name_is_an_error() {
    let d = fail("users:\n  - id: 2\n    name: alice\n  - id: 3\n    name: alice\n");
    assert_eq!((d.location, d.path.as_str()), (at(5, 11), "users[1].name"));
    assert!(
        d.message
            .contains("user name `alice` is already used by users[0] (line 2)")
    );
    assert!(d.fix.contains("remove or rename"));
}

#[test]
fn duplicate_group_id_and_name_are_errors() {
    let d = fail("groups:\n  - {id: 3, name: a}\n  - {id: 3, name: b}\n");
    assert_eq!((d.path.as_str(), d.location), ("groups[1].id", at(3, 10)));
    assert_eq!(d.fix, "give each group its own OMERO id");
    let d = fail("groups:\n  - {id: 3, name: a}\n  - {id: 4, name: a}\n");
    assert_eq!(d.path, "groups[1].name");
    assert!(d.message.contains("group name `a`"), "{}", d.message);
}

#[test]
fn a_member_or_owner_must_be_a_user() {
    let d = fail("groups:\n  - {id: 3, name: lab, members: [0, 9]}\n");
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(2, 37), "groups[0].members[1]")
    );
    assert_eq!(
        d.message,
        "group `lab` lists 9 in members, but no user has id 9"
    );
    assert!(
        d.fix.contains("add a user with id 9 under `users:`"),
        "{}",
        d.fix
    );
    let d = fail("groups:\n  - {id: 3, name: lab, members: [0], owners: [7]}\n");
    assert_eq!(d.path, "groups[0].owners[0]");
}

#[test]
fn an_owner_must_be_a_member() {
    let d = fail(
        "users:\n  - {id: 2, name: alice}\ngroups:\n  - id: 3\n    name: lab\n    members: [0]\n    owners: [2]\n",
    );
    assert_eq!(
        (d.location, d.path.as_str()),
        (at(7, 14), "groups[0].owners[0]")
    );
    assert_eq!(
        d.message,
        "user 2 owns group `lab` but is not one of its members"
    );
    assert!(
        d.fix.starts_with("add 2 to the group's members"),
        "{}",
        d.fix
    );
}

#[test]
fn a_member_listed_twice_is_an_error() {
    let d = fail("groups:\n  - {id: 3, name: lab, members: [0, 0]}\n");
    assert_eq!(d.path, "groups[0].members[1]");
    assert_eq!(d.fix, "remove the repeated id");
}

#[test]
fn unknown_keys_and_missing_names_are_reported_with_lines() {
    let d = fail("users:\n  - {id: 2, name: alice, mail: a@b.c}\n");
    assert_eq!((d.location, d.path.as_str()), (at(2, 26), "users[0].mail"));
    assert!(
        d.message
            .starts_with("unknown field `mail`, expected one of"),
        "{}",
        d.message
    );
    assert!(d.fix.starts_with("remove `mail`"));
    let d = fail("users:\n  - {id: 2}\n");
    assert_eq!(
        (d.path.as_str(), d.message.as_str()),
        ("users[0]", "missing field `name`")
    );
    let d = fail("users:\n  - {id: 2, name: \" \"}\n");
    assert_eq!(d.path, "users[0].name");
    let d = fail("people: []\n");
    assert!(
        d.message.contains("expected `users` or `groups`"),
        "{}",
        d.message
    );
}

#[test]
fn a_builtin_name_with_another_id_is_an_error() {
    let d = fail("users:\n  - {id: 5, name: root}\n");
    assert_eq!(d.path, "users[0].id");
    assert_eq!(
        d.message,
        "`root` is OMERO's built-in user with id 0, but here it has id 5"
    );
    assert_eq!(d.fix, "give `root` id 0, or rename this user");
    let d = fail("groups:\n  - {id: 7, name: system}\n");
    assert_eq!(d.path, "groups[0].id");
    assert!(parse("users:\n  - {id: 0, name: admin}\n  - {id: 5, name: root}\n").is_ok());
}

#[test]
fn invalid_emails_are_kept_but_not_valid() {
    let text = "users:\n  - {id: 2, name: a, email: \" alice@example.org \"}\n  - {id: 3, name: b, email: not-an-email}\n  - {id: 4, name: c, email: \"\"}\n";
    let dir = parse(text).unwrap();
    let email = |id| valid_email(dir.user_by_id(id).unwrap()).map(|a| a.to_string());
    assert_eq!(email(2).as_deref(), Some("alice@example.org"));
    assert_eq!(dir.user_by_id(3).unwrap().email(), Some("not-an-email"));
    assert_eq!(email(3), None);
    assert_eq!(email(4), None);
    assert_eq!(email(0), None);
}

#[test]
fn users_serialize_to_the_shared_shape() {
    let dir = parse(EXAMPLE).unwrap();
    let json = serde_json::to_value(dir.user_by_id(2).unwrap()).unwrap();
    let expected = serde_json::json!({"id": 2, "name": "alice", "first_name": "Alice", "last_name": "Liddell", "email": "alice@example.org"});
    assert_eq!(json, expected);
    let root = serde_json::to_value(dir.user_by_id(0).unwrap()).unwrap();
    assert_eq!(
        root,
        serde_json::json!({"id": 0, "name": "root", "first_name": "root", "last_name": "root"})
    );
}

#[test]
fn load_reads_the_file_and_explains_a_missing_one() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("directory.yaml");
    std::fs::write(&file, EXAMPLE).unwrap();
    assert_eq!(Directory::load(&file).unwrap().users().len(), 3);
    let err = Directory::load(&dir.path().join("none.yaml")).unwrap_err();
    assert!(matches!(err, DirectoryError::Read { .. }));
    let text = err.to_string();
    assert!(
        text.starts_with("cannot read directory ") && text.contains("none.yaml"),
        "{text}"
    );
    assert!(text.contains("\n  fix: create it"), "{text}");
}

/// `text` loaded from a file `chunk` entries at a time, and whether it was streamed.
fn load_chunked(text: &str, chunk: usize) -> (Result<Directory, String>, bool) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("directory.yaml");
    std::fs::write(&file, text).unwrap();
    let streamed = stream::entries(&file, chunk).is_some();
    let loaded = Directory::load_in_chunks(&file, chunk).map_err(|err| err.to_string());
    (loaded, streamed)
}

/// The whole-text parse, as `load_chunked` names the file.
fn parse_whole(text: &str) -> Result<Directory, String> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("directory.yaml");
    Directory::parse(text, &file)
        .map_err(|err| err.to_string())
        .map_err(|err| err.replace(&dir.path().display().to_string(), "DIR"))
}

fn same(a: &Result<Directory, String>, b: &Result<Directory, String>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.users() == b.users() && a.groups() == b.groups(),
        (Err(a), Err(b)) => {
            // The two messages name different temporary directories.
            let tail = |s: &str| s.split_once("directory.yaml").map(|(_, t)| t.to_owned());
            tail(a) == tail(b)
        }
        _ => false,
    }
}

/// Block and quoted scalars, comments, blank lines, and a list written at column 0.
const UNUSUAL: &str = "\
# The facility's users.

users:
- id: 2
  name: alice
  first_name: |
    Alice
    - not an entry

  last_name: \"Lid
    - dell\"
# between entries
- {id: 3, name: bob, email: bob@example.org}
-   id: 4
    name: carol
groups:
  - {id: 3, name: lab, members: [2, 3, 4], owners: [2]}
  # the last group
  - id: 4
    name: \"- dashed\"
    members:
      - 3
";

#[test]
fn a_file_read_in_chunks_gives_the_entries_of_the_whole_parse() {
    let mut generated = String::from("users:\n");
    for id in 2..40 {
        generated.push_str(&format!(
            "  - {{id: {id}, name: u{id}, email: u{id}@example.org}}\n"
        ));
    }
    generated.push_str("groups:\n  - {id: 3, name: lab, members: [2, 39]}\n");
    for text in [EXAMPLE, UNUSUAL, generated.as_str()] {
        for chunk in [1, 2, 7, 512] {
            let (loaded, streamed) = load_chunked(text, chunk);
            assert!(streamed, "chunk {chunk}: not streamed:\n{text}");
            let whole = parse_whole(text);
            assert!(
                whole.is_ok() && same(&loaded, &whole),
                "chunk {chunk}:\n{text}"
            );
        }
    }
    let (loaded, _) = load_chunked(UNUSUAL, 1);
    let dir = loaded.unwrap();
    let alice = dir.user_by_id(2).unwrap();
    assert_eq!(alice.first_name(), Some("Alice\n- not an entry\n"));
    assert_eq!(alice.last_name(), Some("Lid - dell"));
    assert_eq!(dir.group_by_id(4).unwrap().name, "- dashed");
}

#[test]
fn a_file_the_chunks_cannot_take_is_parsed_whole_with_the_same_result_or_error() {
    // (text, whether the chunks take it: then only a check fails, which the whole parse explains)
    let cases = [
        // Not in the usual shape: read whole.
        ("---\nusers:\n  - {id: 2, name: a}\n", false),
        ("users: [{id: 2, name: a}]\n", false),
        (
            "users:\n  - {id: 2, name: a}\nusers:\n  - {id: 3, name: b}\n",
            false,
        ),
        ("users:\n  - {id: 2, name: a}\nextra: 1\n", false),
        ("users:\n\t- {id: 2, name: a}\n", false),
        ("users:\n  name: a\n", false),
        ("  users:\n  - {id: 2, name: a}\n", false),
        // In the shape, but a run does not parse alone: read whole.
        (
            "users:\n  - {id: 2, name: &n a}\n  - {id: 3, name: b, last_name: *n}\n",
            false,
        ),
        (
            "users:\n  - {id: 2, name: \"a\n  - b\"}\n  - {id: 3, name: c}\n",
            false,
        ),
        ("users:\n  - {id: 2, name: a, nick: x}\n", false),
        // A check fails: explained by the whole parse.
        ("users:\n  - {id: 2, name: a}\n  - {id: 2, name: b}\n", true),
        (
            "users:\n  - {id: 2, name: a}\ngroups:\n  - {id: 3, name: lab, members: [9]}\n",
            true,
        ),
    ];
    for (text, streams) in cases {
        let (loaded, streamed) = load_chunked(text, 1);
        let whole = parse_whole(text);
        assert!(same(&loaded, &whole), "{text}\n{loaded:?}\n{whole:?}");
        assert_eq!(streamed, streams, "{text}");
    }
    let (aliased, _) = load_chunked(cases[7].0, 1);
    assert_eq!(
        aliased.unwrap().user_by_id(3).unwrap().last_name(),
        Some("a")
    );
    let (dup, _) = load_chunked(cases[10].0, 1);
    let dup = dup.unwrap_err();
    assert!(
        dup.contains("directory.yaml:3:10: users[1].id"),
        "names the line: {dup}"
    );
}
