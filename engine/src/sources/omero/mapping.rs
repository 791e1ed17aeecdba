//! `eventlog` rows → Herald events: which rows matter, and the details read for each (read-only).
//!
//! Experimenter INSERT → `omero.user.created`, ExperimenterGroup INSERT → `omero.group.created`,
//! ImageAnnotationLink INSERT whose child is a comment → `omero.comment.added`, and
//! GroupExperimenterMap INSERT/UPDATE/DELETE → `omero.group.membership`. Everything else is
//! ignored. An object deleted before it is read gives an event from the row alone (ids, empty
//! names), or none where the row alone says too little (a link whose comment is gone, an owner
//! flag UPDATE of a membership deleted before the UPDATE was read: its DELETE is reported).

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{Value, json};
use tokio_postgres::Client;

use crate::directory::omero_db::{DbError, user_of};
use crate::event::{self, Event, types};

/// The custom event type for membership changes (docs/events.md).
pub const MEMBERSHIP: &str = "omero.group.membership";

const EXPERIMENTER: &str = "ome.model.meta.Experimenter";
const GROUP: &str = "ome.model.meta.ExperimenterGroup";
const MAP: &str = "ome.model.meta.GroupExperimenterMap";
const IMAGE_LINK: &str = "ome.model.annotations.ImageAnnotationLink";
/// `annotation.discriminator` of a CommentAnnotation.
const COMMENT: &str = "/basic/text/comment/";

/// One `eventlog` row joined to its `event`.
#[derive(Clone, Debug, PartialEq)]
pub struct LogRow {
    pub id: i64,
    pub action: String,
    pub entity_type: String,
    pub entity_id: i64,
    /// `event.time` in UTC (`None` when the event row is missing).
    pub time: Option<DateTime<Utc>>,
}

/// What one row is to Herald.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Happening {
    UserCreated(i64),
    GroupCreated(i64),
    LinkInserted(i64),
    Membership { map: i64, change: MapChange },
    Ignored,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MapChange {
    Inserted,
    Updated,
    Deleted,
}

/// Classify a row by its entity type and action.
pub fn classify(row: &LogRow) -> Happening {
    let id = row.entity_id;
    match (row.entity_type.as_str(), row.action.as_str()) {
        (EXPERIMENTER, "INSERT") => Happening::UserCreated(id),
        (GROUP, "INSERT") => Happening::GroupCreated(id),
        (IMAGE_LINK, "INSERT") => Happening::LinkInserted(id),
        (MAP, action) => match action {
            "INSERT" => Happening::Membership {
                map: id,
                change: MapChange::Inserted,
            },
            "UPDATE" => Happening::Membership {
                map: id,
                change: MapChange::Updated,
            },
            "DELETE" => Happening::Membership {
                map: id,
                change: MapChange::Deleted,
            },
            _ => Happening::Ignored,
        },
        _ => Happening::Ignored,
    }
}

/// Rows that change the directory (OMERO's own "admin types": it fires `UserGroupUpdateEvent` for them).
pub fn touches_directory(row: &LogRow) -> bool {
    [EXPERIMENTER, GROUP, MAP].contains(&row.entity_type.as_str())
}

/// One membership: (group, user, owner).
pub type Membership = (i64, i64, bool);

/// What the mapper keeps between rows: the database's identity and the memberships it knows,
/// so a DELETE (whose row is gone) can still say who left which group.
pub struct Mapper {
    /// `omero.db.uuid`.
    pub db_uuid: String,
    pub memberships: HashMap<i64, Membership>,
}

impl Mapper {
    /// Read the memberships OMERO holds now.
    pub async fn load(client: &Client, db_uuid: String) -> Result<Mapper, DbError> {
        let rows = client
            .query(
                "SELECT id, parent, child, owner FROM groupexperimentermap",
                &[],
            )
            .await
            .map_err(query("groupexperimentermap"))?;
        let memberships = rows
            .iter()
            .filter_map(|row| {
                let read = || -> Result<(i64, Membership), tokio_postgres::Error> {
                    Ok((
                        row.try_get(0)?,
                        (row.try_get(1)?, row.try_get(2)?, row.try_get(3)?),
                    ))
                };
                read().ok()
            })
            .collect();
        Ok(Mapper {
            db_uuid,
            memberships,
        })
    }

    /// The CloudEvents `source` of this database's events.
    pub fn source(&self) -> String {
        format!("omero-db://{}", self.db_uuid)
    }

    /// The event for `row`, if it is one Herald reports.
    pub async fn event(&mut self, client: &Client, row: &LogRow) -> Result<Option<Event>, DbError> {
        let (kind, data) = match classify(row) {
            Happening::Ignored => return Ok(None),
            Happening::UserCreated(id) => (types::USER_CREATED, user_created(client, id).await?),
            Happening::GroupCreated(id) => (
                types::GROUP_CREATED,
                json!({"group": group(client, id).await?}),
            ),
            Happening::LinkInserted(id) => match comment_added(client, id).await? {
                Some(data) => (types::COMMENT_ADDED, data),
                None => return Ok(None),
            },
            Happening::Membership { map, change } => {
                match self.membership(client, map, change).await? {
                    Some(data) => (MEMBERSHIP, data),
                    None => return Ok(None),
                }
            }
        };
        Ok(self.envelope(row, kind, data))
    }

    fn envelope(&self, row: &LogRow, kind: &str, data: Value) -> Option<Event> {
        let time = row.time.unwrap_or_else(Utc::now);
        let envelope = json!({
            "specversion": "1.0",
            "id": format!("{}:eventlog:{}", self.db_uuid, row.id),
            "source": self.source(),
            "type": kind,
            "time": time.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        event::from_json(envelope, time)
            .inspect_err(|err| tracing::warn!("eventlog row {}: not an event: {err}", row.id))
            .ok()
    }

    async fn membership(
        &mut self,
        client: &Client,
        map: i64,
        change: MapChange,
    ) -> Result<Option<Value>, DbError> {
        let known = self.memberships.get(&map).copied();
        let (now, word) = match change {
            MapChange::Deleted => (self.memberships.remove(&map), Some("removed")),
            MapChange::Inserted | MapChange::Updated => {
                let now = read_map(client, map).await?;
                let word = match (change, known, now) {
                    (_, _, None) => None,
                    (MapChange::Inserted, _, Some(_)) => Some("added"),
                    (_, Some((_, _, was)), Some((_, _, is))) if was == is => None,
                    (_, _, Some((_, _, true))) => Some("owner_granted"),
                    (_, _, Some((_, _, false))) => Some("owner_revoked"),
                };
                if let Some(membership) = now {
                    self.memberships.insert(map, membership);
                }
                (now.or(known), word)
            }
        };
        let (Some((group_id, user_id, _)), Some(word)) = (now, word) else {
            return Ok(None);
        };
        Ok(Some(json!({
            "group": group(client, group_id).await?,
            "user": user(client, user_id).await?,
            "change": word,
        })))
    }
}

fn query(what: &'static str) -> impl Fn(tokio_postgres::Error) -> DbError {
    move |source| DbError::Query { what, source }
}

async fn read_map(client: &Client, map: i64) -> Result<Option<Membership>, DbError> {
    let row = client
        .query_opt(
            "SELECT parent, child, owner FROM groupexperimentermap WHERE id = $1",
            &[&map],
        )
        .await
        .map_err(query("groupexperimentermap"))?;
    Ok(row.and_then(|row| {
        Some((
            row.try_get(0).ok()?,
            row.try_get(1).ok()?,
            row.try_get(2).ok()?,
        ))
    }))
}

/// The shared User shape; a user deleted meanwhile is its id with an empty name.
async fn user(client: &Client, id: i64) -> Result<Value, DbError> {
    let row = client
        .query_opt(
            "SELECT id, omename, firstname, lastname, email FROM experimenter WHERE id = $1",
            &[&id],
        )
        .await
        .map_err(query("experimenter"))?;
    let user = row.as_ref().and_then(|row| user_of(row).ok());
    Ok(user.map_or_else(
        || json!({"id": id, "name": ""}),
        |user| serde_json::to_value(user).unwrap_or(Value::Null),
    ))
}

/// The shared Group shape; a group deleted meanwhile is its id with an empty name.
async fn group(client: &Client, id: i64) -> Result<Value, DbError> {
    let row = client
        .query_opt("SELECT name FROM experimentergroup WHERE id = $1", &[&id])
        .await
        .map_err(query("experimentergroup"))?;
    let name: String = row.and_then(|row| row.try_get(0).ok()).unwrap_or_default();
    Ok(json!({"id": id, "name": name}))
}

async fn user_created(client: &Client, id: i64) -> Result<Value, DbError> {
    let rows = client
        .query(
            "SELECT g.id, g.name FROM groupexperimentermap m \
             JOIN experimentergroup g ON g.id = m.parent WHERE m.child = $1 ORDER BY m.child_index, g.id",
            &[&id],
        )
        .await
        .map_err(query("the user's groups"))?;
    let groups: Vec<Value> = rows
        .iter()
        .filter_map(|row| {
            let id: i64 = row.try_get(0).ok()?;
            let name: String = row.try_get(1).ok()?;
            Some(json!({"id": id, "name": name}))
        })
        .collect();
    Ok(json!({"user": user(client, id).await?, "groups": groups}))
}

/// A comment row: (comment id, text, owner id, image id, image name, image owner id).
type CommentRow = (i64, Option<String>, i64, i64, String, i64);

/// The comment and the image of link `id`, when its child is a comment.
async fn comment_added(client: &Client, link: i64) -> Result<Option<Value>, DbError> {
    let row = client
        .query_opt(
            "SELECT a.id, a.textvalue, a.owner_id, i.id, i.name, i.owner_id \
             FROM imageannotationlink l JOIN annotation a ON a.id = l.child \
             JOIN image i ON i.id = l.parent WHERE l.id = $1 AND a.discriminator = $2",
            &[&link, &COMMENT],
        )
        .await
        .map_err(query("the comment and its image"))?;
    let Some(row) = row else { return Ok(None) };
    let read = || -> Result<CommentRow, tokio_postgres::Error> {
        Ok((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
            row.try_get(4)?,
            row.try_get(5)?,
        ))
    };
    let Ok((comment, text, owner, image, name, image_owner)) = read() else {
        tracing::warn!("imageannotationlink {link}: unreadable comment or image row, skipped");
        return Ok(None);
    };
    Ok(Some(json!({
        "comment": {"id": comment, "text": text.unwrap_or_default(), "owner": user(client, owner).await?},
        "links": [{"type": "Image", "id": image, "name": name, "owner": user(client, image_owner).await?}],
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(entity_type: &str, action: &str) -> LogRow {
        LogRow {
            id: 1,
            action: action.into(),
            entity_type: entity_type.into(),
            entity_id: 7,
            time: None,
        }
    }

    #[test]
    fn rows_are_classified_by_type_and_action() {
        assert_eq!(
            classify(&row(EXPERIMENTER, "INSERT")),
            Happening::UserCreated(7)
        );
        assert_eq!(classify(&row(EXPERIMENTER, "UPDATE")), Happening::Ignored);
        assert_eq!(classify(&row(GROUP, "INSERT")), Happening::GroupCreated(7));
        assert_eq!(classify(&row(GROUP, "CHMOD(rwra--)")), Happening::Ignored);
        assert_eq!(
            classify(&row(IMAGE_LINK, "INSERT")),
            Happening::LinkInserted(7)
        );
        assert_eq!(
            classify(&row(MAP, "DELETE")),
            Happening::Membership {
                map: 7,
                change: MapChange::Deleted
            }
        );
        assert_eq!(
            classify(&row("ome.model.core.Image", "INSERT")),
            Happening::Ignored
        );
        assert_eq!(classify(&row(IMAGE_LINK, "REINDEX")), Happening::Ignored);
        assert!(touches_directory(&row(MAP, "UPDATE")));
        assert!(!touches_directory(&row(IMAGE_LINK, "INSERT")));
    }
}
