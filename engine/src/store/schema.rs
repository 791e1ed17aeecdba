//! Versioned schema migrations, applied in order inside one transaction each.

use rusqlite::Connection;

use super::Result;

/// Each entry upgrades the schema from version `index` to `index + 1`.
/// Never edit an entry that has shipped: append a new one.
pub(super) const MIGRATIONS: &[&str] = &[
    // 1: journal, rule runs, outbox, attempts, kv.
    "CREATE TABLE events (
        seq INTEGER PRIMARY KEY,
        source TEXT NOT NULL,
        id TEXT NOT NULL,
        type TEXT NOT NULL,
        time TEXT NOT NULL,
        envelope TEXT NOT NULL,
        received_at TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'done')),
        evaluated_at TEXT,
        UNIQUE (source, id)
    );
    CREATE INDEX events_pending ON events (seq) WHERE state = 'pending';
    CREATE TABLE rule_runs (
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        rule TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('ok', 'failed')),
        code TEXT,
        reason TEXT,
        mails INTEGER NOT NULL,
        skipped TEXT,
        fuel INTEGER NOT NULL,
        micros INTEGER NOT NULL,
        at TEXT NOT NULL,
        PRIMARY KEY (event_seq, rule)
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        rule TEXT NOT NULL,
        recipient TEXT NOT NULL,
        mail TEXT NOT NULL,
        digest TEXT NOT NULL,
        state TEXT NOT NULL CHECK (state IN ('queued', 'sent', 'dead', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at INTEGER,
        lease_until INTEGER,
        created_at TEXT NOT NULL,
        sent_at TEXT,
        last_error TEXT,
        UNIQUE (event_seq, rule, recipient)
    );
    CREATE INDEX outbox_due ON outbox (next_attempt_at, id) WHERE state = 'queued';
    CREATE TABLE attempts (
        outbox_id INTEGER NOT NULL REFERENCES outbox (id),
        at TEXT NOT NULL,
        outcome TEXT NOT NULL,
        code INTEGER,
        detail TEXT NOT NULL
    );
    CREATE INDEX attempts_by_row ON attempts (outbox_id);
    CREATE TABLE kv (
        rule TEXT NOT NULL,
        key TEXT NOT NULL,
        value BLOB NOT NULL,
        expires_at INTEGER,
        PRIMARY KEY (rule, key)
    );",
    // 2: leases and ambiguous deliveries on the outbox; rule health for quarantine.
    "ALTER TABLE outbox ADD COLUMN ambiguous INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX outbox_by_event ON outbox (event_seq);
    CREATE TABLE rule_health (
        rule TEXT PRIMARY KEY,
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        last_failure_at TEXT,
        last_reason TEXT,
        quarantined_at TEXT,
        skipped INTEGER NOT NULL DEFAULT 0
    );",
    // 3: a manual retry restarts the message's age (and so its lifetime).
    "ALTER TABLE outbox ADD COLUMN retried_at TEXT;",
    // 4: who holds a lease (`host:pid:start`), so a dead holder's rows are reclaimed at once.
    "ALTER TABLE outbox ADD COLUMN lease_owner TEXT;",
    // 5: how far each scheduled rule's ticks have been journaled (unix seconds).
    "CREATE TABLE schedule_state (
        rule TEXT PRIMARY KEY,
        through INTEGER NOT NULL
    );",
    // 6: mail taken by the SMTP listener: its envelope and bytes (purged once delivered or
    // dead, unless kept), the retransmission key, and which outbox rows relay it.
    "CREATE TABLE relay_messages (
        id INTEGER PRIMARY KEY,
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        dedup TEXT NOT NULL UNIQUE,
        mail_from TEXT NOT NULL,
        recipients TEXT NOT NULL,
        received TEXT NOT NULL,
        size INTEGER NOT NULL,
        raw BLOB,
        keep_body INTEGER NOT NULL DEFAULT 0,
        received_at TEXT NOT NULL,
        purged_at TEXT
    );
    CREATE INDEX relay_unpurged ON relay_messages (event_seq) WHERE purged_at IS NULL AND keep_body = 0;
    ALTER TABLE outbox ADD COLUMN relay_id INTEGER;",
    // 7: the OMERO connector: each source's position and counts, the last good directory
    // snapshot read from OMERO's database (served while that database is down), and the
    // happenings journaled, so one reported by two sources gives one mail.
    "CREATE TABLE source_state (
        source TEXT PRIMARY KEY,
        cursor TEXT NOT NULL,
        emitted INTEGER NOT NULL DEFAULT 0,
        last_error TEXT,
        last_error_at TEXT,
        updated_at TEXT NOT NULL
    );
    CREATE TABLE directory_snapshot (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        taken_at TEXT NOT NULL,
        snapshot TEXT NOT NULL
    );
    CREATE TABLE happenings (
        family TEXT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT NOT NULL,
        at INTEGER NOT NULL,
        event_seq INTEGER NOT NULL REFERENCES events (seq),
        original INTEGER
    );
    CREATE INDEX happenings_by_family ON happenings (family, at);
    ALTER TABLE events ADD COLUMN duplicate_of INTEGER;",
    // 8: the leased rows alone (in flight, or held by a process that died), so that looking
    // for dead owners at each claim reads those few rows, not every queued one.
    "CREATE INDEX outbox_leased ON outbox (lease_owner) WHERE state = 'queued' AND lease_owner IS NOT NULL;",
    // 9: a session holds its next row while it sends the current one; only a row marked
    // `sending` (its final `.` may have gone) is reported interrupted when its owner dies.
    // Rows leased before this version are assumed to have been sending.
    "ALTER TABLE outbox ADD COLUMN sending INTEGER NOT NULL DEFAULT 0;
     UPDATE outbox SET sending = 1 WHERE state = 'queued' AND lease_until IS NOT NULL;",
];

/// Bring the file up to the newest schema; refuse a file from a newer Herald.
pub fn migrate(conn: &Connection) -> Result<()> {
    // IMMEDIATE: two processes opening a fresh store migrate one after the other,
    // and the second sees the version the first wrote.
    let tx = rusqlite::Transaction::new_unchecked(conn, rusqlite::TransactionBehavior::Immediate)?;
    let current: usize =
        tx.pragma_query_value(None, "user_version", |r| r.get::<_, i64>(0))? as usize;
    if current > MIGRATIONS.len() {
        return Err(super::StoreError::NewerSchema {
            found: current,
            known: MIGRATIONS.len(),
        });
    }
    for (version, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", (version + 1) as i64)?;
    }
    tx.commit()?;
    Ok(())
}
