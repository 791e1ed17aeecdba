//! Example rule `quiet-hours`: mail the admins about failed logins, but hold those that happen
//! during the night (in the site's local time) and send them in one mail on the morning tick.

use herald_sdk::{
    Event, LoginFailed, Message, Payload, Recipient, Rule, config, export_rule, kv, safe,
};
use serde::Deserialize;

/// The kv key holding the night's failures, one `time user` line each.
const HELD: &str = "held";

/// `config:` keys.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Settings {
    /// The site's offset from UTC in minutes (60 for CET). The sandbox has no time-zone
    /// database: write the offset in force, or run the rule twice a year with a new one.
    utc_offset_minutes: i64,
    /// Local hour (0-23) quiet hours start.
    quiet_from: u8,
    /// Local hour (0-23) quiet hours end; the schedule's tick should come at or after it.
    quiet_until: u8,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            utc_offset_minutes: 0,
            quiet_from: 22,
            quiet_until: 7,
        }
    }
}

impl Settings {
    /// The local hour of `unix_ms`.
    fn local_hour(&self, unix_ms: i64) -> u8 {
        let minutes = unix_ms.div_euclid(60_000) + self.utc_offset_minutes;
        (minutes.div_euclid(60).rem_euclid(24)) as u8
    }

    fn quiet(&self, hour: u8) -> bool {
        if self.quiet_from <= self.quiet_until {
            (self.quiet_from..self.quiet_until).contains(&hour)
        } else {
            hour >= self.quiet_from || hour < self.quiet_until
        }
    }
}

pub struct QuietHours;

impl Rule for QuietHours {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let settings: Settings = config::get()?;
        match &event.data {
            Payload::LoginFailed(failed)
                if settings.quiet(settings.local_hour(event.time_unix_ms)) =>
            {
                hold(&event, failed);
                Ok(Vec::new())
            }
            Payload::LoginFailed(failed) => Ok(vec![now(&event, failed)]),
            Payload::Tick(_) => Ok(morning().into_iter().collect()),
            _ => Ok(Vec::new()),
        }
    }
}

fn now(event: &Event, failed: &LoginFailed) -> Message {
    let user = safe::header_value(&failed.user);
    Message::new(
        format!("[OMERO] Failed login for {user}"),
        format!("A login as {user} failed at {}.\n", event.time),
    )
    .to(Recipient::Admins)
}

fn hold(event: &Event, failed: &LoginFailed) {
    let mut held = kv::get(HELD).unwrap_or_default();
    let line = format!("{} {}\n", event.time, safe::header_value(&failed.user));
    held.extend_from_slice(line.as_bytes());
    kv::set(HELD, &held, Some(2 * 86_400));
}

/// One mail with the night's failures, if there were any.
fn morning() -> Option<Message> {
    let held = kv::get(HELD)?;
    kv::delete(HELD);
    let lines = String::from_utf8_lossy(&held).into_owned();
    let count = lines.lines().count();
    let mail = Message::new(
        format!("[OMERO] {count} failed login(s) during quiet hours"),
        format!("Held during quiet hours (time, user):\n{lines}"),
    );
    Some(mail.to(Recipient::Admins))
}

export_rule!(QuietHours, config = Settings);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_hours_wrap_midnight_in_local_time() {
        let cet = Settings {
            utc_offset_minutes: 60,
            ..Settings::default()
        };
        // 21:30Z is 22:30 in CET: quiet. 05:59Z is 06:59: quiet. 06:00Z is 07:00: not.
        let hour = |iso_ms: i64| cet.quiet(cet.local_hour(iso_ms));
        let day = 1_795_392_000_000; // 2026-11-23T00:00:00Z
        assert!(hour(day + (21 * 60 + 30) * 60_000));
        assert!(hour(day + (5 * 60 + 59) * 60_000));
        assert!(!hour(day + 6 * 3_600_000));
        assert!(!hour(day + 12 * 3_600_000));
    }
}
