//! A stand-in for the engine, so a rule's logic can be unit-tested natively.
//!
//! On targets other than wasm32, the SDK's host calls ([`crate::config`],
//! [`crate::directory`], [`crate::kv`], [`crate::log`]) read and write the
//! [`TestHost`] installed on the current thread.
//!
//! ```
//! use herald_sdk::testing::TestHost;
//! use herald_sdk::{directory, User};
//!
//! let alice = User { id: 2, name: "alice".into(), first_name: None, last_name: None,
//!                    email: Some("alice@example.org".into()) };
//! TestHost::new().user(alice).member("system", 2, false).install();
//! assert_eq!(directory::admins()[0].name, "alice");
//! ```

mod output;
mod time;

pub use output::{MAX_MESSAGES, MAX_OUTPUT_BYTES, check};
pub use time::at;

use std::cell::RefCell;
use std::collections::HashMap;

use crate::log::LogLevel;
use crate::{Event, Group, Message, Payload, Rule, User};

/// The directory, config, store and log a rule sees in a native test.
#[derive(Default, Clone)]
pub struct TestHost {
    /// The rule's config, as `herald.yaml` would give it.
    pub config: serde_json::Value,
    pub users: Vec<User>,
    /// Groups with their members as (user id, owner) pairs.
    pub groups: Vec<(Group, Vec<(i64, bool)>)>,
    pub kv: HashMap<String, Vec<u8>>,
    /// What the rule logged, in order.
    pub logs: Vec<(LogLevel, String)>,
}

thread_local! {
    static HOST: RefCell<TestHost> = RefCell::new(TestHost::new());
}

impl TestHost {
    /// An empty host with OMERO's built-in groups `system` (0), `user` (1) and `guest` (2).
    pub fn new() -> Self {
        let builtin = |id: i64, name: &str| {
            (
                Group {
                    id,
                    name: name.into(),
                },
                Vec::new(),
            )
        };
        TestHost {
            config: serde_json::json!({}),
            groups: vec![
                builtin(0, "system"),
                builtin(1, "user"),
                builtin(2, "guest"),
            ],
            ..Default::default()
        }
    }

    /// Set the rule's config.
    pub fn config(mut self, config: serde_json::Value) -> Self {
        self.config = config;
        self
    }

    /// Add a user.
    pub fn user(mut self, user: User) -> Self {
        self.users.push(user);
        self
    }

    /// Add a user to a group, creating the group (with the next free id) if needed.
    pub fn member(mut self, group: &str, user_id: i64, owner: bool) -> Self {
        let next_id = self.groups.iter().map(|(g, _)| g.id + 1).max().unwrap_or(0);
        match self.groups.iter_mut().find(|(g, _)| g.name == group) {
            Some((_, members)) => members.push((user_id, owner)),
            None => self.groups.push((
                Group {
                    id: next_id,
                    name: group.into(),
                },
                vec![(user_id, owner)],
            )),
        }
        self
    }

    /// Make this the host for rule calls on the current thread.
    pub fn install(self) {
        HOST.with(|host| *host.borrow_mut() = self);
    }

    /// A copy of the host as the rule left it (logs, kv).
    pub fn current() -> TestHost {
        HOST.with(|host| host.borrow().clone())
    }
}

/// Run `f` on the current thread's test host.
pub(crate) fn with<R>(f: impl FnOnce(&mut TestHost) -> R) -> R {
    HOST.with(|host| f(&mut host.borrow_mut()))
}

/// Call `R::handle` and hold its answer to the engine's checks ([`check`]), so a native
/// test fails where the engine would.
///
/// ```
/// use herald_sdk::testing::{TestHost, event, handle};
/// use herald_sdk::{Event, Message, Payload, Recipient, Rule};
///
/// struct Bad;
/// impl Rule for Bad {
///     fn handle(_: Event) -> Result<Vec<Message>, String> {
///         Ok(vec![Message::new("Hi", "x\n").to(Recipient::Address("not an address".into()))])
///     }
/// }
/// TestHost::new().install();
/// let custom = event("lab.alarm", Payload::Custom("{}".into()));
/// assert!(handle::<Bad>(custom).unwrap_err().contains("not a valid email address"));
/// ```
pub fn handle<R: Rule>(event: Event) -> Result<Vec<Message>, String> {
    let messages = R::handle(event)?;
    check(&messages)?;
    Ok(messages)
}

/// An event as the engine would deliver it, with a fixed id, source and time
/// (set another time with [`at`]).
pub fn event(kind: &str, data: Payload) -> Event {
    Event {
        id: "test-0001".into(),
        kind: kind.into(),
        source: "omero://test".into(),
        time: "2026-01-01T00:00:00Z".into(),
        time_unix_ms: 1_767_225_600_000,
        data,
        data_json: "{}".into(),
    }
}

/// The directory look-ups, answered from the test host.
pub mod directory {
    use super::with;
    use crate::{Group, Member, User};

    pub fn user_by_id(id: i64) -> Option<User> {
        with(|h| h.users.iter().find(|u| u.id == id).cloned())
    }

    pub fn user_by_name(name: &str) -> Option<User> {
        with(|h| h.users.iter().find(|u| u.name == name).cloned())
    }

    pub fn group_by_id(id: i64) -> Option<Group> {
        with(|h| {
            h.groups
                .iter()
                .find(|(g, _)| g.id == id)
                .map(|(g, _)| g.clone())
        })
    }

    pub fn group_by_name(name: &str) -> Option<Group> {
        with(|h| {
            h.groups
                .iter()
                .find(|(g, _)| g.name == name)
                .map(|(g, _)| g.clone())
        })
    }

    pub fn group_members(name: &str) -> Vec<Member> {
        with(|h| {
            let Some((_, members)) = h.groups.iter().find(|(g, _)| g.name == name) else {
                return Vec::new();
            };
            members
                .iter()
                .filter_map(|&(id, owner)| {
                    let user = h.users.iter().find(|u| u.id == id)?.clone();
                    Some(Member { user, owner })
                })
                .collect()
        })
    }

    pub fn groups_of(user_id: i64) -> Vec<Group> {
        with(|h| {
            h.groups
                .iter()
                .filter(|(_, members)| members.iter().any(|&(id, _)| id == user_id))
                .map(|(g, _)| g.clone())
                .collect()
        })
    }

    pub fn admins() -> Vec<User> {
        group_members("system")
            .into_iter()
            .map(|m| m.user)
            .collect()
    }

    pub fn active_users() -> Vec<User> {
        group_members("user").into_iter().map(|m| m.user).collect()
    }

    pub fn all_users() -> Vec<User> {
        with(|h| h.users.clone())
    }
}
