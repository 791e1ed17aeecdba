//! The OMERO connector's state in the store: each source's cursor and counts, and the last directory snapshot.

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, params};

use super::{Result, Store};

/// What the store knows about one source, for `herald sources`.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SourceState {
    pub source: String,
    /// The source's own position (JSON: an eventlog cursor, a log file's inode and offset…).
    pub cursor: serde_json::Value,
    /// Events it has journaled (new or duplicate), all runs together.
    pub emitted: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub updated_at: String,
}

impl Store {
    /// The saved position of `source`, if it has one.
    pub fn source_cursor(&self, source: &str) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT cursor FROM source_state WHERE source = ?1",
                [source],
                |row| row.get(0),
            )
            .optional()?)
    }

    /// Save `source`'s position after `emitted` more events were journaled; clears its last error.
    pub fn save_source_cursor(
        &mut self,
        source: &str,
        cursor: &str,
        emitted: usize,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO source_state (source, cursor, emitted, updated_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (source) DO UPDATE SET cursor = excluded.cursor,
                 emitted = emitted + excluded.emitted, updated_at = excluded.updated_at,
                 last_error = NULL, last_error_at = NULL",
            params![source, cursor, emitted as i64, now.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Record why `source` cannot go on right now (kept until its next saved position).
    pub fn record_source_error(
        &mut self,
        source: &str,
        error: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO source_state (source, cursor, updated_at, last_error, last_error_at)
             VALUES (?1, 'null', ?3, ?2, ?3)
             ON CONFLICT (source) DO UPDATE SET last_error = excluded.last_error,
                 last_error_at = excluded.last_error_at",
            params![source, error, now.to_rfc3339()],
        )?;
        Ok(())
    }

    /// Every source the store knows, by name.
    pub fn source_states(&self) -> Result<Vec<SourceState>> {
        let mut stmt = self.conn.prepare(
            "SELECT source, cursor, emitted, last_error, last_error_at, updated_at
             FROM source_state ORDER BY source",
        )?;
        let rows = stmt.query_map([], |row| {
            let cursor: String = row.get(1)?;
            Ok(SourceState {
                source: row.get(0)?,
                cursor: serde_json::from_str(&cursor).unwrap_or(serde_json::Value::String(cursor)),
                emitted: row.get(2)?,
                last_error: row.get(3)?,
                last_error_at: row.get(4)?,
                updated_at: row.get(5)?,
            })
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The last good directory snapshot (JSON) and when it was read.
    pub fn directory_snapshot(&self) -> Result<Option<(String, String)>> {
        Ok(self
            .conn
            .query_row(
                "SELECT snapshot, taken_at FROM directory_snapshot WHERE id = 1",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .optional()?)
    }

    /// Keep `snapshot` (JSON) as the last good one.
    pub fn save_directory_snapshot(
        &mut self,
        snapshot: &str,
        taken_at: DateTime<Utc>,
    ) -> Result<()> {
        self.conn.execute(
            "INSERT INTO directory_snapshot (id, taken_at, snapshot) VALUES (1, ?1, ?2)
             ON CONFLICT (id) DO UPDATE SET taken_at = excluded.taken_at, snapshot = excluded.snapshot",
            params![taken_at.to_rfc3339(), snapshot],
        )?;
        Ok(())
    }
}
