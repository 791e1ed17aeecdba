//! Store tests: journaling, idempotent queueing, kv, migrations.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;

use super::*;
use crate::evaluate::{Resolved, RuleOutcome};

fn event(id: &str) -> Event {
    let text =
        format!(r#"{{"id":"{id}","source":"s","type":"omero.server.up","data":{{"server":"x"}}}}"#);
    event::from_str(&text, Utc::now()).unwrap()
}

fn outcome(recipients: &[&str], kv: Vec<KvWrite>) -> RuleOutcome {
    let mails = recipients
        .iter()
        .map(|r| Mail {
            recipient: (*r).into(),
            to: vec![(*r).into()],
            cc: vec![],
            reply_to: vec![],
            subject: "s".into(),
            text: "t".into(),
            html: None,
            headers: vec![],
        })
        .collect();
    RuleOutcome {
        rule: "r".into(),
        result: Ok(Resolved {
            mails,
            skipped: vec![],
        }),
        logs: vec![],
        kv_writes: kv,
        fuel_used: 1,
        elapsed: Duration::ZERO,
    }
}

const NO_HEALTH: HealthPolicy<'static> = HealthPolicy {
    quarantine_after: 0,
    notify: &[],
};

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("sub/herald.db")).unwrap();
    (dir, store)
}

/// Ingest event `id` and queue one row for `x@example.org`.
fn queue_one(store: &mut Store, id: &str) {
    store.ingest(&[event(id)], Utc::now()).unwrap();
    let pending = store.pending(1).unwrap().remove(0);
    let outcomes = [outcome(&["x@example.org"], vec![])];
    store
        .commit_evaluation(
            pending.seq,
            &pending.event,
            &outcomes,
            &NO_HEALTH,
            Utc::now(),
        )
        .unwrap();
}

#[test]
fn duplicate_events_are_stored_once() {
    let (_dir, mut store) = open();
    let first = store.ingest(&[event("a"), event("b")], Utc::now()).unwrap();
    let again = store.ingest(&[event("a")], Utc::now()).unwrap();
    assert!(matches!(first[..], [Ingested::New(_), Ingested::New(_)]));
    assert_eq!(
        again,
        vec![Ingested::Duplicate(match first[0] {
            Ingested::New(seq) => seq,
            Ingested::Duplicate(seq) => seq,
        })]
    );
    assert_eq!(store.pending(10).unwrap().len(), 2);
}

#[test]
fn the_writer_journals_an_event_no_rule_wants_as_evaluated_and_wakes_no_evaluation() {
    let (_dir, store) = open();
    let path = store.path().to_owned();
    let woken = Arc::new(Mutex::new(Vec::new()));
    let seen = woken.clone();
    let (writer, thread) = writer::Writer::spawn(
        store,
        |event| event.id != "nobody-wants-me",
        move |done| seen.lock().unwrap().push(done.events),
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    runtime
        .block_on(writer.journal(vec![event("nobody-wants-me")]))
        .unwrap();
    runtime
        .block_on(writer.journal(vec![event("wanted")]))
        .unwrap();
    drop(writer);
    thread.join().unwrap();
    // Only the wanted event rang evaluation.
    assert_eq!(*woken.lock().unwrap(), vec![true]);
    let store = Store::open(&path).unwrap();
    let pending: Vec<String> = store
        .pending(10)
        .unwrap()
        .into_iter()
        .map(|p| p.event.id)
        .collect();
    assert_eq!(pending, ["wanted"]);
    let evaluated: Option<String> = store
        .conn
        .query_row(
            "SELECT evaluated_at FROM events WHERE id = 'nobody-wants-me' AND state = 'done'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(evaluated.is_some(), "journaled as evaluated, with a time");
}

#[test]
fn evaluating_twice_cannot_queue_twice() {
    let (_dir, mut store) = open();
    store.ingest(&[event("a")], Utc::now()).unwrap();
    let pending = store.pending(10).unwrap().remove(0);
    let outcomes = [outcome(&["x@example.org", "y@example.org"], vec![])];
    let first = store
        .commit_evaluation(
            pending.seq,
            &pending.event,
            &outcomes,
            &NO_HEALTH,
            Utc::now(),
        )
        .unwrap();
    let second = store
        .commit_evaluation(
            pending.seq,
            &pending.event,
            &outcomes,
            &NO_HEALTH,
            Utc::now(),
        )
        .unwrap();
    assert_eq!((first.queued, first.already_queued), (2, 0));
    assert!(
        second.already_evaluated,
        "the second commit finds the event done"
    );
    assert_eq!((second.queued, second.already_queued), (0, 0));
    assert!(store.pending(10).unwrap().is_empty());
    let lease = Duration::from_secs(60);
    assert_eq!(store.claim_due(Utc::now(), lease, 10).unwrap().len(), 2);
    assert!(
        store.claim_due(Utc::now(), lease, 10).unwrap().is_empty(),
        "leased rows are not handed out twice"
    );
    let later = Utc::now() + chrono::Duration::seconds(61);
    assert_eq!(
        store.claim_due(later, lease, 10).unwrap().len(),
        2,
        "an expired lease makes the row due again"
    );
}

#[test]
fn rows_queued_before_are_ignored_when_an_event_is_evaluated_again() {
    let (_dir, mut store) = open();
    store.ingest(&[event("a")], Utc::now()).unwrap();
    let pending = store.pending(10).unwrap().remove(0);
    let outcomes = [outcome(&["x@example.org", "y@example.org"], vec![])];
    let commit = |store: &mut Store| {
        store
            .commit_evaluation(
                pending.seq,
                &pending.event,
                &outcomes,
                &NO_HEALTH,
                Utc::now(),
            )
            .unwrap()
    };
    assert_eq!(commit(&mut store).queued, 2);
    // The event is pending again while its rows exist (a journal restored from a backup
    // taken between the two writes): the rows already queued are kept, not doubled.
    store
        .conn
        .execute(
            "UPDATE events SET state = 'pending' WHERE seq = ?1",
            [pending.seq],
        )
        .unwrap();
    let again = commit(&mut store);
    assert!(!again.already_evaluated);
    assert_eq!((again.queued, again.already_queued), (0, 2));
    let rows: i64 = store
        .conn
        .query_row("SELECT count(*) FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 2);
}

#[test]
fn kv_writes_commit_with_the_evaluation() {
    let (_dir, mut store) = open();
    store.ingest(&[event("a")], Utc::now()).unwrap();
    let pending = store.pending(10).unwrap().remove(0);
    let write = KvWrite {
        key: "k".into(),
        entry: Some(KvEntry {
            value: b"v".to_vec(),
            expires_unix_ms: None,
        }),
    };
    let reader = store.kv_reader().unwrap();
    assert_eq!(reader.get("r", "k"), None);
    store
        .commit_evaluation(
            pending.seq,
            &pending.event,
            &[outcome(&[], vec![write])],
            &NO_HEALTH,
            Utc::now(),
        )
        .unwrap();
    assert_eq!(reader.get("r", "k").unwrap().value, b"v");
    // The store keeps one reader: a later pass gets the same connection, which sees each commit.
    let later = store.kv_reader().unwrap();
    assert!(Arc::ptr_eq(&reader, &later));
    assert_eq!(later.get("r", "k").unwrap().value, b"v");
}

#[test]
fn a_newer_schema_is_refused() {
    let (dir, store) = open();
    store.conn.pragma_update(None, "user_version", 99).unwrap();
    drop(store);
    let err = anyhow::Error::from(
        Store::open(&dir.path().join("sub/herald.db"))
            .err()
            .unwrap(),
    );
    assert!(
        format!("{err:#}").contains("newer than this Herald knows"),
        "{err:#}"
    );
}

#[test]
fn a_manual_retry_restarts_the_age() {
    let (_dir, mut store) = open();
    queue_one(&mut store, "a");
    let row = store
        .claim_due(Utc::now(), Duration::from_secs(60), 1)
        .unwrap()
        .remove(0);
    let queued = row.queued_at;
    store
        .record_attempt(&Attempt {
            outbox_id: row.id,
            lease: row.lease,
            at: Utc::now(),
            outcome: Outcome::Permanent,
            code: Some(550),
            detail: "no".into(),
            new_state: RowState::Dead,
            next_attempt_at: None,
        })
        .unwrap();
    let later = Utc::now() + chrono::Duration::days(6);
    assert_eq!(store.retry_dead(later).unwrap(), 1);
    let again = store
        .claim_due(later, Duration::from_secs(60), 1)
        .unwrap()
        .remove(0);
    assert!(
        again.queued_at > queued + chrono::Duration::days(5),
        "{:?}",
        again.queued_at
    );
}

#[test]
fn a_version_3_store_gains_lease_owners_and_keeps_its_leased_rows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    {
        // A store as the previous release left it: version 3, one row leased far ahead.
        let mut store = Store::open(&path).unwrap();
        queue_one(&mut store, "a");
        store
            .conn
            .execute_batch(
                "DROP INDEX outbox_leased; ALTER TABLE outbox DROP COLUMN sending;
                 DROP TABLE relay_messages; ALTER TABLE outbox DROP COLUMN relay_id;
                 ALTER TABLE outbox DROP COLUMN lease_owner; DROP TABLE schedule_state;
                 DROP TABLE source_state; DROP TABLE directory_snapshot; DROP TABLE happenings;
                 ALTER TABLE events DROP COLUMN duplicate_of;
                 PRAGMA user_version = 3;
                 UPDATE outbox SET lease_until = 99999999999999;",
            )
            .unwrap();
    }
    let mut store = Store::open(&path).unwrap();
    let owner: Option<String> = store
        .conn
        .query_row("SELECT lease_owner FROM outbox", [], |r| r.get(0))
        .unwrap();
    assert_eq!(owner, None, "an old lease has no owner to judge");
    assert!(
        store
            .claim_due(Utc::now(), Duration::from_secs(60), 1)
            .unwrap()
            .is_empty(),
        "a lease without an owner is left to run out"
    );
    let listed = store.list_outbox(&Filter::default()).unwrap();
    assert!(listed[0].leased_until.is_some() && listed[0].lease_owner.is_none());
}

#[test]
fn an_older_store_is_upgraded_in_place_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        // A store as the first release left it: schema version 1, one event.
        let conn = Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.pragma_update(None, "user_version", 1).unwrap();
        conn.execute(
            "INSERT INTO events (source, id, type, time, envelope, received_at)
             VALUES ('s', 'old-1', 'omero.server.up', '2026-01-01T00:00:00Z',
                     '{\"id\":\"old-1\",\"source\":\"s\",\"type\":\"omero.server.up\",\"data\":{\"server\":\"x\"}}',
                     '2026-01-01T00:00:00+00:00')",
            [],
        )
        .unwrap();
    }
    let store = Store::open(&path).unwrap();
    let version: i64 = store
        .conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version as usize, schema::MIGRATIONS.len());
    let pending = store.pending(10).unwrap();
    assert_eq!(pending.len(), 1, "the old event survives the upgrade");
    assert_eq!(pending[0].event.id, "old-1");
}

#[test]
fn schedule_state_is_per_rule_and_never_moves_back() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("s.db")).unwrap();
    assert_eq!(store.schedule_through("digest").unwrap(), None);
    let at = |s: i64| DateTime::from_timestamp(s, 0).unwrap();
    store.set_schedule_through("digest", at(2_000)).unwrap();
    store.set_schedule_through("digest", at(1_000)).unwrap();
    store.set_schedule_through("other", at(5)).unwrap();
    assert_eq!(store.schedule_through("digest").unwrap(), Some(at(2_000)));
    assert_eq!(store.schedule_through("other").unwrap(), Some(at(5)));
}

/// A typed OMERO event from `source` at `time`.
fn omero_event(source: &str, id: &str, kind: &str, time: &str, data: serde_json::Value) -> Event {
    let envelope = serde_json::json!({
        "specversion": "1.0", "id": id, "source": source, "type": kind, "time": time, "data": data,
    });
    event::from_json(envelope, Utc::now()).unwrap()
}

#[test]
fn one_happening_from_two_sources_is_evaluated_once_and_repeats_from_one_source_are_not_merged() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("h.db")).unwrap();
    let down = |source: &str, id: &str, time: &str| {
        omero_event(
            source,
            id,
            "omero.server.down",
            time,
            serde_json::json!({"server": "omero"}),
        )
    };
    let up = |source: &str, id: &str, time: &str| {
        omero_event(
            source,
            id,
            "omero.server.up",
            time,
            serde_json::json!({"server": "omero"}),
        )
    };
    let failed = |source: &str, id: &str, time: &str| {
        omero_event(
            source,
            id,
            "omero.login.failed",
            time,
            serde_json::json!({"user": "root"}),
        )
    };
    let events = [
        down("log", "1", "2026-11-28T10:00:00Z"),
        down("probe", "1", "2026-11-28T10:00:30Z"), // the same shutdown
        up("probe", "2", "2026-11-28T10:01:00Z"),
        down("probe", "3", "2026-11-28T10:02:00Z"), // a crash after the start: new
        failed("log", "4", "2026-11-28T10:03:00Z"),
        failed("smtp", "4", "2026-11-28T10:03:01Z"), // the same failure by mail
        failed("log", "5", "2026-11-28T10:03:04Z"),  // the next failure
        failed("smtp", "5", "2026-11-28T10:03:05Z"),
    ];
    let results = store.ingest(&events, Utc::now()).unwrap();
    let new: Vec<bool> = results
        .iter()
        .map(|r| matches!(r, Ingested::New(_)))
        .collect();
    assert_eq!(new, [true, false, true, true, true, false, true, false]);
    let pending = store.pending(100).unwrap();
    assert_eq!(pending.len(), 5, "duplicates are journaled done");
    let kept: i64 = store
        .conn
        .query_row(
            "SELECT count(*) FROM events WHERE duplicate_of IS NOT NULL",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kept, 3);
}

#[test]
fn an_unreadable_row_is_set_dead_and_the_rows_behind_it_are_still_claimed() {
    let (_dir, mut store) = open();
    queue_one(&mut store, "a");
    queue_one(&mut store, "b");
    let first: i64 = store
        .conn
        .query_row("SELECT min(id) FROM outbox", [], |r| r.get(0))
        .unwrap();
    store
        .conn
        .execute("UPDATE outbox SET mail = 'not json' WHERE id = ?1", [first])
        .unwrap();
    let claimed = store
        .claim_due(Utc::now(), Duration::from_secs(60), 10)
        .unwrap();
    assert_eq!(claimed.len(), 1, "the readable row is claimed");
    assert_ne!(claimed[0].id, first);
    let (state, error): (String, String) = store
        .conn
        .query_row(
            "SELECT state, last_error FROM outbox WHERE id = ?1",
            [first],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(state, "dead");
    assert!(error.contains("cannot be read"), "{error}");
    assert_eq!(store.attempts(first).unwrap()[0].outcome, "unreadable");
}

#[test]
fn held_rows_are_marked_when_sent_given_back_when_not_and_a_lost_lease_is_told() {
    let (_dir, mut store) = open();
    queue_one(&mut store, "a");
    queue_one(&mut store, "b");
    let lease = Duration::from_secs(60);
    let round = |claims| Round {
        claims,
        ..Round::default()
    };
    let held = store
        .record_and_claim(&round(2), Utc::now(), lease)
        .unwrap();
    let [a, b] = [Held::of(&held.rows[0]), Held::of(&held.rows[1])];
    let sending_sum = |store: &Store| -> i64 {
        store
            .conn
            .query_row("SELECT sum(sending) FROM outbox", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(sending_sum(&store), 0, "held, not yet being sent");
    // `b`'s lease is lost (as if it ran out and another worker took the row).
    store
        .conn
        .execute(
            "UPDATE outbox SET lease_until = lease_until + 1 WHERE id = ?1",
            [b.id],
        )
        .unwrap();
    let marked = Round {
        sending: &[a, b],
        ..Round::default()
    };
    let told = store.record_and_claim(&marked, Utc::now(), lease).unwrap();
    assert_eq!(told.lost, vec![b.id], "b must not be sent");
    assert_eq!(sending_sum(&store), 1);
    // A row being sent is never given back; a held one is, and is due again at once.
    let mut b_now = b;
    b_now.lease = b.lease.map(|l| l + 1);
    let released = Round {
        released: &[a, b_now],
        ..Round::default()
    };
    store
        .record_and_claim(&released, Utc::now(), lease)
        .unwrap();
    let again = store
        .record_and_claim(&round(2), Utc::now(), lease)
        .unwrap();
    assert_eq!(
        again.rows.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![b.id],
        "b was given back; a, being sent, stays leased"
    );
}

#[test]
fn evaluations_and_delivery_rounds_are_written_and_the_journal_syncs_them_on_any_store() {
    let (dir, mut store) = open();
    let synchronous = |conn: &Connection| -> i64 {
        conn.query_row("PRAGMA synchronous", [], |r| r.get(0))
            .unwrap()
    };
    store.ingest(&[event("a")], Utc::now()).unwrap();
    assert!(!store.unsynced(), "the journal syncs before it returns");
    queue_one(&mut store, "b");
    assert!(store.unsynced(), "the evaluation waits for the flusher");
    // Another store on the same file (serve's writer beside its evaluation) syncs the WAL
    // with its journal commit, and that covers this store's written commit too.
    let mut other = Store::open(&dir.path().join("sub/herald.db")).unwrap();
    other.ingest(&[event("c")], Utc::now()).unwrap();
    assert!(!store.unsynced());
    let lease = Duration::from_secs(60);
    let claims = Round {
        claims: 1,
        ..Round::default()
    };
    store.record_and_claim(&claims, Utc::now(), lease).unwrap();
    assert!(store.unsynced(), "a delivery round waits for the flusher");
    assert_eq!(
        synchronous(&store.conn),
        2,
        "the main connection always syncs"
    );
    assert_eq!(synchronous(store.written.as_ref().unwrap()), 1);
}

#[test]
fn a_synced_commit_that_changes_nothing_leaves_the_written_ones_to_the_flusher() {
    let (_dir, mut store) = open();
    queue_one(&mut store, "a");
    assert!(store.unsynced());
    // Nothing to purge: SQLite commits without writing, so without a sync.
    assert_eq!(store.purge_relayed(Utc::now()).unwrap(), 0);
    assert!(store.unsynced(), "an empty commit syncs nothing");
    store.ingest(&[event("b")], Utc::now()).unwrap();
    assert!(
        !store.unsynced(),
        "a commit that writes syncs every frame before it"
    );
}

#[test]
fn after_a_failed_sync_of_the_wal_no_store_on_the_file_commits() {
    let (dir, mut store) = open();
    let mut other = Store::open(&dir.path().join("sub/herald.db")).unwrap();
    store.flusher.fail("Input/output error (os error 5)");
    for err in [
        store.ingest(&[event("a")], Utc::now()).unwrap_err(),
        other.ingest(&[event("a")], Utc::now()).unwrap_err(),
        store
            .record_and_claim(&Round::default(), Utc::now(), Duration::from_secs(60))
            .unwrap_err(),
    ] {
        assert!(matches!(err, StoreError::SyncFailed { .. }), "{err}");
        assert_eq!(err.refusal(), Some(Refusal::Io), "the client retries later");
        let text = err.to_string();
        assert!(
            text.contains("herald.db-wal") && text.contains("restart Herald"),
            "{text}"
        );
    }
    assert!(store.unsynced());
    assert_eq!(store.pending(10).unwrap().len(), 0, "nothing was journaled");
}
