//! Journaled events written back out (`herald export`): each envelope as it was received.

use chrono::{DateTime, Utc};

use super::Store;

impl Store {
    /// Hand `each` the JSON envelope of every journaled event whose time is at or after
    /// `since`, in journal order; returns how many there were.
    pub fn export_since(
        &self,
        since: DateTime<Utc>,
        mut each: impl FnMut(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<usize> {
        let mut stmt = self
            .conn
            .prepare("SELECT time, envelope FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        let mut count = 0;
        while let Some(row) = rows.next()? {
            let time: String = row.get(0)?;
            let recent = DateTime::parse_from_rfc3339(&time).is_ok_and(|t| t >= since);
            if recent {
                each(&row.get::<_, String>(1)?)?;
                count += 1;
            }
        }
        Ok(count)
    }
}
