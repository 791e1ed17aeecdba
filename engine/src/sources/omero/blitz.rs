//! Blitz-0.log lines → failed logins, server start and shutdown (logback's OMERO pattern).
//!
//! Pattern (etc/logback.xml): `%date %-5level [%40.40logger{40}] \(%10.10thread\) %msg%n`, e.g.
//! `2025-08-29 10:14:06,016 WARN  [  ome.security.auth.LoginAttemptListener] (l.Server-2) 3 failed
//! logins for root. Throttling for 3000`. A failed password check is
//! `Executor.doWork -- ome.services.sessions.SessionManagerImpl.executeCheckPasswordRO[<user>]`
//! followed on the same thread by `Rslt:\tfalse` (the first failure, and unknown user names); from
//! the second failure in a row LoginAttemptListener also warns `<n> failed logins for <user>.
//! Throttling for <ms>`. One failure gives one event whichever of the two lines comes first.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::logfile::Lines;
use super::tail::Line;
use crate::event::types;

/// One parsed logback line.
#[derive(Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// `2025-08-29 10:14:06,008`: local time, no zone.
    pub date: &'a str,
    pub level: &'a str,
    pub logger: &'a str,
    pub thread: &'a str,
    pub message: &'a str,
}

/// Parse one line; `None` for continuation lines (stack traces) and anything else.
pub fn parse(line: &str) -> Option<Entry<'_>> {
    let date = line.get(..23)?;
    let valid_date = date.bytes().enumerate().all(|(i, b)| match i {
        4 | 7 => b == b'-',
        10 => b == b' ',
        13 | 16 => b == b':',
        19 => b == b',',
        _ => b.is_ascii_digit(),
    });
    if !valid_date {
        return None;
    }
    let rest = line.get(23..)?.strip_prefix(' ')?;
    let (level, rest) = rest.split_once(' ')?;
    let rest = rest.trim_start().strip_prefix('[')?;
    let (logger, rest) = rest.split_once("] (")?;
    // The thread is at most 10 characters; the message follows `) `.
    let close = rest.char_indices().take(11).find(|&(_, c)| c == ')')?.0;
    let thread = rest[..close].trim();
    let message = rest[close + 1..]
        .strip_prefix(' ')
        .unwrap_or(&rest[close + 1..]);
    Some(Entry {
        date,
        level,
        logger: logger.trim(),
        thread,
        message,
    })
}

/// What a line means to Herald.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    LoginFailed { user: String },
    ServerUp,
    ServerDown { reason: String },
}

const CHECK: &str =
    "Executor.doWork -- ome.services.sessions.SessionManagerImpl.executeCheckPasswordRO[";

/// The password checks in flight per thread, so a failure is reported once.
#[derive(Default)]
pub struct Logins {
    /// thread → (user, already reported by a throttling warning)
    checks: HashMap<String, (String, bool)>,
}

impl Logins {
    /// What `entry` means, given the lines before it.
    pub fn happening(&mut self, entry: &Entry<'_>) -> Option<Happening> {
        let message = entry.message.trim_start();
        if entry.logger.ends_with("ome.services.blitz.Entry") {
            return server(message);
        }
        if entry.logger.ends_with("LoginAttemptListener") {
            let user = throttled_user(message)?;
            if let Some(check) = self.checks.get_mut(entry.thread) {
                check.1 = true;
            }
            return Some(Happening::LoginFailed { user });
        }
        if !entry.logger.ends_with("ServiceHandler") {
            return None;
        }
        if let Some(user) = message
            .strip_prefix(CHECK)
            .and_then(|r| r.strip_suffix(']'))
        {
            self.checks
                .insert(entry.thread.to_owned(), (user.to_owned(), false));
            return None;
        }
        let result = message.strip_prefix("Rslt:")?.trim();
        let (user, reported) = self.checks.remove(entry.thread)?;
        (result == "false" && !reported).then_some(Happening::LoginFailed { user })
    }
}

/// `<n> failed logins for <user>. Throttling for <ms>` → the user.
fn throttled_user(message: &str) -> Option<String> {
    let (count, rest) = message.split_once(" failed logins for ")?;
    count.parse::<u64>().ok()?;
    let (user, _) = rest.rsplit_once(". Throttling for ")?;
    Some(user.to_owned())
}

fn server(message: &str) -> Option<Happening> {
    if message == "OMERO.blitz now accepting connections." {
        return Some(Happening::ServerUp);
    }
    let signal = message.strip_suffix(": Shutdown requested.")?;
    ["TERM", "INT"]
        .contains(&signal)
        .then(|| Happening::ServerDown {
            reason: message.to_owned(),
        })
}

/// Blitz-0.log as a source of events about `server`.
pub struct BlitzLines {
    pub server: String,
    pub logins: Logins,
}

impl Lines for BlitzLines {
    fn event(&mut self, line: &Line) -> Option<(&'static str, Value)> {
        let entry = parse(&line.text)?;
        Some(match self.logins.happening(&entry)? {
            Happening::LoginFailed { user } => (types::LOGIN_FAILED, json!({"user": user})),
            Happening::ServerUp => (types::SERVER_UP, json!({"server": self.server})),
            Happening::ServerDown { reason } => (
                types::SERVER_DOWN,
                json!({"server": self.server, "reason": reason}),
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHECK_ROOT: &str = "2025-08-29 10:14:06,008 INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Executor.doWork -- ome.services.sessions.SessionManagerImpl.executeCheckPasswordRO[root]";
    const THROTTLE: &str = "2025-08-29 10:14:06,016 WARN  [  ome.security.auth.LoginAttemptListener] (l.Server-2) 3 failed logins for root. Throttling for 3000";
    const FALSE: &str = "2025-08-29 10:14:09,020 INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Rslt:\tfalse";
    const TRUE: &str = "2025-08-29 10:14:09,020 INFO  [        ome.services.util.ServiceHandler] (l.Server-2)  Rslt:\ttrue";
    const UP: &str = "2025-08-29 09:00:00,001 INFO  [                ome.services.blitz.Entry] (      main) OMERO.blitz now accepting connections.";
    const DOWN: &str = "2025-08-29 18:00:00,001 INFO  [                ome.services.blitz.Entry] (Thread-3  ) TERM: Shutdown requested.";

    fn happenings(lines: &[&str]) -> Vec<Happening> {
        let mut logins = Logins::default();
        lines
            .iter()
            .filter_map(|line| parse(line))
            .filter_map(|entry| logins.happening(&entry))
            .collect()
    }

    #[test]
    fn the_real_lines_parse() {
        let entry = parse(THROTTLE).unwrap();
        assert_eq!(entry.date, "2025-08-29 10:14:06,016");
        assert_eq!(entry.level, "WARN");
        assert_eq!(entry.logger, "ome.security.auth.LoginAttemptListener");
        assert_eq!(entry.thread, "l.Server-2");
        assert_eq!(
            entry.message,
            "3 failed logins for root. Throttling for 3000"
        );
        assert_eq!(
            parse("\tat ome.logic.AdminImpl.checkPassword(AdminImpl.java:1)"),
            None
        );
    }

    #[test]
    fn a_first_failure_is_the_check_then_false_and_a_success_is_nothing() {
        let root = Happening::LoginFailed {
            user: "root".into(),
        };
        assert_eq!(happenings(&[CHECK_ROOT, FALSE]), [root]);
        assert_eq!(happenings(&[CHECK_ROOT, TRUE]), []);
    }

    #[test]
    fn a_throttled_failure_is_reported_once() {
        let root = Happening::LoginFailed {
            user: "root".into(),
        };
        assert_eq!(
            happenings(&[CHECK_ROOT, THROTTLE, FALSE]),
            std::slice::from_ref(&root)
        );
        assert_eq!(happenings(&[THROTTLE]), [root]);
    }

    #[test]
    fn start_and_shutdown_lines_are_server_up_and_down() {
        assert_eq!(happenings(&[UP]), [Happening::ServerUp]);
        assert_eq!(
            happenings(&[DOWN]),
            [Happening::ServerDown {
                reason: "TERM: Shutdown requested.".into()
            }]
        );
    }
}
