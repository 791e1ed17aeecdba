//! The directory file (`etc/directory.yaml`): OMERO's users and groups, with the built-ins filled in.

mod checks;
pub mod omero_db;
mod raw;
mod stream;
#[cfg(test)]
mod tests;
mod user;

use std::cmp::Ordering;
use std::collections::HashSet;
use std::path::Path;

use serde::Serialize;

use crate::config::{LoadError, Source, parse_yaml};
use checks::Checker;
use raw::{RawDirectory, directory_hint};
pub use user::User;

/// Why the directory file could not be loaded. Its `Display` names the file, line, key path and fix.
pub type DirectoryError = LoadError;

/// What to do when the directory file cannot be read.
const READ_FIX: &str = "create it (users and groups, see the example etc/directory.yaml) or point \
                        `directory.path` in the config at it";

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

/// An OMERO group.
#[derive(Clone, Debug, PartialEq, Serialize, serde::Deserialize)]
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

/// OMERO's built-in ids (`_roles`): root, guest, and the system (admins), user (active) and guest groups.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Roles {
    pub root_user: i64,
    pub guest_user: i64,
    pub system_group: i64,
    pub user_group: i64,
    pub guest_group: i64,
}

impl Default for Roles {
    /// The ids OMERO's bootstrap gives them.
    fn default() -> Self {
        Roles {
            root_user: ROOT,
            guest_user: GUEST,
            system_group: SYSTEM_GROUP,
            user_group: USER_GROUP,
            guest_group: GUEST_GROUP,
        }
    }
}

/// The users and groups Herald resolves recipients against.
#[derive(Clone, Debug)]
pub struct Directory {
    roles: Roles,
    users: Vec<User>,
    groups: Vec<Group>,
    /// Indexes into `users` and `groups`, sorted by id and by name (4 bytes an entry, where a
    /// hash map would copy each name).
    user_ids: Sorted,
    user_names: Sorted,
    group_ids: Sorted,
    group_names: Sorted,
    /// For each group, the positions in `users` of its members that are users, in member order.
    member_positions: Vec<Vec<u32>>,
    /// (user id, group index) for every membership, sorted: a user's groups are one run.
    memberships: Vec<(i64, u32)>,
}

/// The user's email if it is non-empty and parses as an address (trimmed), else `None`.
pub fn valid_email(user: &User) -> Option<lettre::Address> {
    user.email()?.trim().parse().ok()
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
        Self::load_in_chunks(path, stream::CHUNK)
    }

    /// [`Directory::load`], reading a file in the usual shape `chunk` list entries at a time.
    fn load_in_chunks(path: &Path, chunk: usize) -> Result<Directory, DirectoryError> {
        let streamed = stream::entries(path, chunk).and_then(|(users, groups)| {
            // No text: a check that fails is explained by the whole-file parse below.
            let source = Source {
                text: "",
                file: path,
            };
            Self::checked(users, groups, source).ok()
        });
        let directory = match streamed {
            Some(directory) => Ok(directory),
            None => {
                let text = crate::config::read_yaml(path, "directory", READ_FIX)?;
                Self::parse(&text, path)
            }
        };
        crate::memory::return_freed();
        directory
    }

    /// Parse and validate directory text; `origin` names the file in messages.
    pub fn parse(text: &str, origin: &Path) -> Result<Directory, DirectoryError> {
        let raw: RawDirectory = parse_yaml(text, origin, directory_hint)?;
        let (users, groups) = raw.entries();
        Self::checked(users, groups, Source { text, file: origin })
    }

    /// Validate the entries as `source` wrote them, then index them with the built-ins.
    fn checked(
        users: Vec<User>,
        groups: Vec<Group>,
        source: Source<'_>,
    ) -> Result<Directory, DirectoryError> {
        let check = Checker(source);
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
        self.user_ids.find(&self.users, |user| user.id.cmp(&id))
    }

    /// The user with OMERO name `name`.
    pub fn user_by_name(&self, name: &str) -> Option<&User> {
        self.user_names
            .find(&self.users, |user| user.name().cmp(name))
    }

    /// The group with OMERO id `id`.
    pub fn group_by_id(&self, id: i64) -> Option<&Group> {
        self.group_ids.find(&self.groups, |group| group.id.cmp(&id))
    }

    /// The group called `name`.
    pub fn group_by_name(&self, name: &str) -> Option<&Group> {
        self.group_names
            .find(&self.groups, |group| group.name.as_str().cmp(name))
    }

    /// The members of the group called `group`, in member order, each with whether they own it;
    /// empty for an unknown group.
    pub fn members(&self, group: &str) -> Vec<(&User, bool)> {
        let found = self
            .group_names
            .position(&self.groups, |g| g.name.as_str().cmp(group));
        found.map_or_else(Vec::new, |index| self.members_at(index))
    }

    /// The groups `user_id` is a member of, in file order.
    pub fn groups_of(&self, user_id: i64) -> Vec<&Group> {
        let start = self
            .memberships
            .partition_point(|&(user, _)| user < user_id);
        self.memberships[start..]
            .iter()
            .take_while(|&&(user, _)| user == user_id)
            .filter_map(|&(_, group)| self.groups.get(group as usize))
            .collect()
    }

    /// The admins: members of `system` (id 0, or `_roles.system_group_id`), with a valid email or not.
    pub fn admins(&self) -> Vec<&User> {
        self.users_in(self.roles.system_group)
    }

    /// The active users: members of `user` (id 1, or `_roles.user_group_id`).
    pub fn active_users(&self) -> Vec<&User> {
        self.users_in(self.roles.user_group)
    }

    /// The built-in ids this directory uses.
    pub fn roles(&self) -> Roles {
        self.roles
    }

    /// A directory read from OMERO's database: every user and group as stored, the built-ins from `_roles`.
    /// Members that are not users are dropped (a row deleted between two reads).
    pub fn from_database(roles: Roles, users: Vec<User>, mut groups: Vec<Group>) -> Directory {
        let known: HashSet<i64> = users.iter().map(|user| user.id).collect();
        for group in &mut groups {
            group.members.retain(|id| known.contains(id));
            let members: HashSet<i64> = group.members.iter().copied().collect();
            group.owners.retain(|id| members.contains(id));
        }
        Directory::indexed(roles, users, groups)
    }

    /// All users, in file order, after any built-ins that were missing from the file.
    pub fn users(&self) -> &[User] {
        &self.users
    }

    /// All groups, in file order, after any built-ins that were missing from the file.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The members of the group at `index` that are users, in member order, each with
    /// whether they own it.
    fn members_at(&self, index: usize) -> Vec<(&User, bool)> {
        let group = &self.groups[index];
        let owners: HashSet<i64> = group.owners.iter().copied().collect();
        self.member_positions[index]
            .iter()
            .map(|&at| &self.users[at as usize])
            .map(|user| (user, owners.contains(&user.id)))
            .collect()
    }

    fn users_in(&self, group_id: i64) -> Vec<&User> {
        let found = self
            .group_ids
            .position(&self.groups, |g| g.id.cmp(&group_id));
        let members = found.map(|index| self.members_at(index));
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
        Directory::indexed(Roles::default(), users, groups)
    }

    fn indexed(roles: Roles, mut users: Vec<User>, mut groups: Vec<Group>) -> Directory {
        users.shrink_to_fit();
        groups.shrink_to_fit();
        let user_ids = Sorted::by(&users, |a, b| a.id.cmp(&b.id));
        let member_positions = groups
            .iter()
            .map(|group| {
                let at = |&id: &i64| user_ids.position(&users, |user| user.id.cmp(&id));
                group
                    .members
                    .iter()
                    .filter_map(at)
                    .map(|at| at as u32)
                    .collect()
            })
            .collect();
        Directory {
            roles,
            member_positions,
            user_ids,
            user_names: Sorted::by(&users, |a, b| a.name().cmp(b.name())),
            group_ids: Sorted::by(&groups, |a, b| a.id.cmp(&b.id)),
            group_names: Sorted::by(&groups, |a, b| a.name.cmp(&b.name)),
            memberships: memberships(&groups),
            users,
            groups,
        }
    }
}

/// `builtins` whose id is missing from `entries`, then `entries` (moved in place, not copied).
fn with_builtins<T>(builtins: Vec<T>, mut entries: Vec<T>, id: impl Fn(&T) -> i64) -> Vec<T> {
    let missing: Vec<T> = builtins
        .into_iter()
        .filter(|builtin| entries.iter().all(|entry| id(entry) != id(builtin)))
        .collect();
    entries.splice(0..0, missing);
    entries
}
/// Every (user id, group index) membership once, sorted by user, then by group (file order).
fn memberships(groups: &[Group]) -> Vec<(i64, u32)> {
    let mut pairs: Vec<(i64, u32)> = groups
        .iter()
        .zip(0u32..)
        .flat_map(|(group, index)| group.members.iter().map(move |&user| (user, index)))
        .collect();
    pairs.sort_unstable();
    pairs.dedup();
    pairs.shrink_to_fit();
    pairs
}

/// Positions of a slice's items in key order, searched by binary search. Keys are unique (the
/// checks and OMERO's constraints see to it).
#[derive(Clone, Debug)]
struct Sorted(Vec<u32>);

impl Sorted {
    fn by<T>(items: &[T], order: impl Fn(&T, &T) -> Ordering) -> Sorted {
        let mut positions: Vec<u32> = (0..items.len() as u32).collect();
        positions.sort_unstable_by(|&a, &b| order(&items[a as usize], &items[b as usize]));
        Sorted(positions)
    }

    /// The item for which `probe` (the item's key against the key sought) is `Equal`.
    fn find<'a, T>(&self, items: &'a [T], probe: impl Fn(&T) -> Ordering) -> Option<&'a T> {
        items.get(self.position(items, probe)?)
    }

    /// The position in `items` of the item [`Sorted::find`] finds.
    fn position<T>(&self, items: &[T], probe: impl Fn(&T) -> Ordering) -> Option<usize> {
        let found = self
            .0
            .binary_search_by(|&at| probe(&items[at as usize]))
            .ok()?;
        Some(self.0[found] as usize)
    }
}

/// OMERO's built-in users.
fn builtin_users() -> Vec<User> {
    let user = |id, name: &str, first: &str, last: &str| {
        User::new(id, name, Some(first), Some(last), None)
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
