//! Default rule `broadcast`: the admin broadcast queued by `herald email` (OMERO's `omero admin email`).
//!
//! Subject, body and the optional HTML part go out exactly as given, with no
//! subject prefix, one message per recipient; only a subject with control
//! characters (a line break) has them as spaces, and one longer than 998
//! characters is cut there (`safe::one_line`). Recipients:
//!
//! - `everyone`: every active user (a member of `user`), or every user in the
//!   directory with `inactive`; any users or groups also given are ignored
//!   with a warning, as OMERO's CLI does.
//! - otherwise the union, in this order and without duplicates, of
//!   `user_ids`, `user_names`, and the members of `group_ids` and
//!   `group_names`; without `inactive`, users that are not active are dropped.
//!   Unknown ids and names are logged as warnings and skipped (not fatal).
//! - every `extra` address (the CLI has validated them).
//!
//! Users are named by id, so the engine reports those without an email.
//! There is no enriched mode and no config: the admin writes the whole mail.

use std::collections::HashSet;

use herald_sdk::{
    Broadcast, Event, Message, Payload, Recipient, Rule, User, config, directory, export_rule, log,
    safe,
};
use serde::Deserialize;

/// The rule takes no `config` keys; any key is an error.
#[derive(Deserialize, Default)]
#[serde(default, deny_unknown_fields)]
struct Settings {}

pub struct BroadcastRule;

impl Rule for BroadcastRule {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let Payload::Broadcast(broadcast) = &event.data else {
            return Ok(Vec::new());
        };
        let Settings {} = config::get()?;
        let subject = safe::one_line(&broadcast.subject, safe::SUBJECT_CHARS);
        let mut mail = Message::new(subject, broadcast.body.clone());
        mail.html = broadcast.html.clone();
        if broadcast.everyone && !broadcast.inactive {
            // The engine expands the active users itself: no user crosses into the sandbox,
            // so the cost does not grow with the facility.
            warn_ignored(broadcast);
            mail = mail.to(Recipient::ActiveUsers);
        } else {
            for user in recipients(broadcast) {
                mail = mail.to(Recipient::UserId(user.id));
            }
        }
        for address in &broadcast.extra {
            mail = mail.to(Recipient::Address(address.clone()));
        }
        if mail.to.is_empty() {
            log::warn("broadcast: no recipients left after resolving users and groups");
            return Ok(Vec::new());
        }
        Ok(vec![mail])
    }
}

/// The directory users the broadcast goes to.
fn recipients(broadcast: &Broadcast) -> Vec<User> {
    if broadcast.everyone {
        warn_ignored(broadcast);
        return if broadcast.inactive {
            directory::all_users()
        } else {
            directory::active_users()
        };
    }
    let mut users = selected(broadcast);
    if !broadcast.inactive {
        let active: HashSet<i64> = directory::active_users().iter().map(|u| u.id).collect();
        users.retain(|user| {
            let keep = active.contains(&user.id);
            if !keep {
                log::info(&format!(
                    "broadcast: skipping inactive user {} (id {})",
                    user.name, user.id
                ));
            }
            keep
        });
    }
    users
}

/// With `everyone`, any users or groups also named are ignored, with a warning (as OMERO's CLI).
fn warn_ignored(broadcast: &Broadcast) {
    if names_anyone(broadcast) {
        log::warn("broadcast: users and groups ignored (everyone is set)");
    }
}

/// Whether the broadcast names any user or group.
fn names_anyone(b: &Broadcast) -> bool {
    !(b.user_ids.is_empty()
        && b.user_names.is_empty()
        && b.group_ids.is_empty()
        && b.group_names.is_empty())
}

/// The union of the named users and the members of the named groups, in order, without duplicates.
fn selected(broadcast: &Broadcast) -> Vec<User> {
    let mut found: Vec<User> = Vec::new();
    let mut ids = HashSet::new();
    let mut add = |user: User| {
        if ids.insert(user.id) {
            found.push(user);
        }
    };
    for &id in &broadcast.user_ids {
        known(directory::user_by_id(id), &format!("user id {id}")).map(&mut add);
    }
    for name in &broadcast.user_names {
        known(
            directory::user_by_name(name),
            &format!("user name '{name}'"),
        )
        .map(&mut add);
    }
    let group_names = broadcast.group_ids.iter().filter_map(|&id| {
        known(directory::group_by_id(id), &format!("group id {id}")).map(|g| g.name)
    });
    let group_names: Vec<String> = group_names
        .chain(broadcast.group_names.iter().filter_map(|name| {
            known(
                directory::group_by_name(name),
                &format!("group name '{name}'"),
            )
            .map(|g| g.name)
        }))
        .collect();
    for name in group_names {
        directory::group_members(&name)
            .into_iter()
            .for_each(|m| add(m.user));
    }
    found
}

/// Pass a look-up through, warning when it found nothing.
fn known<T>(found: Option<T>, what: &str) -> Option<T> {
    if found.is_none() {
        log::warn(&format!("broadcast: unknown {what}, skipped"));
    }
    found
}

export_rule!(BroadcastRule, config = Settings);

#[cfg(test)]
mod tests;
