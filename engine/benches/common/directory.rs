//! A generated OMERO directory file of any size, for the benchmarks that scale with it.

use std::fmt::Write as _;
use std::path::Path;

/// Admins (members of `system`) in every generated directory, beside root: two mails per new
/// user, as with the sample directory.
pub const ADMINS: usize = 2;
/// Lab groups; each has `users / LABS` members and its first member as owner.
pub const LABS: usize = 100;

/// Write a directory of `users` active users (ids from 2), with email, in `LABS` labs.
pub fn write(path: &Path, users: usize) {
    let mut text = String::with_capacity(users * 96);
    text.push_str("users:\n");
    for id in 2..users + 2 {
        let _ = writeln!(
            text,
            "  - {{id: {id}, name: u{id}, first_name: First{id}, last_name: Last{id}, email: u{id}@example.org}}"
        );
    }
    text.push_str("groups:\n");
    let ids = |range: std::ops::Range<usize>| {
        range
            .map(|id| id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        text,
        "  - {{id: 0, name: system, members: [0, {}]}}",
        ids(2..2 + ADMINS.min(users))
    );
    let _ = writeln!(
        text,
        "  - {{id: 1, name: user, members: [{}]}}",
        ids(2..users + 2)
    );
    text.push_str("  - {id: 2, name: guest, members: [1]}\n");
    let per_lab = (users / LABS).max(1);
    for lab in 0..LABS.min(users) {
        let first = 2 + lab * per_lab;
        let _ = writeln!(
            text,
            "  - {{id: {}, name: lab{lab}, members: [{}], owners: [{first}]}}",
            lab + 3,
            ids(first..first + per_lab)
        );
    }
    std::fs::write(path, text).expect("write the generated directory");
}
