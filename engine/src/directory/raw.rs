//! The directory file as written (serde model), and the fix hint for each of its keys.

use serde::Deserialize;

use super::{Group, User};

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDirectory {
    users: Option<Vec<RawUser>>,
    groups: Option<Vec<RawGroup>>,
}

/// A user as written; also how a stored snapshot's user is read back.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUser {
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

impl RawDirectory {
    /// The users and groups as written, in file order.
    pub(super) fn entries(self) -> (Vec<User>, Vec<Group>) {
        let users = self.users.unwrap_or_default();
        let groups = self.groups.unwrap_or_default();
        (
            users.into_iter().map(User::from).collect(),
            groups.into_iter().map(Group::from).collect(),
        )
    }
}

impl From<RawUser> for User {
    fn from(raw: RawUser) -> Self {
        User::new(
            raw.id,
            &raw.name,
            raw.first_name.as_deref(),
            raw.last_name.as_deref(),
            raw.email.as_deref(),
        )
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

/// A run of user entries (a YAML list), or `None` if it does not parse.
pub(super) fn parse_users(text: &str) -> Option<Vec<User>> {
    let raw: Vec<RawUser> = serde_yaml::from_str(text).ok()?;
    Some(raw.into_iter().map(User::from).collect())
}

/// A run of group entries (a YAML list), or `None` if it does not parse.
pub(super) fn parse_groups(text: &str) -> Option<Vec<Group>> {
    let raw: Vec<RawGroup> = serde_yaml::from_str(text).ok()?;
    Some(raw.into_iter().map(Group::from).collect())
}

/// The fix hint for a directory key, by its name.
pub(super) fn directory_hint(key: &str) -> Option<String> {
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
