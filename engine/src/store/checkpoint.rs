//! Checkpoints the WAL on a thread of its own, so that no commit waits while one is copied back.
//!
//! By default SQLite checkpoints inside the commit that takes the WAL past 1,000 pages: that
//! commit also copies the WAL into the database file and syncs it, which made about one commit
//! in a hundred several times slower than the rest (the p99 of event → outbox). While a
//! [`Checkpointer`] runs on a store file, every connection to that file this process opens only
//! nudges it after such a commit. A connection still checkpoints inline once the WAL passes
//! [`INLINE_AT`] pages, so the WAL stays bounded even if the thread falls behind. Other
//! processes on the same file (the CLI beside `herald serve`) checkpoint inline as before.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;

use super::{Result, Store, StoreError};

/// WAL pages after which a commit nudges the checkpointer (SQLite's own default threshold).
pub const NUDGE_AT: i32 = 1_000;

/// WAL pages after which a commit checkpoints inline, as if no checkpointer ran. Under commits
/// that never pause, a checkpoint beside them cannot start the WAL over (a commit always came
/// in between): then this bounds the WAL, and such a commit comes four times less often than
/// with SQLite's default.
pub const INLINE_AT: i32 = 4_000;

/// Rest after a checkpoint that could not copy the whole WAL (commits went on meanwhile), so
/// that the checkpointer's syncs do not crowd the commits'.
const BEHIND_REST: Duration = Duration::from_millis(5);

/// Each running checkpointer's nudge, by the database file it checkpoints.
static NUDGES: Mutex<Vec<(PathBuf, SyncSender<Nudge>)>> = Mutex::new(Vec::new());

enum Nudge {
    Checkpoint,
    Stop,
}

/// The thread that checkpoints the store's WAL; it stops when dropped.
pub struct Checkpointer {
    file: PathBuf,
    thread: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Checkpoint `store`'s file in the background, on `store`'s connection, for every
    /// connection to that file this process opens from now on (those opened before keep
    /// checkpointing inline).
    pub fn start(store: Store) -> Result<Checkpointer> {
        let file = identity(&store.path);
        let (nudge, nudged) = mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name("herald-checkpoint".into())
            .spawn(move || run(&store.conn, &nudged))
            .map_err(|source| StoreError::Thread {
                name: "herald-checkpoint",
                source,
            })?;
        nudges().push((file.clone(), nudge));
        Ok(Checkpointer {
            file,
            thread: Some(thread),
        })
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let mut nudges = nudges();
        if let Some(at) = nudges.iter().position(|(file, _)| *file == self.file) {
            let (_, nudge) = nudges.swap_remove(at);
            drop(nudges);
            let _ = nudge.send(Nudge::Stop);
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(conn: &Connection, nudged: &Receiver<Nudge>) {
    while let Ok(Nudge::Checkpoint) = nudged.recv() {
        if let Err(err) = checkpoint(conn) {
            tracing::warn!(%err, "background WAL checkpoint failed; commits checkpoint inline past {INLINE_AT} pages");
            std::thread::sleep(BEHIND_REST);
        }
    }
}

/// Copy the WAL back without holding the commits off. If they went on meanwhile, the WAL is not
/// started over yet: rest, so that the checkpointer's syncs do not crowd the commits'.
fn checkpoint(conn: &Connection) -> Result<()> {
    let (log, copied) = conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE)?;
    if copied < log {
        std::thread::sleep(BEHIND_REST);
    }
    Ok(())
}

fn nudges() -> MutexGuard<'static, Vec<(PathBuf, SyncSender<Nudge>)>> {
    NUDGES.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The database file `path` names, however it is spelled.
fn identity(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// Set how `conn`, open on `path`, checkpoints: through the file's running checkpointer if it
/// has one, else SQLite's default (inline, past 1,000 pages).
pub(super) fn configure(conn: &mut Connection, path: &Path) -> Result<()> {
    let file = identity(path);
    let Some(nudge) = nudges()
        .iter()
        .find(|(running, _)| *running == file)
        .map(|(_, nudge)| nudge.clone())
    else {
        return Ok(());
    };
    conn.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
        // Never an error from here: the commit has happened, and an error would report it
        // failed (SQLite's own hook ignores a checkpoint that could not run, too).
        if pages >= INLINE_AT {
            if let Err(err) = wal.checkpoint() {
                tracing::debug!(%err, pages, "inline WAL checkpoint did not run");
            }
        } else if pages >= NUDGE_AT {
            // Full: a nudge is already waiting. Disconnected: the checkpointer stopped.
            let _ = nudge.try_send(Nudge::Checkpoint);
        }
        Ok(())
    }))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::event::{self, Event};

    /// A WAL frame: a page and its 24-byte header (the file starts with a 32-byte header).
    const FRAME: u64 = 4096 + 24;

    fn events(from: usize, count: usize) -> Vec<Event> {
        (from..from + count)
            .map(|i| {
                let text = format!(
                    r#"{{"id":"e{i}","source":"test","type":"omero.user.created","time":"2026-11-23T09:00:00Z","data":{{"user":{{"id":{i},"name":"user-{i}-{}"}}}}}}"#,
                    "x".repeat(300)
                );
                event::from_str(&text, Utc::now()).unwrap()
            })
            .collect()
    }

    /// The most frames the WAL ever held (SQLite reuses the file from its start after a
    /// checkpoint, and never shrinks it).
    fn high_water(path: &Path) -> u64 {
        let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len());
        wal.saturating_sub(32) / FRAME
    }

    /// A fresh store on `path`, given about `frames` WAL frames of commits (ten events each);
    /// the WAL's high-water mark after.
    struct Writes {
        store: Store,
        path: PathBuf,
        next: usize,
        per_commit: u64,
        /// Between two commits, as under a steady load that is not the most the disk can take.
        pause: Duration,
    }

    impl Writes {
        fn open(path: &Path, pause: Duration) -> Writes {
            let mut writes = Writes {
                store: Store::open(path).unwrap(),
                path: path.to_owned(),
                next: 0,
                per_commit: 0,
                pause,
            };
            // Twenty commits fill far less than a checkpoint's worth: the WAL only grew.
            writes.commits(20);
            writes.per_commit = (high_water(path) / 20).max(1);
            writes
        }

        fn commits(&mut self, count: u64) {
            for _ in 0..count {
                self.store
                    .ingest(&events(self.next, 10), Utc::now())
                    .unwrap();
                self.next += 10;
                std::thread::sleep(self.pause);
            }
        }

        /// Commit about `frames` more frames; the high-water mark once the checkpointer, if
        /// any, had time to finish.
        fn frames(&mut self, frames: u64) -> u64 {
            self.commits(frames / self.per_commit + 1);
            std::thread::sleep(Duration::from_millis(200));
            self.commits(1);
            high_water(&self.path)
        }
    }

    #[test]
    fn a_running_checkpointer_keeps_the_wal_near_its_nudge_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.db");
        let _checkpointer = Checkpointer::start(Store::open(&path).unwrap()).unwrap();
        let frames = Writes::open(&path, Duration::from_millis(1)).frames(4 * NUDGE_AT as u64);
        assert!(
            frames < 2 * NUDGE_AT as u64,
            "the WAL grew to {frames} frames"
        );
    }

    #[test]
    fn commits_checkpoint_inline_only_past_the_bound() {
        // A checkpointer that never answers, as if it had fallen behind.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("herald.db");
        Store::open(&path).unwrap();
        let (nudge, _unread) = mpsc::sync_channel(1);
        nudges().push((identity(&path), nudge));
        let mut writes = Writes::open(&path, Duration::ZERO);
        let frames = writes.frames(2 * NUDGE_AT as u64);
        assert!(
            frames >= 2 * NUDGE_AT as u64,
            "a commit checkpointed inline at {frames} frames"
        );
        let frames = writes.frames(INLINE_AT as u64 + NUDGE_AT as u64);
        assert!(
            (INLINE_AT as u64..INLINE_AT as u64 + 200).contains(&frames),
            "the WAL grew to {frames} frames, past the inline bound"
        );
        nudges().retain(|(file, _)| *file != identity(&path));
    }

    #[test]
    fn other_files_keep_sqlites_own_checkpoints() {
        let dir = tempfile::tempdir().unwrap();
        let watched = dir.path().join("watched.db");
        let _checkpointer = Checkpointer::start(Store::open(&watched).unwrap()).unwrap();
        let other = dir.path().join("other.db");
        let frames = Writes::open(&other, Duration::ZERO).frames(3 * NUDGE_AT as u64);
        assert!(
            frames < NUDGE_AT as u64 + 200,
            "the other file's WAL grew to {frames} frames"
        );
    }
}
