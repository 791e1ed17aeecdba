//! The OMERO connector against a real PostgreSQL holding OMERO's tables: the directory read from the
//! database (refreshed, kept through an outage) and the `eventlog` source (mail exactly once, nothing
//! lost when transactions commit out of id order, rolled-back ids given up after the grace).

use std::time::Duration;

use serde_json::Value;

use crate::omero_pg::{Call, DB_UUID, HERALD_PASSWORD, Postgres};
use crate::serve::{ADMIN_TOKEN, Served, log_of};
use crate::smtp::{Server, aiosmtpd, header, received_raw};
use crate::support::{Scratch, wait_for};

const WAIT: Duration = Duration::from_secs(60);

/// `herald serve` against `pg`, mail to `smtp`: the directory from the database and the eventlog source.
fn serve(scratch: &Scratch, pg: &Postgres, smtp: &Server, grace: &str) -> Served {
    let yaml = format!(
        "mail:\n  from: omero@localhost\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         directory:\n  source: omero-db\n  url: {url}\n  password_env: HERALD_OMERO_DB_PASSWORD\n  refresh: 1s\n\
         sources:\n  - {{kind: omero-eventlog, url: \"{url}\", password_env: HERALD_OMERO_DB_PASSWORD, \
         poll: 100ms, gap_grace: {grace}}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n  \
         - {{name: new-group, module: builtin:new-group, on: [omero.group.created]}}\n  \
         - {{name: new-comment, module: builtin:new-comment, on: [omero.comment.added]}}\n  \
         - {{name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}}\n",
        port = smtp.port,
        url = pg.url(),
    );
    let served = Served::start(
        scratch,
        &yaml,
        &[("HERALD_OMERO_DB_PASSWORD", HERALD_PASSWORD)],
    );
    assert!(
        wait_for(WAIT, || ready(&served)
            .is_some_and(|(status, _)| status == 200)),
        "never ready: {:?}\n{}",
        ready(&served),
        log_of(scratch)
    );
    served
}

fn ready(served: &Served) -> Option<(u16, String)> {
    served.get("/readyz", None).map(|r| (r.status, r.body))
}

/// Root and one admin with an email, and an admin-less user, before Herald ever starts.
fn seed(pg: &Postgres) {
    let db = pg.omero();
    db.batch("UPDATE experimenter SET email = 'root@example.org' WHERE id = 0");
    let mut call = Call::begin(&db);
    call.user("ada", Some("ada@example.org"), &[0]);
    call.user("old", Some("old@example.org"), &[]);
    call.commit();
}

/// (subject, recipient) of every mail received, sorted.
fn mails(smtp: &Server) -> Vec<(String, String)> {
    let mut got: Vec<(String, String)> = received_raw(smtp)
        .into_iter()
        .map(|(data, rcpt)| {
            let text = String::from_utf8_lossy(&data).replace("\r\n", "\n");
            (header(&text, "Subject").unwrap_or_default(), rcpt.join(","))
        })
        .collect();
    got.sort();
    got
}

fn user_mails(names: &[&str]) -> Vec<(String, String)> {
    let mut want: Vec<(String, String)> = names
        .iter()
        .map(|admin| {
            (
                "[OMERO] INSERT Experimenter notification".to_owned(),
                format!("{admin}@example.org"),
            )
        })
        .collect();
    want.sort();
    want
}

/// Events the eventlog source journaled, as (id, type).
fn journaled(scratch: &Scratch) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare("SELECT id, type FROM events WHERE source = ?1 ORDER BY id")
        .unwrap();
    stmt.query_map([format!("omero-db://{DB_UUID}")], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

/// `<group> <change>` of every membership event, in journal order (all of them erin's).
fn memberships(scratch: &Scratch) -> Vec<String> {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let mut stmt = conn
        .prepare(
            "SELECT json_extract(envelope, '$.data.group.name') || ' ' || \
             json_extract(envelope, '$.data.change') FROM events \
             WHERE type = 'omero.group.membership' AND json_extract(envelope, '$.data.user.name') = 'erin' \
             ORDER BY seq",
        )
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

fn event_id(eventlog_id: i64) -> String {
    format!("{DB_UUID}:eventlog:{eventlog_id}")
}

/// The saved eventlog cursor.
fn cursor(scratch: &Scratch) -> Value {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let text: String = conn
        .query_row(
            "SELECT cursor FROM source_state WHERE source = 'omero-eventlog'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    serde_json::from_str(&text).unwrap()
}

/// How many mails a broadcast to every active user queues: the directory's active users with an email.
fn active_with_email(served: &Served) -> i64 {
    let body = serde_json::json!({"subject": "count", "body": "b", "everyone": true});
    let reply = served.post_as(
        Some(ADMIN_TOKEN),
        "/v1/broadcast",
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    // Mails made: still queued, already sent or dead by the time of the answer.
    ["queued", "sent", "dead"]
        .iter()
        .map(|state| answer[state].as_i64().unwrap())
        .sum()
}

fn stop(mut served: Served) {
    let status = served.terminate();
    assert!(status.success(), "herald serve exited with {status}");
}

#[test]
fn new_users_groups_and_comments_are_mailed_once_and_history_is_not() {
    let pg = Postgres::start();
    seed(&pg);
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let served = serve(&scratch, &pg, &smtp, "5m");
    let db = pg.omero();
    let mut call = Call::begin(&db);
    let erin = call.user("erin", Some("erin@example.org"), &[]);
    let lab = call.group("lab");
    let owner_map = call.membership(lab, erin, 1, true);
    let first = call.commit();
    let mut call = Call::begin(&db);
    let image = call.image("cells.tif", erin, lab);
    call.commit();
    let mut call = Call::begin(&db);
    let ada: i64 = db.one("SELECT id FROM experimenter WHERE omename = 'ada'");
    call.comment(image, "nice cells", ada, lab);
    let comment = call.commit();
    let want_count = 2 + 1 + 1; // ada+root: new user; root: new group; erin: comment
    assert!(
        wait_for(WAIT, || mails(&smtp).len() >= want_count),
        "mails: {:?}\n{}",
        mails(&smtp),
        log_of(&scratch)
    );
    let mut want = user_mails(&["ada", "root"]);
    want.push((
        "[OMERO] INSERT ExperimenterGroup notification".into(),
        "root@example.org".into(),
    ));
    want.push((
        "[OMERO] INSERT CommentAnnotation notification".into(),
        "erin@example.org".into(),
    ));
    want.sort();
    assert_eq!(mails(&smtp), want, "history (old, ada) is not mailed");
    // Erin stops owning the lab, then leaves it: the map row is updated, then deleted (and gone).
    let mut call = Call::begin(&db);
    db.batch(&format!(
        "UPDATE groupexperimentermap SET owner = false WHERE id = {owner_map}"
    ));
    call.log("UPDATE", "ome.model.meta.GroupExperimenterMap", owner_map);
    call.commit();
    // (An UPDATE whose row is already deleted when it is read says nothing: wait for it first.)
    assert!(wait_for(WAIT, || memberships(&scratch).len() == 3));
    let mut call = Call::begin(&db);
    db.batch(&format!(
        "DELETE FROM groupexperimentermap WHERE id = {owner_map}"
    ));
    call.log("DELETE", "ome.model.meta.GroupExperimenterMap", owner_map);
    call.commit();
    let want_changes = [
        "user added",
        "lab added",
        "lab owner_revoked",
        "lab removed",
    ];
    assert!(
        wait_for(WAIT, || memberships(&scratch) == want_changes),
        "{:?}\n{}",
        memberships(&scratch),
        log_of(&scratch)
    );
    let journal = journaled(&scratch);
    let types: Vec<&str> = journal.iter().map(|(_, t)| t.as_str()).collect();
    assert!(
        journal.contains(&(event_id(first[0]), "omero.user.created".into())),
        "{journal:?}"
    );
    assert!(types.contains(&"omero.group.membership"), "{types:?}");
    assert!(
        journal.contains(&(event_id(comment[1]), "omero.comment.added".into())),
        "{journal:?}"
    );
    // A restart reads nothing twice; a user added afterwards is mailed once.
    stop(served);
    let served = serve(&scratch, &pg, &smtp, "5m");
    let mut call = Call::begin(&db);
    call.user("finn", Some("finn@example.org"), &[]);
    call.commit();
    assert!(wait_for(WAIT, || mails(&smtp).len() >= want_count + 2));
    std::thread::sleep(Duration::from_millis(500));
    let mut want_all = want.clone();
    want_all.extend(user_mails(&["ada", "root"]));
    want_all.sort();
    assert_eq!(mails(&smtp), want_all, "exactly once across the restart");
    assert_eq!(
        journaled(&scratch).len(),
        journal.len() + 2,
        "user + membership in `user`"
    );
    stop(served);
}

#[test]
fn two_transactions_committing_out_of_id_order_lose_no_event_even_across_a_restart() {
    let pg = Postgres::start();
    seed(&pg);
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let served = serve(&scratch, &pg, &smtp, "5m");
    let (early, late) = (pg.omero(), pg.omero());
    // `early` takes its eventlog ids first but commits last.
    let mut slow = Call::begin(&early);
    slow.user("slow", Some("slow@example.org"), &[]);
    let slow_ids = slow.save_logs();
    let mut fast = Call::begin(&late);
    fast.user("fast", Some("fast@example.org"), &[]);
    let fast_ids = fast.commit();
    assert!(slow_ids[0] < fast_ids[0]);
    let seen = |id: i64| journaled(&scratch).iter().any(|(e, _)| *e == event_id(id));
    assert!(wait_for(WAIT, || seen(fast_ids[0])), "{}", log_of(&scratch));
    assert!(!seen(slow_ids[0]));
    // Herald stops while the slow transaction is still open, and it commits while Herald is down.
    stop(served);
    let gaps = cursor(&scratch)["gaps"].clone();
    assert_eq!(
        gaps[0]["from"], slow_ids[0],
        "the open ids are a saved gap: {gaps}"
    );
    early.batch("COMMIT");
    let served = serve(&scratch, &pg, &smtp, "5m");
    assert!(wait_for(WAIT, || seen(slow_ids[0])), "{}", log_of(&scratch));
    assert!(wait_for(WAIT, || mails(&smtp).len() >= 4));
    let mut want = user_mails(&["ada", "root"]);
    want.extend(user_mails(&["ada", "root"]));
    want.sort();
    assert_eq!(mails(&smtp), want, "both users, once each");
    assert_eq!(cursor(&scratch)["low_water"], cursor(&scratch)["high"]);
    stop(served);
}

#[test]
fn a_rolled_back_id_is_given_up_after_the_grace_and_not_before() {
    let pg = Postgres::start();
    seed(&pg);
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let served = serve(&scratch, &pg, &smtp, "3s");
    let (first, second) = (pg.omero(), pg.omero());
    let mut doomed = Call::begin(&first);
    doomed.user("doomed", None, &[]);
    let doomed_ids = doomed.save_logs();
    first.batch("ROLLBACK");
    let mut kept = Call::begin(&second);
    kept.group("kept");
    let kept_ids = kept.commit();
    let seen = |id: i64| journaled(&scratch).iter().any(|(e, _)| *e == event_id(id));
    assert!(wait_for(WAIT, || seen(kept_ids[0])), "{}", log_of(&scratch));
    assert!(wait_for(WAIT, || cursor(&scratch)["high"] == kept_ids[0]));
    let held = cursor(&scratch);
    assert_eq!(held["high"], kept_ids[0]);
    assert_eq!(
        held["low_water"],
        doomed_ids[0] - 1,
        "waiting for the rolled-back ids: {held}"
    );
    assert!(
        wait_for(WAIT, || cursor(&scratch)["low_water"] == kept_ids[0]),
        "given up after gap_grace: {}",
        cursor(&scratch)
    );
    assert!(log_of(&scratch).contains("counted as rolled back"));
    stop(served);
}

#[test]
fn the_directory_is_read_from_the_database_refreshed_and_kept_through_an_outage() {
    let mut pg = Postgres::start();
    seed(&pg);
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let served = serve(&scratch, &pg, &smtp, "5m");
    // root, ada and old are active (in `user`) with an email.
    assert_eq!(active_with_email(&served), 3);
    let db = pg.omero();
    let mut call = Call::begin(&db);
    call.user("gina", Some("gina@example.org"), &[]);
    call.commit();
    assert!(
        wait_for(WAIT, || active_with_email(&served) == 4),
        "the new user is in the directory after the refresh\n{}",
        log_of(&scratch)
    );
    drop(db);
    pg.stop();
    assert!(
        wait_for(WAIT, || ready(&served).is_some_and(
            |(s, body)| s == 200 && body.contains("degraded: directory")
        )),
        "the outage is reported while ready: {:?}",
        ready(&served)
    );
    assert_eq!(active_with_email(&served), 4, "the last snapshot serves");
    let metrics = served.get("/metrics", Some(ADMIN_TOKEN)).unwrap().body;
    assert!(metrics.contains("herald_directory_stale 1"), "{metrics}");
    // A restart during the outage starts from the snapshot in the store.
    stop(served);
    let written = std::fs::read_to_string(scratch.path("herald.yaml")).unwrap();
    let yaml = written.split("http:\n").next().unwrap();
    let restarted = Served::start(
        &scratch,
        yaml,
        &[("HERALD_OMERO_DB_PASSWORD", HERALD_PASSWORD)],
    );
    assert!(
        wait_for(WAIT, || ready(&restarted).is_some_and(|(s, body)| s == 200
            && body
                .contains("degraded: omero-eventlog: cannot read eventlog"))),
        "the saved cursor is held through the outage: {:?}",
        ready(&restarted)
    );
    assert_eq!(
        active_with_email(&restarted),
        4,
        "the stored snapshot serves after a restart"
    );
    pg.restart();
    assert!(
        wait_for(WAIT, || ready(&restarted)
            .is_some_and(|(s, body)| s == 200 && !body.contains("degraded"))),
        "recovery is picked up: {:?}\n{}",
        ready(&restarted),
        log_of(&scratch)
    );
    stop(restarted);
}

#[test]
fn end_to_end_a_new_user_a_comment_a_failed_login_and_a_server_restart_each_give_the_stock_mail() {
    use crate::omero_log::{DOWN, UP, append, at, failure};
    let pg = Postgres::start();
    seed(&pg);
    let smtp = aiosmtpd(&[]);
    let scratch = Scratch::with_config("");
    let log = scratch.path("Blitz-0.log");
    append(&log, &[]);
    let yaml = format!(
        "mail:\n  from: omero@localhost\n  transport: smtp\n  smtp: {{host: 127.0.0.1, port: {port}, hello_name: herald.test}}\n\
         directory:\n  source: omero-db\n  url: {url}\n  password_env: HERALD_OMERO_DB_PASSWORD\n\
         sources:\n  - {{kind: omero-eventlog, url: \"{url}\", password_env: HERALD_OMERO_DB_PASSWORD, poll: 100ms}}\n  \
         - {{kind: omero-log, path: {log}, poll: 100ms}}\n\
         rules:\n  - {{name: new-user, module: builtin:new-user, on: [omero.user.created]}}\n  \
         - {{name: new-comment, module: builtin:new-comment, on: [omero.comment.added]}}\n  \
         - {{name: failed-login, module: builtin:failed-login, on: [omero.login.failed], \
         config: {{contact_system: true, on_specific_users: [root]}}}}\n  \
         - {{name: server-up, module: builtin:server-up, on: [omero.server.up]}}\n  \
         - {{name: server-down, module: builtin:server-down, on: [omero.server.down]}}\n",
        port = smtp.port,
        url = pg.url(),
        log = log.display(),
    );
    let served = Served::start(
        &scratch,
        &yaml,
        &[("HERALD_OMERO_DB_PASSWORD", HERALD_PASSWORD)],
    );
    assert!(wait_for(WAIT, || ready(&served).is_some_and(|(s, _)| s == 200)));
    let db = pg.omero();
    let mut call = Call::begin(&db);
    let hana = call.user("hana", Some("hana@example.org"), &[]);
    let image = call.image("hana.tif", hana, 1);
    call.commit();
    let ada: i64 = db.one("SELECT id FROM experimenter WHERE omename = 'ada'");
    let mut call = Call::begin(&db);
    call.comment(image, "lovely", ada, 1);
    call.commit();
    append(&log, &failure("root", "10:14:06"));
    append(&log, &[at("18:00:00", DOWN), at("18:01:00", UP)]);
    let mut want = user_mails(&["ada", "root"]);
    for subject in [
        "[OMERO] Login failed for 'root'",
        "[OMERO] Server shutdown",
        "[OMERO] Server started",
    ] {
        for admin in ["ada", "root"] {
            want.push((subject.to_owned(), format!("{admin}@example.org")));
        }
    }
    want.push((
        "[OMERO] INSERT CommentAnnotation notification".into(),
        "hana@example.org".into(),
    ));
    want.sort();
    assert!(
        wait_for(WAIT, || mails(&smtp).len() >= want.len()),
        "{:?}\n{}",
        mails(&smtp),
        log_of(&scratch)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(mails(&smtp), want);
    stop(served);
}
