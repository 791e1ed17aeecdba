//! Schedule state: for each scheduled rule, the instant through which its ticks have been journaled.

use chrono::{DateTime, Utc};
use rusqlite::OptionalExtension;

use super::{Result, Store};

impl Store {
    /// The instant through which `rule`'s ticks are journaled; `None` before its first start.
    pub fn schedule_through(&self, rule: &str) -> Result<Option<DateTime<Utc>>> {
        let secs: Option<i64> = self
            .conn
            .query_row(
                "SELECT through FROM schedule_state WHERE rule = ?1",
                [rule],
                |row| row.get(0),
            )
            .optional()?;
        Ok(secs.and_then(|s| DateTime::from_timestamp(s, 0)))
    }

    /// Record that `rule`'s ticks are journaled through `instant` (never moves backwards).
    pub fn set_schedule_through(&mut self, rule: &str, instant: DateTime<Utc>) -> Result<()> {
        self.conn.execute(
            "INSERT INTO schedule_state (rule, through) VALUES (?1, ?2)
             ON CONFLICT (rule) DO UPDATE SET through = max(through, excluded.through)",
            rusqlite::params![rule, instant.timestamp()],
        )?;
        Ok(())
    }
}
