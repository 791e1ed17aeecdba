//! What the CLI and the admin API both do: broadcasts (`herald email`), outbox filters and rule listings.

pub mod broadcast;
pub mod rules;

use chrono::{DateTime, Utc};

/// An RFC 3339 time, or an age (`90m`, `7d`) counted back from now.
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(time) = DateTime::parse_from_rfc3339(text) {
        return Ok(time.with_timezone(&Utc));
    }
    let age = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is neither an RFC 3339 time (2026-11-23T09:00:00Z) nor an age (7d, 2h)")
    })?;
    Ok(Utc::now() - chrono::Duration::from_std(age).map_err(|e| e.to_string())?)
}
