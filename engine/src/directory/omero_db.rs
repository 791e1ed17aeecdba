//! The directory read from OMERO's PostgreSQL database (`directory.source: omero-db`), read-only.
//!
//! One snapshot is four SELECTs in one read-only transaction: `_roles`, `experimenter`,
//! `experimentergroup` and `groupexperimentermap`. The `password` table is never read.
//! A row that cannot be read (an unexpected NULL or type) is skipped with a warning.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio_postgres::{Client, NoTls, Row};

use super::{Directory, Group, Roles, User};
use crate::config::{DbConnection, PasswordSource};

/// How long connecting to OMERO's database may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one snapshot's queries may take.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Why OMERO's database could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("cannot read the database password from {where_}: {why}")]
    Password { where_: String, why: String },
    #[error("cannot connect to OMERO's database: {0}")]
    Connect(#[source] tokio_postgres::Error),
    #[error("OMERO's database did not answer within {0:?}")]
    Timeout(Duration),
    #[error("cannot read {what} from OMERO's database: {source}")]
    Query {
        what: &'static str,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("OMERO's database has no {0}")]
    Missing(&'static str),
    #[error("cannot start a thread to read OMERO's database: {0}")]
    Runtime(String),
}

/// One consistent read of the directory, as kept in Herald's store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    pub roles: Roles,
    pub users: Vec<User>,
    pub groups: Vec<Group>,
    /// When it was read.
    pub taken_at: DateTime<Utc>,
}

impl Snapshot {
    /// The directory it describes.
    pub fn directory(&self) -> Directory {
        Directory::from_database(self.roles, self.users.clone(), self.groups.clone())
    }

    /// Same users, groups and roles (the time it was taken aside).
    pub fn same_as(&self, other: &Snapshot) -> bool {
        self.roles == other.roles && self.users == other.users && self.groups == other.groups
    }
}

/// The password from its source: the first line of the file, or the environment variable.
pub fn password(source: &PasswordSource) -> Result<String, DbError> {
    source.read().map_err(|err| DbError::Password {
        where_: match source {
            PasswordSource::File(path) => path.display().to_string(),
            PasswordSource::Env(name) => format!("${name}"),
        },
        why: err.to_string(),
    })
}

/// Connect (plain TCP or a Unix socket: keep OMERO's database on loopback or a private network).
/// The connection runs on a task of the current tokio runtime until the client is dropped.
pub async fn connect(db: &DbConnection) -> Result<Client, DbError> {
    let mut config: tokio_postgres::Config = db.url.parse().map_err(DbError::Connect)?;
    if let Some(source) = &db.password {
        config.password(password(source)?);
    }
    config.application_name("herald");
    config.connect_timeout(CONNECT_TIMEOUT);
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls));
    let (client, connection) = connecting
        .await
        .map_err(|_| DbError::Timeout(CONNECT_TIMEOUT))?
        .map_err(DbError::Connect)?;
    tokio::spawn(async move {
        if let Err(err) = connection.await {
            tracing::debug!("OMERO database connection closed: {err}");
        }
    });
    Ok(client)
}

/// Read one snapshot.
pub async fn read(client: &Client) -> Result<Snapshot, DbError> {
    tokio::time::timeout(READ_TIMEOUT, read_now(client))
        .await
        .map_err(|_| DbError::Timeout(READ_TIMEOUT))?
}

async fn read_now(client: &Client) -> Result<Snapshot, DbError> {
    let query = |what| move |source| DbError::Query { what, source };
    // One snapshot of the database: a user added between two SELECTs is in both or neither.
    client
        .batch_execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .await
        .map_err(query("a read-only transaction"))?;
    let read = read_tables(client).await;
    // Read-only: ending it either way changes nothing.
    let _ = client.batch_execute("ROLLBACK").await;
    read
}

async fn read_tables(client: &Client) -> Result<Snapshot, DbError> {
    let query = |what| move |source| DbError::Query { what, source };
    let roles = client
        .query(
            "SELECT root_user_id, guest_user_id, system_group_id, user_group_id, guest_group_id \
             FROM _roles LIMIT 1",
            &[],
        )
        .await
        .map_err(query("_roles"))?;
    let roles = roles
        .first()
        .and_then(|row| roles_of(row).ok())
        .ok_or(DbError::Missing("_roles row"))?;
    let users = client
        .query(
            "SELECT id, omename, firstname, lastname, email FROM experimenter ORDER BY id",
            &[],
        )
        .await
        .map_err(query("experimenter"))?;
    let groups = client
        .query("SELECT id, name FROM experimentergroup ORDER BY id", &[])
        .await
        .map_err(query("experimentergroup"))?;
    let maps = client
        .query(
            "SELECT parent, child, owner FROM groupexperimentermap ORDER BY parent, child_index, id",
            &[],
        )
        .await
        .map_err(query("groupexperimentermap"))?;
    Ok(Snapshot {
        roles,
        users: readable(&users, "experimenter", user_of),
        groups: with_members(readable(&groups, "experimentergroup", group_of), &maps),
        taken_at: Utc::now(),
    })
}

fn roles_of(row: &Row) -> Result<Roles, tokio_postgres::Error> {
    Ok(Roles {
        root_user: row.try_get(0)?,
        guest_user: row.try_get(1)?,
        system_group: row.try_get(2)?,
        user_group: row.try_get(3)?,
        guest_group: row.try_get(4)?,
    })
}

/// The user of one `experimenter` row.
pub fn user_of(row: &Row) -> Result<User, tokio_postgres::Error> {
    Ok(User::new(
        row.try_get(0)?,
        row.try_get(1)?,
        row.try_get(2)?,
        row.try_get(3)?,
        row.try_get(4)?,
    ))
}

fn group_of(row: &Row) -> Result<Group, tokio_postgres::Error> {
    Ok(Group {
        id: row.try_get(0)?,
        name: row.try_get(1)?,
        members: Vec::new(),
        owners: Vec::new(),
    })
}

/// Every row `read` can read; the others are logged and skipped.
fn readable<T>(
    rows: &[Row],
    table: &str,
    read: impl Fn(&Row) -> Result<T, tokio_postgres::Error>,
) -> Vec<T> {
    rows.iter()
        .filter_map(|row| {
            read(row)
                .inspect_err(|err| tracing::warn!("skipping an unreadable {table} row: {err}"))
                .ok()
        })
        .collect()
}

/// The groups with their members and owners from `groupexperimentermap` (parent, child, owner).
fn with_members(mut groups: Vec<Group>, maps: &[Row]) -> Vec<Group> {
    let memberships = readable(maps, "groupexperimentermap", |row| {
        Ok((
            row.try_get::<_, i64>(0)?,
            row.try_get::<_, i64>(1)?,
            row.try_get::<_, bool>(2)?,
        ))
    });
    for (parent, child, owner) in memberships {
        if let Some(group) = groups.iter_mut().find(|g| g.id == parent) {
            group.members.push(child);
            if owner {
                group.owners.push(child);
            }
        }
    }
    groups
}

/// Read a snapshot on a thread of its own (the callers are synchronous: CLI commands and reloads).
pub fn read_blocking(db: &DbConnection) -> Result<Snapshot, DbError> {
    let db = db.clone();
    let reading = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|err| DbError::Runtime(err.to_string()))?;
        runtime.block_on(async {
            let client = connect(&db).await?;
            read(&client).await
        })
    });
    reading
        .join()
        .unwrap_or_else(|_| Err(DbError::Runtime("the reader panicked".into())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: i64, name: &str) -> User {
        User::new(id, name, None, None, Some(&format!("{name}@example.org")))
    }

    #[test]
    fn a_snapshot_round_trips_through_json_and_uses_its_roles() {
        let roles = Roles {
            root_user: 0,
            guest_user: 1,
            system_group: 10,
            user_group: 11,
            guest_group: 12,
        };
        let group = |id, name: &str, members: Vec<i64>| Group {
            id,
            name: name.into(),
            members,
            owners: Vec::new(),
        };
        let snapshot = Snapshot {
            roles,
            users: vec![user(0, "root"), user(5, "ada"), user(6, "bob")],
            groups: vec![
                group(10, "system", vec![5]),
                group(11, "user", vec![5, 6, 99]),
            ],
            taken_at: Utc::now(),
        };
        let json = serde_json::to_string(&snapshot).unwrap();
        let back: Snapshot = serde_json::from_str(&json).unwrap();
        assert!(back.same_as(&snapshot));
        let dir = back.directory();
        let names = |users: Vec<&User>| {
            users
                .iter()
                .map(|u| u.name().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(dir.admins()), ["ada"]);
        assert_eq!(names(dir.active_users()), ["ada", "bob"], "99 is no user");
    }
}
