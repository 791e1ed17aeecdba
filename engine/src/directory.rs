//! The directory file (`etc/directory.yaml`): OMERO's users and groups, with the built-ins filled in.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{Diagnostic, Seg, at_line, diagnostic_at, locate, parse_yaml};

/// OMERO's `root` user id.
const ROOT: i64 = 0;
/// OMERO's `guest` user id.
const GUEST: i64 = 1;
/// OMERO's `system` group id: its members are the admins.
const SYSTEM_GROUP: i64 = 0;
/// OMERO's `user` group id: its members are the active users.
const USER_GROUP: i64 = 1;
/// OMERO's `guest` group id.
const GUEST_GROUP: i64 = 2;

/// An OMERO user (experimenter). Serializes to the shared `User` shape of events.md.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct User {
    /// OMERO's id.
    pub id: i64,
    /// The OMERO name (omeName).
    pub name: String,
    /// The first name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    /// The last name, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    /// The email as written, valid or not; see [`valid_email`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// An OMERO group.
#[derive(Clone, Debug, PartialEq)]
pub struct Group {
    /// OMERO's id.
    pub id: i64,
    /// The group name.
    pub name: String,
    /// The member user ids, in file order.
    pub members: Vec<i64>,
    /// The member ids that own the group (always a subset of `members`).
    pub owners: Vec<i64>,
}

/// The users and groups Herald resolves recipients against.
#[derive(Clone, Debug)]
pub struct Directory {
    users: Vec<User>,
    groups: Vec<Group>,
    user_ids: HashMap<i64, usize>,
    user_names: HashMap<String, usize>,
    group_ids: HashMap<i64, usize>,
    group_names: HashMap<String, usize>,
}

/// Why the directory file could not be loaded. Its `Display` names the file, line, key path and fix.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// The file could not be read.
    #[error(
        "cannot read directory {}: {error}\n  fix: create it (users and groups, see the example \
         etc/directory.yaml) or point `directory.path` in the config at it",
        file.display()
    )]
    Read {
        /// The directory file.
        file: PathBuf,
        /// The I/O error.
        error: io::Error,
    },
    /// The file was read but is not a valid directory.
    #[error("{0}")]
    Invalid(Diagnostic),
}

impl DirectoryError {
    /// Where and what the problem is, unless the file could not be read at all.
    pub fn diagnostic(&self) -> Option<&Diagnostic> {
        match self {
            DirectoryError::Read { .. } => None,
            DirectoryError::Invalid(diagnostic) => Some(diagnostic),
        }
    }
}

impl From<Diagnostic> for DirectoryError {
    fn from(diagnostic: Diagnostic) -> Self {
        DirectoryError::Invalid(diagnostic)
    }
}

/// The user's email if it is non-empty and parses as an address (trimmed), else `None`.
pub fn valid_email(user: &User) -> Option<lettre::Address> {
    user.email.as_deref()?.trim().parse().ok()
}

impl Default for Directory {
    /// Only OMERO's built-in users and groups.
    fn default() -> Self {
        Directory::assemble(Vec::new(), Vec::new())
    }
}

impl Directory {
    /// Read and validate the directory file at `path`.
    pub fn load(path: &Path) -> Result<Directory, DirectoryError> {
        let text = std::fs::read_to_string(path).map_err(|error| DirectoryError::Read {
            file: path.to_path_buf(),
            error,
        })?;
        Self::parse(&text, path)
    }

    /// Parse and validate directory text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Directory, DirectoryError> {
        let raw: RawDirectory = parse_yaml(text, origin, directory_hint)?;
        let users: Vec<User> = raw
            .users
            .unwrap_or_default()
            .into_iter()
            .map(User::from)
            .collect();
        let groups: Vec<Group> = raw
            .groups
            .unwrap_or_default()
            .into_iter()
            .map(Group::from)
            .collect();
        let check = Checker { text, origin };
        check.users(&users)?;
        check.groups(&groups)?;
        check.builtin_names(&users, &groups)?;
        let known: HashSet<i64> = users
            .iter()
            .map(|user| user.id)
            .chain([ROOT, GUEST])
            .collect();
        for (index, group) in groups.iter().enumerate() {
            check.membership(index, group, &known)?;
        }
        Ok(Directory::assemble(users, groups))
    }

    /// The user with OMERO id `id`.
    pub fn user_by_id(&self, id: i64) -> Option<&User> {
        self.user_ids.get(&id).map(|&index| &self.users[index])
    }

    /// The user with OMERO name `name`.
    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.user_names.get(name).map(|&index| &self.users[index])
    }

    /// The group with OMERO id `id`.
    pub fn group_by_id(&self, id: i64) -> Option<&Group> {
        self.group_ids.get(&id).map(|&index| &self.groups[index])
    }

    /// The group called `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.group_names.get(name).map(|&index| &self.groups[index])
    }

    /// The members of the group called `group`, in member order, each with whether they own it;
    /// empty for an unknown group.
    pub fn members(&self, group: &str) -> Vec<(&User, bool)> {
        self.group_by_name(group)
            .map_or_else(Vec::new, |group| self.members_of(group))
    }

    /// The groups `user_id` is a member of, in file order.
    pub fn groups_of(&self, user_id: i64) -> Vec<&Group> {
        self.groups
            .iter()
            .filter(|group| group.members.contains(&user_id))
            .collect()
    }

    /// The admins: members of `system` (id 0), with a valid email or not.
    pub fn admins(&self) -> Vec<&User> {
        self.users_in(SYSTEM_GROUP)
    }

    /// The active users: members of `user` (id 1).
    pub fn active_users(&self) -> Vec<&User> {
        self.users_in(USER_GROUP)
    }

    /// All users, in file order, after any built-ins that were missing from the file.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// All groups, in file order, after any built-ins that were missing from the file.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    fn members_of<'a>(&'a self, group: &Group) -> Vec<(&'a User, bool)> {
        group
            .members
            .iter()
            .filter_map(|&id| self.user_by_id(id))
            .map(|user| (user, group.owners.contains(&user.id)))
            .collect()
    }

    fn users_in(&self, group_id: i64) -> Vec<&User> {
        let members = self
            .group_by_id(group_id)
            .map(|group| self.members_of(group));
        members
            .unwrap_or_default()
            .into_iter()
            .map(|(user, _)| user)
            .collect()
    }

    /// The missing built-ins followed by the file's entries, indexed. The entries are valid.
    fn assemble(users: Vec<User>, groups: Vec<Group>) -> Directory {
        let users = with_builtins(builtin_users(), users, |user| user.id);
        let groups = with_builtins(builtin_groups(), groups, |group| group.id);
        Directory {
            user_ids: index(&users, |user| user.id),
            user_names: index(&users, |user| user.name.clone()),
            group_ids: index(&groups, |group| group.id),
            group_names: index(&groups, |group| group.name.clone()),
            users,
            groups,
        }
    }
}

/// `builtins` whose id is missing from `entries`, then `entries`.
fn with_builtins<T>(builtins: Vec<T>, entries: Vec<T>, id: impl Fn(&T) -> i64) -> Vec<T> {
    let present: HashSet<i64> = entries.iter().map(&id).collect();
    let missing = builtins
        .into_iter()
        .filter(|builtin| !present.contains(&id(builtin)));
    missing.chain(entries).collect()
}

/// The indexes of the first two items with the same key.
fn first_duplicate<T, K: Eq + Hash>(items: &[T], key: impl Fn(&T) -> K) -> Option<(usize, usize)> {
    let mut seen = HashMap::new();
    let mut indexed = items.iter().enumerate();
    indexed.find_map(|(i, item)| seen.insert(key(item), i).map(|first| (first, i)))
}

fn index<T, K: Eq + Hash>(items: &[T], key: impl Fn(&T) -> K) -> HashMap<K, usize> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (key(item), i))
        .collect()
}

/// OMERO's built-in users.
fn builtin_users() -> Vec<User> {
    let user = |id, name: &str, first: &str, last: &str| User {
        id,
        name: name.to_owned(),
        first_name: Some(first.to_owned()),
        last_name: Some(last.to_owned()),
        email: None,
    };
    vec![
        user(ROOT, "root", "root", "root"),
        user(GUEST, "guest", "Guest", "Account"),
    ]
}

/// OMERO's built-in groups: root is in `system` and `user`, guest in `guest`.
fn builtin_groups() -> Vec<Group> {
    let group = |id, name: &str, members: Vec<i64>| Group {
        id,
        name: name.to_owned(),
        members,
        owners: Vec::new(),
    };
    vec![
        group(SYSTEM_GROUP, "system", vec![ROOT]),
        group(USER_GROUP, "user", vec![ROOT]),
        group(GUEST_GROUP, "guest", vec![GUEST]),
    ]
}

// ---------------------------------------------------------------------------------------------
// The file as written
// ---------------------------------------------------------------------------------------------

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDirectory {
    users: Option<Vec<RawUser>>,
    groups: Option<Vec<RawGroup>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUser {
    id: i64,
    name: String,
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    id: i64,
    name: String,
    members: Option<Vec<i64>>,
    owners: Option<Vec<i64>>,
}

impl From<RawUser> for User {
    fn from(raw: RawUser) -> Self {
        User {
            id: raw.id,
            name: raw.name,
            first_name: raw.first_name,
            last_name: raw.last_name,
            email: raw.email,
        }
    }
}

impl From<RawGroup> for Group {
    fn from(raw: RawGroup) -> Self {
        Group {
            id: raw.id,
            name: raw.name,
            members: raw.members.unwrap_or_default(),
            owners: raw.owners.unwrap_or_default(),
        }
    }
}

/// The fix hint for a directory key, by its name.
fn directory_hint(key: &str) -> Option<String> {
    let hint = match key {
        "users" => "write a list of users, e.g. `- {id: 2, name: alice, email: alice@example.org}`",
        "groups" => {
            "write a list of groups, e.g. `- {id: 3, name: lab, members: [2], owners: [2]}`"
        }
        "id" => "write the OMERO id, a whole number, e.g. 2",
        "name" => "write the OMERO name (a user's omeName or a group's name), e.g. alice",
        "first_name" | "last_name" => "write the name as text, or leave the key out",
        "email" => "write the email address as text, e.g. alice@example.org, or leave the key out",
        "members" => "list the member user ids, e.g. `members: [2, 5]`",
        "owners" => "list the owning user ids, which must also be members, e.g. `owners: [2]`",
        _ => return None,
    };
    Some(hint.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------------

/// Checks across entries, reported with the line found by [`locate`].
struct Checker<'a> {
    text: &'a str,
    origin: &'a Path,
}

/// Which list an entry is in, for messages: ("users", "user") or ("groups", "group").
type Kind = (&'static str, &'static str);

const USERS: Kind = ("users", "user");
const GROUPS: Kind = ("groups", "group");

impl Checker<'_> {
    fn users(&self, users: &[User]) -> Result<(), DirectoryError> {
        self.names(USERS, users, |user| &user.name)?;
        self.unique(
            USERS,
            "id",
            users,
            |user| user.id.to_string(),
            "give each user their own OMERO id",
        )?;
        let fix = "OMERO names are unique: remove or rename one of the two users";
        self.unique(USERS, "name", users, |user| user.name.clone(), fix)
    }

    fn groups(&self, groups: &[Group]) -> Result<(), DirectoryError> {
        self.names(GROUPS, groups, |group| &group.name)?;
        self.unique(
            GROUPS,
            "id",
            groups,
            |group| group.id.to_string(),
            "give each group its own OMERO id",
        )?;
        let fix = "OMERO group names are unique: remove or rename one of the two groups";
        self.unique(GROUPS, "name", groups, |group| group.name.clone(), fix)
    }

    /// No entry has an empty name.
    fn names<T>(
        &self,
        kind: Kind,
        items: &[T],
        name: impl Fn(&T) -> &str,
    ) -> Result<(), DirectoryError> {
        let Some(index) = items.iter().position(|item| name(item).trim().is_empty()) else {
            return Ok(());
        };
        let path = [Seg::Key(kind.0), Seg::Index(index), Seg::Key("name")];
        let message = format!("the {} name is empty", kind.1);
        Err(self.error(&path, message, directory_hint("name").unwrap_or_default()))
    }

    /// No two entries share `key`.
    fn unique<T>(
        &self,
        kind: Kind,
        key: &'static str,
        items: &[T],
        value: impl Fn(&T) -> String,
        fix: &str,
    ) -> Result<(), DirectoryError> {
        let Some((first, second)) = first_duplicate(items, &value) else {
            return Ok(());
        };
        let first_at = locate(self.text, &[Seg::Key(kind.0), Seg::Index(first)]);
        let (list, what, value) = (kind.0, kind.1, value(&items[second]));
        let message = format!(
            "{what} {key} `{value}` is already used by {list}[{first}]{}",
            at_line(first_at)
        );
        let path = [Seg::Key(kind.0), Seg::Index(second), Seg::Key(key)];
        Err(self.error(&path, message, fix.to_owned()))
    }

    /// A built-in that is missing by id must not have its name taken by another entry.
    fn builtin_names(&self, users: &[User], groups: &[Group]) -> Result<(), DirectoryError> {
        for builtin in builtin_users() {
            let taken = users
                .iter()
                .position(|u| u.name == builtin.name && u.id != builtin.id);
            if users.iter().all(|u| u.id != builtin.id)
                && let Some(index) = taken
            {
                return Err(self.builtin_clash(
                    USERS,
                    index,
                    &builtin.name,
                    builtin.id,
                    users[index].id,
                ));
            }
        }
        for builtin in builtin_groups() {
            let taken = groups
                .iter()
                .position(|g| g.name == builtin.name && g.id != builtin.id);
            if groups.iter().all(|g| g.id != builtin.id)
                && let Some(index) = taken
            {
                return Err(self.builtin_clash(
                    GROUPS,
                    index,
                    &builtin.name,
                    builtin.id,
                    groups[index].id,
                ));
            }
        }
        Ok(())
    }

    fn builtin_clash(
        &self,
        kind: Kind,
        index: usize,
        name: &str,
        builtin: i64,
        id: i64,
    ) -> DirectoryError {
        let path = [Seg::Key(kind.0), Seg::Index(index), Seg::Key("id")];
        let message = format!(
            "`{name}` is OMERO's built-in {} with id {builtin}, but here it has id {id}",
            kind.1
        );
        let fix = format!("give `{name}` id {builtin}, or rename this {}", kind.1);
        self.error(&path, message, fix)
    }

    /// Members and owners are known users, listed once, and owners are members.
    fn membership(
        &self,
        index: usize,
        group: &Group,
        users: &HashSet<i64>,
    ) -> Result<(), DirectoryError> {
        self.user_ids(index, group, "members", &group.members, users)?;
        self.user_ids(index, group, "owners", &group.owners, users)?;
        let Some(k) = group
            .owners
            .iter()
            .position(|id| !group.members.contains(id))
        else {
            return Ok(());
        };
        let owner = group.owners[k];
        let path = [
            Seg::Key("groups"),
            Seg::Index(index),
            Seg::Key("owners"),
            Seg::Index(k),
        ];
        let message = format!(
            "user {owner} owns group `{}` but is not one of its members",
            group.name
        );
        let fix = format!(
            "add {owner} to the group's members (in OMERO, owners are members marked as owner)"
        );
        Err(self.error(&path, message, fix))
    }

    fn user_ids(
        &self,
        index: usize,
        group: &Group,
        key: &'static str,
        ids: &[i64],
        users: &HashSet<i64>,
    ) -> Result<(), DirectoryError> {
        for (k, id) in ids.iter().enumerate() {
            let path = [
                Seg::Key("groups"),
                Seg::Index(index),
                Seg::Key(key),
                Seg::Index(k),
            ];
            if !users.contains(id) {
                let message = format!(
                    "group `{}` lists {id} in {key}, but no user has id {id}",
                    group.name
                );
                let fix =
                    format!("add a user with id {id} under `users:`, or remove {id} from {key}");
                return Err(self.error(&path, message, fix));
            }
            if ids[..k].contains(id) {
                let message = format!(
                    "user {id} is listed twice in the {key} of group `{}`",
                    group.name
                );
                return Err(self.error(&path, message, "remove the repeated id".to_owned()));
            }
        }
        Ok(())
    }

    fn error(&self, path: &[Seg<'_>], message: String, fix: String) -> DirectoryError {
        diagnostic_at(self.text, self.origin, path, message, fix).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;

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

    fn fail(text: &str) -> Diagnostic {
        match parse(text) {
            Err(DirectoryError::Invalid(diagnostic)) => diagnostic,
            Err(other) => panic!("expected a diagnostic, got {other}"),
            Ok(directory) => panic!("expected an error, got {directory:?}"),
        }
    }

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    fn names(users: &[&User]) -> Vec<String> {
        users.iter().map(|user| user.name.clone()).collect()
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
            let users: Vec<(i64, &str)> = dir
                .users()
                .iter()
                .map(|u| (u.id, u.name.as_str()))
                .collect();
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
            (guest.first_name.as_deref(), guest.last_name.as_deref()),
            (Some("Guest"), Some("Account"))
        );
        assert_eq!(names(&dir.admins()), ["root"]);
        assert_eq!(names(&dir.active_users()), ["root"]);
        assert_eq!(
            names(&dir.members("guest").iter().map(|m| m.0).collect::<Vec<_>>()),
            ["guest"]
        );
        assert_eq!(dir.user_by_name("root").unwrap().email, None);
    }

    #[test]
    fn missing_builtins_come_first_and_present_ones_are_kept() {
        let text = "users:\n  - {id: 5, name: bob}\n  - {id: 1, name: guest}\ngroups:\n  - {id: 1, name: user, members: [5]}\n";
        let dir = parse(text).unwrap();
        let ids: Vec<i64> = dir.users().iter().map(|u| u.id).collect();
        assert_eq!(ids, [0, 5, 1]);
        assert_eq!(
            dir.user_by_id(1).unwrap().first_name,
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
        let dir =
            parse("users:\n  - {id: 7, name: 0123}\ngroups:\n  - {id: 8, name: 2024}\n").unwrap();
        assert_eq!(dir.user_by_id(7).unwrap().name, "0123");
        assert_eq!(dir.group_by_id(8).unwrap().name, "2024");
    }

    #[test]
    fn members_may_be_builtin_users_not_listed_in_the_file() {
        let dir = parse("groups:\n  - {id: 3, name: lab, members: [0, 1], owners: [0]}\n").unwrap();
        let members: Vec<(&str, bool)> = dir
            .members("lab")
            .iter()
            .map(|(u, o)| (u.name.as_str(), *o))
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
        assert_eq!(
            dir.user_by_id(3).unwrap().email.as_deref(),
            Some("not-an-email")
        );
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
}
