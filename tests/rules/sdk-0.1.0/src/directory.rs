//! Read-only look-ups in the OMERO directory (users, groups, memberships).

use crate::{Group, Member, User};

#[cfg(target_arch = "wasm32")]
use crate::bindings::herald::rule::directory as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::directory as imp;

/// A user by OMERO id.
pub fn user_by_id(id: i64) -> Option<User> {
    imp::user_by_id(id)
}

/// A user by omeName.
pub fn user_by_name(name: &str) -> Option<User> {
    imp::user_by_name(name)
}

/// A group by OMERO id.
pub fn group_by_id(id: i64) -> Option<Group> {
    imp::group_by_id(id)
}

/// A group by name.
pub fn group_by_name(name: &str) -> Option<Group> {
    imp::group_by_name(name)
}

/// The members of a group, with their owner flag. Empty for an unknown group.
pub fn group_members(name: &str) -> Vec<Member> {
    imp::group_members(name)
}

/// The groups a user belongs to.
pub fn groups_of(user_id: i64) -> Vec<Group> {
    imp::groups_of(user_id)
}

/// Members of `system`, whether or not they have an email.
pub fn admins() -> Vec<User> {
    imp::admins()
}

/// Members of `user`: the active users.
pub fn active_users() -> Vec<User> {
    imp::active_users()
}

/// Every user in the directory.
pub fn all_users() -> Vec<User> {
    imp::all_users()
}
