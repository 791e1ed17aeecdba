//! The log sources (`omero-log`, `omero-web-log`): follow a file, turn lines into events, journal them.
//!
//! Runs on a thread of its own (file reads block). Each poll reads the whole lines after the
//! saved position, journals their events (answered after fsync), then saves the position, so
//! a restart resumes at the stored offset. An event's id is the inode and offset of its line,
//! so a line read twice after a crash is journaled once. A first start begins at the current
//! end of the file: old lines are not mailed.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};

use super::tail::{self, Line, Position};
use crate::event::{self, Event};
use crate::sources::Feed;
use crate::sources::readiness::Part;
use crate::store::Store;

/// What a log line says, for one kind of log.
pub trait Lines: Send {
    /// The event type and data of `line`, if it is one Herald reports.
    fn event(&mut self, line: &Line) -> Option<(&'static str, Value)>;
    /// The local time written at the start of a line: `2025-08-29 10:14:06,008`.
    fn date<'a>(&self, line: &'a Line) -> Option<&'a str> {
        line.text.get(..23)
    }
}

/// One followed file.
pub struct LogSource {
    pub name: String,
    pub path: PathBuf,
    pub poll: Duration,
    /// The zone the file's local times are in.
    pub zone: jiff::tz::TimeZone,
    /// The CloudEvents `source` of its events.
    pub source: String,
    pub feed: Feed,
    pub store: Store,
    pub ready: Part,
    pub lines: Box<dyn Lines>,
}

impl LogSource {
    /// Follow the file until the process stops.
    pub fn run(mut self) {
        let mut position = match self.start() {
            Ok(position) => position,
            Err(err) => {
                self.ready.failing(format!("{err:#}"));
                tracing::error!("{}: cannot start: {err:#}", self.name);
                return;
            }
        };
        self.ready.ready();
        while !self.feed.stop.load(Ordering::SeqCst) {
            match self.poll(&mut position) {
                // More is waiting (a backlog past one read): go on at once.
                Ok(true) => {
                    self.ready.ready();
                    continue;
                }
                Ok(false) => self.ready.ready(),
                Err(err) => self.report(&format!("{err:#}")),
            }
            self.sleep();
        }
    }

    /// The saved position, or the current end (the start of a file that does not exist yet).
    fn start(&mut self) -> anyhow::Result<Position> {
        let saved = self.store.source_cursor(&self.name)?;
        if let Some(position) = saved.and_then(|text| serde_json::from_str(&text).ok()) {
            return Ok(position);
        }
        let position = tail::at_end(&self.path).unwrap_or_default();
        self.save(&position, 0, 0)?;
        Ok(position)
    }

    /// Read, journal and save once; true when more is waiting in the file.
    fn poll(&mut self, position: &mut Position) -> anyhow::Result<bool> {
        let mut next = *position;
        let taken = tail::read(&self.path, &mut next)?;
        if let Some(lost) = &taken.lost {
            tracing::warn!("{}: {lost}", self.name);
        }
        let events: Vec<Event> = taken
            .lines
            .iter()
            .filter_map(|line| self.event(line))
            .collect();
        let emitted = events.len();
        if !events.is_empty() {
            let writer = self.feed.writer.clone();
            self.feed
                .runtime
                .block_on(writer.journal(events))
                .map_err(|err| anyhow::anyhow!("cannot journal: {err}"))?;
            crate::metrics::source_emitted(&self.name, emitted);
        }
        let behind = i64::try_from(taken.behind).unwrap_or(i64::MAX);
        crate::metrics::source_lag(&self.name, behind);
        if next != *position || emitted > 0 {
            self.save(&next, emitted, behind)?;
        }
        *position = next;
        Ok(taken.behind > 0 && !taken.lines.is_empty())
    }

    fn event(&mut self, line: &Line) -> Option<Event> {
        let (kind, data) = self.lines.event(line)?;
        let time = self
            .lines
            .date(line)
            .and_then(|date| local_time(date, &self.zone))
            .unwrap_or_else(Utc::now);
        let envelope = json!({
            "specversion": "1.0",
            "id": format!("{}:{}", line.inode, line.offset),
            "source": self.source,
            "type": kind,
            "time": time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        event::from_json(envelope, time)
            .inspect_err(|err| tracing::warn!("{}: line at {}: {err}", self.name, line.offset))
            .ok()
    }

    fn save(&mut self, position: &Position, emitted: usize, behind: i64) -> anyhow::Result<()> {
        let cursor = json!({"inode": position.inode, "offset": position.offset, "behind": behind});
        self.store
            .save_source_cursor(&self.name, &cursor.to_string(), emitted, Utc::now())?;
        Ok(())
    }

    fn report(&mut self, error: &str) {
        tracing::warn!("{}: {error}", self.name);
        crate::metrics::source_error(&self.name);
        let _ = self
            .store
            .record_source_error(&self.name, error, Utc::now());
        self.ready.degraded(error.to_owned());
    }

    fn sleep(&self) {
        let step = Duration::from_millis(50).min(self.poll);
        let mut slept = Duration::ZERO;
        while slept < self.poll && !self.feed.stop.load(Ordering::SeqCst) {
            std::thread::sleep(step);
            slept += step;
        }
    }
}

/// `2025-08-29 10:14:06,008` in `zone` → UTC.
pub fn local_time(date: &str, zone: &jiff::tz::TimeZone) -> Option<DateTime<Utc>> {
    let iso = date.replacen(' ', "T", 1).replacen(',', ".", 1);
    let civil: jiff::civil::DateTime = iso.parse().ok()?;
    let stamp = zone.to_timestamp(civil).ok()?;
    DateTime::from_timestamp_millis(stamp.as_millisecond())
}

/// The zone called `name` from the system's zone files; UTC when none is named.
pub fn zone(name: Option<&str>) -> anyhow::Result<jiff::tz::TimeZone> {
    match name {
        None => Ok(jiff::tz::TimeZone::UTC),
        Some(name) => jiff::tz::TimeZone::get(name).map_err(|err| {
            anyhow::anyhow!(
                "unknown time zone `{name}` ({err}); install the tzdata package or use a name from /usr/share/zoneinfo"
            )
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logback_dates_are_read_in_the_configured_zone() {
        let london = zone(Some("Europe/London")).unwrap();
        let summer = local_time("2025-08-29 10:14:06,008", &london).unwrap();
        assert_eq!(summer.to_rfc3339(), "2025-08-29T09:14:06.008+00:00");
        let winter = local_time("2025-12-01 10:00:00,000", &london).unwrap();
        assert_eq!(winter.to_rfc3339(), "2025-12-01T10:00:00+00:00");
        assert!(zone(Some("Mars/Olympus")).is_err());
        assert_eq!(local_time("garbage", &london), None);
    }
}
