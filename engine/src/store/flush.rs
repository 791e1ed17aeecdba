//! The flusher: a thread that syncs the WAL soon after a commit that did not wait for the disk.
//!
//! Evaluation results and delivery rounds are committed without their own `fdatasync`
//! ([`super::Store::written`]): the commit is in the WAL, in the kernel's page cache, so a
//! process that dies loses none of it, and only a power loss or a kernel crash could. This
//! thread bounds that window: it syncs the WAL within [`FLUSH_WITHIN`] of the first such
//! commit, and once more when the store is dropped. A commit that syncs (the journal) syncs
//! every frame written before it too, so it resets the window: there is one flusher per
//! database file in the process, which every store on that file tells about its commits.

use std::fs::File;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The longest a written commit waits for its sync: what a power loss can take back.
pub const FLUSH_WITHIN: Duration = Duration::from_millis(100);

#[derive(Default)]
struct State {
    /// When the oldest commit not yet synced was written.
    unsynced_since: Option<Instant>,
    /// When the newest written commit was made.
    last_written: Option<Instant>,
    closing: bool,
    /// Why a sync of the WAL failed. It stays: the kernel may have dropped the pages it could
    /// not write and report later syncs as done, so nothing written since is known to be on
    /// disk, and the stores on this file commit nothing more.
    failed: Option<String>,
    /// Syncs done so far (for tests).
    syncs: u64,
}

impl State {
    /// Count a sync, and keep its failure for good.
    fn done(&mut self, synced: std::io::Result<()>) {
        self.syncs += 1;
        if let Err(err) = synced {
            self.failed = Some(err.to_string());
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    wake: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The flusher of one database file, shared by every store on it; its thread starts at the
/// first written commit. Dropping the last handle syncs what is left and stops the thread.
pub(crate) struct Flusher {
    shared: Arc<Shared>,
    wal: PathBuf,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// The flushers of the database files open in this process.
static FLUSHERS: Mutex<Vec<(PathBuf, Weak<Flusher>)>> = Mutex::new(Vec::new());

impl Flusher {
    /// The flusher of the database at `db`, named as SQLite opened it (it syncs `<db>-wal`,
    /// the WAL SQLite names after that file), shared with every other store on the same file.
    pub fn of(db: &Path) -> Arc<Flusher> {
        let key = std::fs::canonicalize(db).unwrap_or_else(|_| db.to_owned());
        let mut flushers = FLUSHERS.lock().unwrap_or_else(PoisonError::into_inner);
        flushers.retain(|(_, flusher)| flusher.strong_count() > 0);
        let open = flushers.iter().find(|(path, _)| *path == key);
        if let Some(flusher) = open.and_then(|(_, flusher)| flusher.upgrade()) {
            return flusher;
        }
        let flusher = Arc::new(Flusher {
            shared: Arc::default(),
            wal: wal_path(db),
            thread: Mutex::new(None),
        });
        flushers.push((key, Arc::downgrade(&flusher)));
        flusher
    }

    /// A commit was written to the WAL without a sync; the thread ([`Flusher::start`]ed before
    /// the commit) syncs it within [`FLUSH_WITHIN`].
    pub fn written(&self) {
        let now = Instant::now();
        let mut state = self.shared.lock();
        state.last_written = Some(now);
        if state.unsynced_since.is_none() {
            state.unsynced_since = Some(now);
            self.shared.wake.notify_one();
        }
    }

    /// A commit that began at `began` synced the WAL: every frame written before it began
    /// is on disk now. Later written commits still wait for the thread.
    pub fn synced(&self, began: Instant) {
        let mut state = self.shared.lock();
        if state.last_written.is_none_or(|last| last < began) {
            state.unsynced_since = None;
        }
    }

    /// Whether a written commit still waits for its sync (or a sync failed).
    pub fn unsynced(&self) -> bool {
        let state = self.shared.lock();
        state.unsynced_since.is_some() || state.failed.is_some()
    }

    /// Why a sync of the WAL failed, if one did: then no store on this file may commit again.
    pub fn failure(&self) -> Option<String> {
        self.shared.lock().failed.clone()
    }

    /// The WAL this flusher syncs.
    pub fn wal(&self) -> &Path {
        &self.wal
    }

    /// Record a failed sync as the thread does (for tests: a sync cannot be made to fail).
    #[cfg(test)]
    pub fn fail(&self, error: &str) {
        self.shared.lock().failed = Some(error.to_owned());
    }

    /// How many times the thread has synced the WAL.
    #[cfg(test)]
    pub fn syncs(&self) -> u64 {
        self.shared.lock().syncs
    }

    /// Sync now, on this thread, if a written commit waits for it.
    fn sync_now(&self) {
        let mut state = self.shared.lock();
        if state.unsynced_since.is_none() || state.failed.is_some() {
            return;
        }
        state.unsynced_since = None;
        state.done(sync(&self.wal));
    }

    /// Start the thread unless it runs already.
    pub fn start(&self) -> std::io::Result<()> {
        let mut thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner);
        if thread.is_none() {
            let shared = self.shared.clone();
            let wal = self.wal.clone();
            *thread = Some(
                std::thread::Builder::new()
                    .name("herald-flush".into())
                    .spawn(move || run(&shared, &wal))?,
            );
        }
        Ok(())
    }
}

impl Drop for Flusher {
    fn drop(&mut self) {
        self.shared.lock().closing = true;
        self.shared.wake.notify_one();
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(thread) = thread.take() {
            let _ = thread.join();
        }
    }
}

/// Sync every database file of the process that has written commits waiting: for a process
/// about to exit while a thread that owns a store may still be running (so that store's
/// drop, which would sync, may never come).
pub fn sync_all() {
    let flushers: Vec<Arc<Flusher>> = FLUSHERS
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
        .filter_map(|(_, flusher)| flusher.upgrade())
        .collect();
    for flusher in flushers {
        flusher.sync_now();
    }
}

fn run(shared: &Shared, wal: &Path) {
    let mut state = shared.lock();
    loop {
        let since = match state.unsynced_since {
            // After a failed sync nothing is synced again: nothing more is committed either.
            Some(since) if state.failed.is_none() => Some(since),
            _ => None,
        };
        let Some(since) = since else {
            if state.closing {
                return;
            }
            state = shared
                .wake
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
            continue;
        };
        let left = FLUSH_WITHIN.saturating_sub(since.elapsed());
        if !state.closing && !left.is_zero() {
            state = shared
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
            continue;
        }
        state.unsynced_since = None;
        drop(state);
        let synced = sync(wal);
        state = shared.lock();
        state.done(synced);
    }
}

/// `fdatasync` the WAL. No WAL means its frames were checkpointed into the database, and a
/// checkpoint syncs both files.
fn sync(wal: &Path) -> std::io::Result<()> {
    let synced = File::open(wal).and_then(|file| file.sync_data());
    match synced {
        Ok(()) => crate::metrics::wal_sync(true),
        Err(err) if err.kind() == ErrorKind::NotFound => {}
        Err(err) => {
            crate::metrics::wal_sync(false);
            tracing::error!(
                "cannot sync {}: {err}; what was written to it since the last sync may not be on disk, so no store on it commits anything more: check the disk (dmesg), then restart Herald",
                wal.display(),
            );
            return Err(err);
        }
    }
    Ok(())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    PathBuf::from(wal)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Wait up to 5 s for `done`.
    fn eventually(done: impl Fn() -> bool) -> bool {
        let until = Instant::now() + Duration::from_secs(5);
        while Instant::now() < until {
            if done() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        done()
    }

    fn wal_of(dir: &tempfile::TempDir) -> PathBuf {
        let db = dir.path().join("herald.db");
        std::fs::write(wal_path(&db), b"frames").unwrap();
        db
    }

    /// A flusher with its thread running, on a file of its own.
    fn started() -> (tempfile::TempDir, Arc<Flusher>) {
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::of(&wal_of(&dir));
        flusher.start().unwrap();
        (dir, flusher)
    }

    #[test]
    fn a_written_commit_is_synced_within_the_window_and_not_at_once() {
        let (_dir, flusher) = started();
        let written = Instant::now();
        flusher.written();
        assert!(eventually(|| flusher.syncs() == 1 && !flusher.unsynced()));
        assert!(
            written.elapsed() >= FLUSH_WITHIN,
            "the sync waits to cover a group"
        );
        let metrics = crate::metrics::render();
        assert!(
            metrics.contains(r#"herald_store_wal_syncs_total{outcome="ok"}"#),
            "{metrics}"
        );
    }

    #[test]
    fn a_sync_clears_only_the_commits_written_before_it_began() {
        // No thread: nothing but `synced` clears the state here.
        let dir = tempfile::tempdir().unwrap();
        let flusher = Flusher::of(&wal_of(&dir));
        let began = Instant::now();
        std::thread::sleep(Duration::from_millis(1));
        flusher.written();
        flusher.synced(began);
        assert!(flusher.unsynced(), "written after that sync began");
        flusher.synced(Instant::now());
        assert!(!flusher.unsynced());
    }

    #[test]
    fn sync_now_syncs_only_when_a_written_commit_waits() {
        // No thread: only sync_now syncs here. (Not `sync_all`: it would sync the files of
        // the other tests running beside this one.)
        let (dir, other_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (written, idle) = (Flusher::of(&wal_of(&dir)), Flusher::of(&wal_of(&other_dir)));
        written.written();
        written.sync_now();
        idle.sync_now();
        assert!(!written.unsynced());
        assert_eq!((written.syncs(), idle.syncs()), (1, 0));
    }

    #[test]
    fn a_failed_sync_stays_failed_and_is_not_retried() {
        // A WAL under a plain file cannot be opened: the sync fails (and not as "not found").
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("plain"), b"").unwrap();
        let flusher = Flusher::of(&dir.path().join("plain/herald.db"));
        flusher.start().unwrap();
        flusher.written();
        assert!(eventually(|| flusher.failure().is_some()));
        assert!(
            flusher.unsynced(),
            "nothing since the last good sync is known to be on disk"
        );
        flusher.written();
        std::thread::sleep(FLUSH_WITHIN * 2);
        assert_eq!(flusher.syncs(), 1, "no sync after the failed one");
        assert!(flusher.unsynced());
    }

    #[test]
    fn stores_on_one_file_share_a_flusher_and_other_files_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let db = wal_of(&dir);
        let (one, two) = (Flusher::of(&db), Flusher::of(&db));
        assert!(Arc::ptr_eq(&one, &two));
        let other = Flusher::of(&dir.path().join("other.db"));
        assert!(!Arc::ptr_eq(&one, &other));
        one.start().unwrap();
        two.written();
        assert!(one.unsynced());
    }

    #[test]
    fn dropping_the_last_handle_syncs_what_is_left() {
        let (_dir, flusher) = started();
        let shared = flusher.shared.clone();
        flusher.written();
        drop(flusher);
        assert_eq!(shared.lock().syncs, 1);
        assert!(shared.lock().unsynced_since.is_none());
    }
}
