//! The `omero-eventlog` source: polls OMERO's `eventlog` with a gap-aware cursor and journals its events.
//!
//! Each poll reads the rows above the highest id seen and the rows that filled a gap, maps
//! the ones Herald reports, journals them (answered after fsync), and only then saves the
//! cursor. Re-reading after a crash is harmless: an event's id is the database's
//! `omero.db.uuid` and the `eventlog` id, and the journal keeps one event per id. The first
//! start holds the current end (`start: end`) before `/readyz` reports ready.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::{Client, Row};

use super::cursor::Cursor;
use super::mapping::{LogRow, Mapper, touches_directory};
use crate::config::{EventlogConfig, Start};
use crate::directory::omero_db::{self, DbError};
use crate::event::Event;
use crate::sources::Feed;
use crate::sources::readiness::Part;
use crate::store::Store;

/// The source's name in the store, metrics and `herald sources`.
pub const NAME: &str = "omero-eventlog";
/// At a first `start: end`, ids this far below the end are checked for transactions still open.
const START_WINDOW: i64 = 10_000;
/// How long journaling waits for a directory refresh it asked for.
const DIRECTORY_WAIT: Duration = Duration::from_secs(60);
/// The longest wait between two connection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// What the source reads with and reports to.
pub struct Eventlog {
    pub config: EventlogConfig,
    pub feed: Feed,
    pub store: Arc<Mutex<Store>>,
    pub ready: Part,
    /// With `directory.source: omero-db`: asked to read the directory again when rows about users,
    /// groups or memberships were read, before their events are journaled.
    pub directory: Option<mpsc::Sender<oneshot::Sender<()>>>,
}

/// Why one poll failed.
#[derive(Debug, thiserror::Error)]
enum PollError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error("cannot journal: {0}")]
    Journal(String),
    #[error("the store: {0}")]
    Store(String),
}

impl Eventlog {
    /// Run until the process stops: connect, hold the start position, poll; reconnect on errors.
    pub async fn run(self) {
        let mut backoff = self.config.poll;
        while !self.stopping() {
            match self.session().await {
                Ok(()) => return,
                Err(err) => {
                    tracing::warn!("{NAME}: {err}; trying again in {backoff:?}");
                    self.report(&err.to_string());
                    // A position saved in the store is held even while the database is down.
                    if self.holds_a_position() {
                        self.ready.degraded(format!("cannot read eventlog: {err}"));
                    } else {
                        self.ready.failing(err.to_string());
                    }
                }
            }
            tokio::select! {
                () = tokio::time::sleep(backoff) => {}
                () = self.feed.stopped() => return,
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn holds_a_position(&self) -> bool {
        self.ready.state().is_ready()
            || matches!(
                self.with_store(|store| store.source_cursor(NAME)),
                Ok(Some(_))
            )
    }

    fn stopping(&self) -> bool {
        self.feed.stop.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// One connection's life: returns Ok at a stop, Err when the database fails.
    async fn session(&self) -> Result<(), PollError> {
        let client = omero_db::connect(&self.config.db).await?;
        let uuid = db_uuid(&client).await?;
        let mut cursor = self.start_position(&client).await?;
        let mut mapper = Mapper::load(&client, uuid).await?;
        self.ready.ready();
        tracing::info!(
            "{NAME}: reading eventlog after id {} (gaps: {})",
            cursor.high,
            cursor.gaps.len()
        );
        loop {
            let more = self.poll(&client, &mut cursor, &mut mapper).await?;
            self.ready.ready();
            if more {
                continue;
            }
            tokio::select! {
                () = tokio::time::sleep(self.config.poll) => {}
                () = self.feed.stopped() => return Ok(()),
            }
        }
    }

    /// The saved cursor, or on a first start the position `start` asks for (saved before it counts as held).
    async fn start_position(&self, client: &Client) -> Result<Cursor, PollError> {
        let saved = self.with_store(|store| store.source_cursor(NAME))?;
        if let Some(cursor) = saved.and_then(|text| saved_cursor(&text)) {
            return Ok(cursor);
        }
        let cursor = match self.config.start {
            Start::Beginning => Cursor::at(0),
            Start::End => at_end(client, now_ms()).await?,
        };
        self.save(&cursor, 0, 0)?;
        Ok(cursor)
    }

    /// Read, map and journal one batch; true when a full batch came back (read again at once).
    async fn poll(
        &self,
        client: &Client,
        cursor: &mut Cursor,
        mapper: &mut Mapper,
    ) -> Result<bool, PollError> {
        let (rows, full) = self.read(client, cursor).await?;
        let now = now_ms();
        let mut events: Vec<Event> = Vec::new();
        let mut directory = false;
        for row in &rows {
            if !cursor.see(row.id, now) {
                continue;
            }
            directory |= touches_directory(row);
            events.extend(mapper.event(client, row).await?);
        }
        let grace = i64::try_from(self.config.gap_grace.as_millis()).unwrap_or(i64::MAX);
        for gap in cursor.expire(now, grace) {
            tracing::warn!(
                "{NAME}: eventlog ids {}..={} never appeared within gap_grace; counted as rolled back",
                gap.from,
                gap.to
            );
        }
        if directory {
            self.refresh_directory().await;
        }
        let emitted = events.len();
        if !events.is_empty() {
            self.feed
                .writer
                .journal(events)
                .await
                .map_err(|err| PollError::Journal(err.to_string()))?;
            crate::metrics::source_emitted(NAME, emitted);
        }
        let behind = behind(client, cursor).await?;
        crate::metrics::source_lag(NAME, behind);
        self.save(cursor, emitted, behind)?;
        Ok(full)
    }

    /// The rows that filled a gap, then up to `batch` rows above `high`, in id order.
    async fn read(&self, client: &Client, cursor: &Cursor) -> Result<(Vec<LogRow>, bool), DbError> {
        let zone = self.config.timezone.clone();
        let mut rows = Vec::new();
        if !cursor.gaps.is_empty() {
            let (firsts, lasts) = cursor.gap_bounds();
            let sql = format!(
                "{SELECT} JOIN unnest($2::int8[], $3::int8[]) AS g(lo, hi) \
                 ON el.id BETWEEN g.lo AND g.hi ORDER BY el.id"
            );
            let found = client
                .query(&sql, &[&zone, &firsts, &lasts])
                .await
                .map_err(query)?;
            rows.extend(readable(&found));
        }
        let limit = i64::from(self.config.batch);
        let sql = format!("{SELECT} WHERE el.id > $2 ORDER BY el.id LIMIT $3");
        let found = client
            .query(&sql, &[&zone, &cursor.high, &limit])
            .await
            .map_err(query)?;
        let full = found.len() as i64 == limit;
        rows.extend(readable(&found));
        Ok((rows, full))
    }

    /// Have the directory read again and wait until it is in force (a new user's first comment
    /// is then mailed to them); after a minute the events go ahead with the directory in force.
    async fn refresh_directory(&self) {
        let Some(requests) = &self.directory else {
            return;
        };
        let (reply, done) = oneshot::channel();
        if requests.send(reply).await.is_err() {
            return;
        }
        if tokio::time::timeout(DIRECTORY_WAIT, done).await.is_err() {
            tracing::warn!("{NAME}: the directory refresh takes long; going on without it");
        }
    }

    fn save(&self, cursor: &Cursor, emitted: usize, behind: i64) -> Result<(), PollError> {
        let saved = serde_json::json!({
            "high": cursor.high,
            "gaps": cursor.gaps,
            "low_water": cursor.low_water(),
            "behind": behind,
        });
        self.with_store(|store| {
            store.save_source_cursor(NAME, &saved.to_string(), emitted, Utc::now())
        })
    }

    fn report(&self, error: &str) {
        crate::metrics::source_error(NAME);
        let _ = self.with_store(|store| store.record_source_error(NAME, error, Utc::now()));
    }

    fn with_store<T>(
        &self,
        work: impl FnOnce(&mut Store) -> crate::store::Result<T>,
    ) -> Result<T, PollError> {
        // Short statements on a store of its own: blocking here briefly is fine.
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        tokio::task::block_in_place(|| work(&mut store))
            .map_err(|e| PollError::Store(e.to_string()))
    }
}

/// The columns every read selects; `$1` is the zone of `event.time` (NULL: the database's).
const SELECT: &str = "SELECT el.id, el.action, el.entitytype, el.entityid, \
     e.time AT TIME ZONE coalesce($1::text, current_setting('TimeZone')) \
     FROM eventlog el LEFT JOIN event e ON e.id = el.event";

fn query(source: tokio_postgres::Error) -> DbError {
    DbError::Query {
        what: "eventlog",
        source,
    }
}

/// The rows that read as expected; one that does not is skipped (its id is still seen, by the next read's gap logic).
fn readable(rows: &[Row]) -> Vec<LogRow> {
    rows.iter()
        .filter_map(|row| {
            let read = || -> Result<LogRow, tokio_postgres::Error> {
                Ok(LogRow {
                    id: row.try_get(0)?,
                    action: row.try_get(1)?,
                    entity_type: row.try_get(2)?,
                    entity_id: row.try_get(3)?,
                    time: row.try_get::<_, Option<DateTime<Utc>>>(4)?,
                })
            };
            read()
                .inspect_err(|err| {
                    tracing::warn!("{NAME}: skipping an unreadable eventlog row: {err}")
                })
                .ok()
        })
        .collect()
}

/// The cursor saved in the store, if it reads.
fn saved_cursor(text: &str) -> Option<Cursor> {
    serde_json::from_str(text)
        .inspect_err(|err| {
            tracing::warn!("{NAME}: the saved cursor does not read ({err}); starting again")
        })
        .ok()
}

/// The current end, with the ids just below it that are not visible yet counted as gaps: a
/// transaction that took its ids before this start and commits after it is still read.
async fn at_end(client: &Client, now: i64) -> Result<Cursor, DbError> {
    let end: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM eventlog", &[])
        .await
        .map_err(query)?
        .try_get(0)
        .map_err(query)?;
    let base = (end - START_WINDOW).max(0);
    let ids = client
        .query(
            "SELECT id FROM eventlog WHERE id > $1 ORDER BY id",
            &[&base],
        )
        .await
        .map_err(query)?;
    let mut cursor = Cursor::at(base);
    for id in ids.iter().filter_map(|row| row.try_get::<_, i64>(0).ok()) {
        cursor.see(id, now);
    }
    Ok(cursor)
}

/// Rows above the cursor not read yet (0 when caught up).
async fn behind(client: &Client, cursor: &Cursor) -> Result<i64, DbError> {
    let end: i64 = client
        .query_one("SELECT coalesce(max(id), 0) FROM eventlog", &[])
        .await
        .map_err(query)?
        .try_get(0)
        .map_err(query)?;
    Ok((end - cursor.high).max(0))
}

/// The `omero.db.uuid` OMERO wrote at creation: it names this database in event ids.
async fn db_uuid(client: &Client) -> Result<String, DbError> {
    let row = client
        .query_opt(
            "SELECT value FROM configuration WHERE name = 'omero.db.uuid'",
            &[],
        )
        .await
        .map_err(|source| DbError::Query {
            what: "configuration",
            source,
        })?;
    row.and_then(|row| row.try_get::<_, Option<String>>(0).ok().flatten())
        .filter(|uuid| !uuid.trim().is_empty())
        .ok_or(DbError::Missing("omero.db.uuid in the configuration table"))
}

fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}
