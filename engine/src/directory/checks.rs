//! Checks across the directory's entries: names, unique ids and names, built-ins, membership.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use super::raw::directory_hint;
use super::{DirectoryError, Group, User, builtin_groups, builtin_users};
use crate::config::{Seg, Source, at_line};

/// Checks across entries, reported with the line found by [`Source::locate`].
pub(super) struct Checker<'a>(pub(super) Source<'a>);

/// Which list an entry is in, for messages: ("users", "user") or ("groups", "group").
type Kind = (&'static str, &'static str);

const USERS: Kind = ("users", "user");
const GROUPS: Kind = ("groups", "group");

impl Checker<'_> {
    pub(super) fn users(&self, users: &[User]) -> Result<(), DirectoryError> {
        self.names(USERS, users, |user| user.name())?;
        self.unique(
            USERS,
            "id",
            users,
            |user| user.id,
            "give each user their own OMERO id",
        )?;
        let fix = "OMERO names are unique: remove or rename one of the two users";
        self.unique(USERS, "name", users, |user| user.name(), fix)
    }

    pub(super) fn groups(&self, groups: &[Group]) -> Result<(), DirectoryError> {
        self.names(GROUPS, groups, |group| &group.name)?;
        self.unique(
            GROUPS,
            "id",
            groups,
            |group| group.id,
            "give each group its own OMERO id",
        )?;
        let fix = "OMERO group names are unique: remove or rename one of the two groups";
        self.unique(GROUPS, "name", groups, |group| group.name.as_str(), fix)
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

    /// No two entries share `key` (its `value`, borrowed from the entry: no copy per entry).
    fn unique<'t, T, K: Eq + Hash + std::fmt::Display>(
        &self,
        kind: Kind,
        key: &'static str,
        items: &'t [T],
        value: impl Fn(&'t T) -> K,
        fix: &str,
    ) -> Result<(), DirectoryError> {
        let Some((first, second)) = first_duplicate(items, &value) else {
            return Ok(());
        };
        let first_at = self.0.locate(&[Seg::Key(kind.0), Seg::Index(first)]);
        let (list, what, value) = (kind.0, kind.1, value(&items[second]));
        let message = format!(
            "{what} {key} `{value}` is already used by {list}[{first}]{}",
            at_line(first_at)
        );
        let path = [Seg::Key(kind.0), Seg::Index(second), Seg::Key(key)];
        Err(self.error(&path, message, fix.to_owned()))
    }

    /// A built-in that is missing by id must not have its name taken by another entry.
    pub(super) fn builtin_names(
        &self,
        users: &[User],
        groups: &[Group],
    ) -> Result<(), DirectoryError> {
        self.builtin_names_in(USERS, &builtin_users(), users, |u| (u.id, u.name()))?;
        self.builtin_names_in(GROUPS, &builtin_groups(), groups, |g| (g.id, &g.name))
    }

    /// [`Self::builtin_names`] for one list; `key` gives an entry's id and name.
    fn builtin_names_in<T>(
        &self,
        kind: Kind,
        builtins: &[T],
        items: &[T],
        key: fn(&T) -> (i64, &str),
    ) -> Result<(), DirectoryError> {
        for (id, name) in builtins.iter().map(key) {
            let taken = items
                .iter()
                .map(key)
                .position(|(i, n)| n == name && i != id);
            if items.iter().all(|item| key(item).0 != id)
                && let Some(index) = taken
            {
                let found = key(&items[index]).0;
                return Err(self.builtin_clash(kind, index, name, id, found));
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
    pub(super) fn membership(
        &self,
        index: usize,
        group: &Group,
        users: &HashSet<i64>,
    ) -> Result<(), DirectoryError> {
        self.user_ids(index, group, "members", &group.members, users)?;
        self.user_ids(index, group, "owners", &group.owners, users)?;
        let members: HashSet<i64> = group.members.iter().copied().collect();
        let Some(k) = group.owners.iter().position(|id| !members.contains(id)) else {
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
        let mut seen = HashSet::with_capacity(ids.len());
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
            if !seen.insert(*id) {
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
        self.0.error(path, message, fix)
    }
}

/// The indexes of the first two items with the same key.
fn first_duplicate<'t, T, K: Eq + Hash>(
    items: &'t [T],
    key: impl Fn(&'t T) -> K,
) -> Option<(usize, usize)> {
    let mut seen = HashMap::new();
    let mut indexed = items.iter().enumerate();
    indexed.find_map(|(i, item)| seen.insert(key(item), i).map(|first| (first, i)))
}
