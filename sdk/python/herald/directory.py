"""Read-only look-ups in the OMERO directory (users, groups, memberships)."""

from wit_world.imports.directory import (
    active_users,
    admins,
    all_users,
    group_by_id,
    group_by_name,
    group_members,
    groups_of,
    user_by_id,
    user_by_name,
)

__all__ = [
    "active_users", "admins", "all_users", "group_by_id", "group_by_name", "group_members",
    "groups_of", "user_by_id", "user_by_name",
]
