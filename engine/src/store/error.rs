//! The store's errors, typed: a refusal to write (retry later) is a variant, never a text to match.

use std::path::PathBuf;

/// Why the store refused a write; each is temporary, so retrying later is safe.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the disk holding the store is full")]
    DiskFull,
    #[error("the store is read-only")]
    ReadOnly,
    #[error("the store could not be written (I/O error; is the disk full?)")]
    Io,
    #[error("the store cannot be opened")]
    CannotOpen,
    #[error("the store is busy")]
    Busy,
}

impl Refusal {
    /// The refusal an SQLite error stands for, if it is one.
    pub fn of(err: &rusqlite::Error) -> Option<Refusal> {
        let rusqlite::Error::SqliteFailure(e, _) = err else {
            return None;
        };
        match e.code {
            rusqlite::ErrorCode::DiskFull => Some(Refusal::DiskFull),
            rusqlite::ErrorCode::ReadOnly => Some(Refusal::ReadOnly),
            rusqlite::ErrorCode::SystemIoFailure => Some(Refusal::Io),
            rusqlite::ErrorCode::CannotOpen => Some(Refusal::CannotOpen),
            rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked => {
                Some(Refusal::Busy)
            }
            _ => None,
        }
    }
}

/// A store operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store refused the write (disk full, read-only, I/O error, busy): nothing of
    /// this operation was stored, and retrying later is safe.
    #[error("{refusal}: {source}")]
    Refused {
        refusal: Refusal,
        #[source]
        source: rusqlite::Error,
    },
    /// Any other SQLite failure.
    #[error(transparent)]
    Sqlite(rusqlite::Error),
    /// A stored value that cannot be read back.
    #[error("{what} is unreadable: {detail}")]
    Unreadable { what: String, detail: String },
    /// The file was written by a newer Herald.
    #[error(
        "the store is at schema version {found}, newer than this Herald knows ({known}); \
         run the newer herald binary, or restore a backup"
    )]
    NewerSchema { found: usize, known: usize },
    /// The folder for the store cannot be created.
    #[error("cannot create the store folder {}: {source}", path.display())]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The thread that syncs written commits cannot be started.
    #[error("cannot start the store's flusher thread: {source}")]
    Thread {
        #[source]
        source: std::io::Error,
    },
    /// A sync of the WAL failed earlier: what was written since may not be on disk, so the
    /// store commits nothing more (a refusal: the client keeps what it sent, and retries).
    #[error(
        "an earlier sync of {} failed ({error}): what was written since may not be on disk, \
         so Herald stores nothing more; check the disk (dmesg), then restart Herald",
        wal.display()
    )]
    SyncFailed { wal: PathBuf, error: String },
    /// A value out of range for the store (a lease too long to add to the clock).
    #[error("{0}")]
    OutOfRange(String),
    /// What was being done when `source` happened.
    #[error("{what}")]
    During {
        what: String,
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// The refusal behind this error, if the store refused a write.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            StoreError::Refused { refusal, .. } => Some(*refusal),
            StoreError::SyncFailed { .. } => Some(Refusal::Io),
            StoreError::During { source, .. } => source.refusal(),
            _ => None,
        }
    }

    /// The refusal behind any error whose chain holds a store error.
    pub fn refusal_in(err: &anyhow::Error) -> Option<Refusal> {
        err.chain()
            .find_map(|cause| cause.downcast_ref::<StoreError>())
            .and_then(StoreError::refusal)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> StoreError {
        match Refusal::of(&err) {
            Some(refusal) => StoreError::Refused {
                refusal,
                source: err,
            },
            None => StoreError::Sqlite(err),
        }
    }
}

impl From<serde_json::Error> for StoreError {
    fn from(err: serde_json::Error) -> StoreError {
        StoreError::Unreadable {
            what: "stored JSON".into(),
            detail: err.to_string(),
        }
    }
}

impl From<chrono::ParseError> for StoreError {
    fn from(err: chrono::ParseError) -> StoreError {
        StoreError::Unreadable {
            what: "a stored time".into(),
            detail: err.to_string(),
        }
    }
}

/// The store's results.
pub type Result<T> = std::result::Result<T, StoreError>;

/// Say what was being done when an error happened.
pub trait During<T> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: Into<StoreError>> During<T> for std::result::Result<T, E> {
    fn during(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|err| StoreError::During {
            what: what(),
            source: Box::new(err.into()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_a_refusal_through_context_and_anyhow() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        let err: Result<()> = Err(full).during(|| "cannot commit the journal".into());
        let err = anyhow::Error::from(err.unwrap_err()).context("send");
        assert_eq!(StoreError::refusal_in(&err), Some(Refusal::DiskFull));
        let other = StoreError::from(rusqlite::Error::QueryReturnedNoRows);
        assert_eq!(other.refusal(), None);
    }
}
