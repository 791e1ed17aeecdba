//! The directory from OMERO's database: read at start, refreshed on a period and on eventlog changes,
//! with the last good snapshot kept in Herald's store and served while the database is down.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use tokio::sync::{mpsc, oneshot};

use crate::config::DbConnection;
use crate::directory::Directory;
use crate::directory::omero_db::{self, DbError, Snapshot};
use crate::sources::Feed;
use crate::sources::readiness::Part;
use crate::store::Store;

/// The directory Herald starts with, and why it is not fresh when it is not.
pub struct Loaded {
    pub directory: Directory,
    pub snapshot: Option<Snapshot>,
    /// Set when the database could not be read: what is served instead, and why.
    pub stale: Option<String>,
}

/// Read the directory now (blocking); on failure, fall back on the stored snapshot, else the built-ins.
pub fn load(db: &DbConnection, store: &Path) -> Loaded {
    match omero_db::read_blocking(db) {
        Ok(snapshot) => {
            keep(store, &snapshot);
            Loaded {
                directory: snapshot.directory(),
                snapshot: Some(snapshot),
                stale: None,
            }
        }
        Err(err) => fallback(store, &err),
    }
}

fn fallback(store: &Path, err: &DbError) -> Loaded {
    match stored(store) {
        Some(snapshot) => {
            let stale = format!(
                "OMERO's database cannot be read ({err}); serving the directory snapshot taken at {}",
                snapshot.taken_at.to_rfc3339()
            );
            tracing::warn!("{stale}");
            Loaded {
                directory: snapshot.directory(),
                snapshot: Some(snapshot),
                stale: Some(stale),
            }
        }
        None => {
            let stale = format!(
                "OMERO's database cannot be read ({err}) and no snapshot was ever taken; \
                 only OMERO's built-in users and groups are known"
            );
            tracing::warn!("{stale}");
            Loaded {
                directory: Directory::default(),
                snapshot: None,
                stale: Some(stale),
            }
        }
    }
}

/// The last good snapshot in the store, if any reads.
pub fn stored(store: &Path) -> Option<Snapshot> {
    let (text, _) = Store::open(store).ok()?.directory_snapshot().ok()??;
    serde_json::from_str(&text)
        .inspect_err(|err| tracing::warn!("the stored directory snapshot does not read: {err}"))
        .ok()
}

/// Keep `snapshot` as the last good one (logged, not fatal, when the store refuses).
fn keep(store: &Path, snapshot: &Snapshot) {
    let saved = serde_json::to_string(snapshot)
        .map_err(anyhow::Error::from)
        .and_then(|json| {
            let mut store = Store::open(store)?;
            store.save_directory_snapshot(&json, snapshot.taken_at)?;
            Ok(())
        });
    if let Err(err) = saved {
        tracing::warn!("cannot keep the directory snapshot in the store: {err:#}");
    }
}

/// What the refresher needs.
pub struct Refresher {
    pub db: DbConnection,
    pub every: Duration,
    pub store: std::path::PathBuf,
    pub ready: Part,
    /// Asked by the eventlog source when users, groups or memberships changed; answered once the
    /// new directory is in force, so the events that follow are evaluated with it.
    pub requests: mpsc::Receiver<oneshot::Sender<()>>,
    /// Puts a new directory in force (compiles a rule set around it; blocking).
    pub apply: Arc<dyn Fn(Directory) + Send + Sync>,
    /// The snapshot in force at start.
    pub current: Option<Snapshot>,
}

impl Refresher {
    /// Refresh now, then every `every` and whenever asked, until the process stops.
    pub async fn run(mut self, feed: Feed) {
        let mut asked: Option<oneshot::Sender<()>> = None;
        loop {
            self.refresh().await;
            if let Some(reply) = asked.take() {
                let _ = reply.send(());
            }
            tokio::select! {
                () = tokio::time::sleep(self.every) => {}
                Some(reply) = self.requests.recv() => asked = Some(reply),
                () = feed.stopped() => return,
            }
        }
    }

    async fn refresh(&mut self) {
        let read = async {
            let client = omero_db::connect(&self.db).await?;
            omero_db::read(&client).await
        };
        match read.await {
            Ok(snapshot) => self.fresh(snapshot).await,
            Err(err) => {
                crate::metrics::source_error("directory");
                let taken = self.current.as_ref().map(|s| s.taken_at.to_rfc3339());
                let stale = format!(
                    "OMERO's database cannot be read ({err}); serving the directory snapshot taken at {}",
                    taken.as_deref().unwrap_or("(none: built-ins only)")
                );
                tracing::warn!("{stale}");
                self.report(Some(stale));
            }
        }
    }

    async fn fresh(&mut self, snapshot: Snapshot) {
        let changed = self
            .current
            .as_ref()
            .is_none_or(|old| !old.same_as(&snapshot));
        let (store, apply, kept) = (self.store.clone(), self.apply.clone(), snapshot.clone());
        let applied = tokio::task::spawn_blocking(move || {
            keep(&store, &kept);
            if changed {
                apply(kept.directory());
            }
        })
        .await;
        if applied.is_ok() {
            if changed {
                tracing::info!(
                    users = snapshot.users.len(),
                    groups = snapshot.groups.len(),
                    "the directory changed in OMERO's database; now in force"
                );
            }
            self.current = Some(snapshot);
        }
        self.report(None);
    }

    /// Readiness and metrics: ready, or ready and degraded with why.
    fn report(&self, stale: Option<String>) {
        let age = self
            .current
            .as_ref()
            .map_or(0, |s| (Utc::now() - s.taken_at).num_seconds());
        crate::metrics::directory_snapshot(stale.is_some(), age);
        match stale {
            None => self.ready.ready(),
            Some(why) => self.ready.degraded(why),
        }
    }
}
