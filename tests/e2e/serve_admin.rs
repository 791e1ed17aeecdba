//! `herald serve` admin API: broadcast, the outbox and the rules over HTTP, against the real process.

use std::time::Duration;

use serde_json::{Value, json};

use crate::serve::{
    ADMIN_TOKEN, INGEST_TOKEN, QUEUE_ONLY, ROWS_PER_EVENT, Reply, Served, events, user_created,
};
use crate::support::{Scratch, wait_for};

/// Mail goes to the mail folder; the broadcast rule handles `herald.broadcast`.
const BROADCASTING: &str = "state_dir: var\nmail: {from: herald@example.org, transport: file}\n\
    rules:\n  - {name: broadcast, module: builtin:broadcast, on: [herald.broadcast]}\n";

fn sql(scratch: &Scratch, statement: &str) {
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    conn.execute(statement, []).unwrap();
}

impl Served {
    fn admin_get(&self, path: &str) -> Reply {
        self.get(path, Some(ADMIN_TOKEN))
            .expect("herald serve answered")
    }

    fn admin_post(&self, path: &str, body: &Value) -> Reply {
        self.post_as(
            Some(ADMIN_TOKEN),
            path,
            &[("Content-Type", "application/json")],
            body.to_string().as_bytes(),
        )
    }
}

fn assert_problem(reply: &Reply, status: u16, detail: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(
        reply.content_type, "application/problem+json",
        "{}",
        reply.body
    );
    let text = reply.json()["detail"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(text.contains(detail), "`{detail}` not in `{text}`");
}

/// Two queued rows of the new-user rule; their ids, newest first.
fn two_queued_rows(served: &Served, scratch: &Scratch) -> Vec<i64> {
    assert_eq!(served.post_event(&user_created("adm-1", 61)).status, 202);
    assert!(wait_for(Duration::from_secs(20), || scratch
        .count("SELECT count(*) FROM outbox")
        == ROWS_PER_EVENT));
    let list = served.admin_get("/v1/outbox");
    assert_eq!(list.status, 200, "{}", list.body);
    list.json()["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["id"].as_i64().unwrap())
        .collect()
}

#[test]
fn outbox_list_filters_like_the_cli_and_refuses_a_bad_filter_by_name() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let ids = two_queued_rows(&served, &scratch);
    assert_eq!(ids.len(), 2);
    let count = |query: &str| {
        let reply = served.admin_get(&format!("/v1/outbox{query}"));
        assert_eq!(reply.status, 200, "{query}: {}", reply.body);
        reply.json()["rows"].as_array().unwrap().len()
    };
    assert_eq!(count("?state=queued&rule=new-user"), 2);
    assert_eq!(count("?state=sent"), 0);
    assert_eq!(count("?rule=other"), 0);
    assert_eq!(count("?limit=1"), 1);
    assert_eq!(count("?since=1h"), 2);
    assert_eq!(count("?since=2099-01-01T00:00:00Z"), 0);
    assert_problem(&served.admin_get("/v1/outbox?state=lost"), 400, "`state`");
    assert_problem(&served.admin_get("/v1/outbox?since=soon"), 400, "`since`");
    assert_problem(&served.admin_get("/v1/outbox?colour=red"), 400, "`colour`");
}

#[test]
fn outbox_show_retry_and_cancel_change_real_rows_and_404_an_unknown_id() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let ids = two_queued_rows(&served, &scratch);

    let shown = served.admin_get(&format!("/v1/outbox/{}", ids[0]));
    assert_eq!(shown.status, 200, "{}", shown.body);
    let shown = shown.json();
    assert_eq!(shown["row"]["id"], ids[0]);
    assert!(
        shown["message"].as_str().unwrap().contains("Subject:"),
        "{shown}"
    );
    assert_problem(
        &served.admin_get("/v1/outbox/999999"),
        404,
        "no outbox row 999999",
    );
    assert_problem(&served.admin_get("/v1/outbox/abc"), 400, "`abc`");

    let cancel = served.admin_post(&format!("/v1/outbox/{}/cancel", ids[0]), &json!({}));
    assert_eq!(cancel.status, 200, "{}", cancel.body);
    assert_eq!(cancel.json()["state"], "cancelled");
    let cancelled = format!(
        "SELECT count(*) FROM outbox WHERE id = {} AND state = 'cancelled'",
        ids[0]
    );
    assert_eq!(scratch.count(&cancelled), 1);
    let again = served.admin_post(&format!("/v1/outbox/{}/cancel", ids[0]), &json!({}));
    assert_problem(&again, 409, "not queued or dead");
    assert_problem(
        &served.admin_post("/v1/outbox/999999/cancel", &json!({})),
        404,
        "no outbox row",
    );

    sql(
        &scratch,
        &format!("UPDATE outbox SET state = 'dead' WHERE id = {}", ids[1]),
    );
    let retry = served.admin_post(&format!("/v1/outbox/{}/retry", ids[1]), &json!({}));
    assert_eq!(retry.status, 200, "{}", retry.body);
    let dead = format!(
        "SELECT count(*) FROM outbox WHERE id = {} AND state = 'dead'",
        ids[1]
    );
    assert_eq!(scratch.count(&dead), 0, "the dead row is queued again");
    assert_problem(
        &served.admin_post("/v1/outbox/999999/retry", &json!({})),
        404,
        "no outbox row",
    );
}

#[test]
fn rules_are_listed_with_health_and_a_quarantined_rule_is_released() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let rules = served.admin_get("/v1/rules");
    assert_eq!(rules.status, 200, "{}", rules.body);
    let rules = rules.json();
    assert_eq!(rules["rules"][0]["rule"], "new-user", "{rules}");
    assert_eq!(rules["rules"][0]["state"], "active", "{rules}");

    sql(
        &scratch,
        "INSERT INTO rule_health (rule, consecutive_failures, last_failure_at, last_reason, quarantined_at, skipped) \
         VALUES ('new-user', 5, '2026-11-23T09:00:00Z', 'trap', '2026-11-23T09:00:00Z', 0)",
    );
    assert_eq!(
        served.admin_get("/v1/rules").json()["rules"][0]["state"],
        "quarantined"
    );
    let release = served.admin_post("/v1/rules/new-user/release", &json!({}));
    assert_eq!(release.status, 200, "{}", release.body);
    assert_eq!(
        scratch.count("SELECT count(*) FROM rule_health WHERE quarantined_at IS NOT NULL"),
        0
    );
    assert_problem(
        &served.admin_post("/v1/rules/new-user/release", &json!({})),
        409,
        "not quarantined",
    );
    assert_problem(
        &served.admin_post("/v1/rules/nope/release", &json!({})),
        404,
        "no rule named nope",
    );
}

#[test]
fn admin_endpoints_need_an_admin_token() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    for path in ["/v1/outbox", "/v1/outbox/1", "/v1/rules"] {
        assert_problem(&served.get(path, None).unwrap(), 401, "");
        assert_problem(
            &served.get(path, Some(INGEST_TOKEN)).unwrap(),
            403,
            "scope ingest",
        );
    }
    for path in [
        "/v1/broadcast",
        "/v1/outbox/1/retry",
        "/v1/outbox/1/cancel",
        "/v1/rules/new-user/release",
    ] {
        assert_problem(&served.post_as(None, path, &[], b"{}"), 401, "");
        assert_problem(
            &served.post_as(Some(INGEST_TOKEN), path, &[], b"{}"),
            403,
            "scope ingest",
        );
    }
}

#[test]
fn broadcast_queues_like_herald_email_with_its_notices_and_counts() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, BROADCASTING, &[]);
    let reply = served.admin_post(
        "/v1/broadcast",
        &json!({"subject": "Maintenance", "body": "Down at 6.", "user_names": ["alice", "bob", "nobody"],
                "extra": ["not an address", "ops@example.org"]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let answer = reply.json();
    assert_eq!(answer["message"], "Queued 3 emails", "{answer}");
    assert_eq!(answer["invalid_extra"], 1, "{answer}");
    let notices = answer["notices"].to_string();
    assert!(notices.contains("Unknown user: nobody"), "{notices}");
    assert!(
        notices.contains("Invalid email address: not an address"),
        "{notices}"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox WHERE rule = 'broadcast'"),
        3
    );
}

#[test]
fn a_refused_broadcast_gets_omeros_message_as_a_problem_and_stores_nothing() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, BROADCASTING, &[]);
    for (body, status, detail) in [
        (
            json!({"subject": "S", "body": "B"}),
            422,
            "ApiUsageException:No recipients specified.",
        ),
        (
            json!({"subject": " ", "body": "B", "everyone": true}),
            422,
            "no-subject: Email must contain subject.",
        ),
        (
            json!({"subject": "S", "body": " ", "everyone": true}),
            422,
            "ApiUsageException:Email must contain body.",
        ),
        (
            json!({"subject": "S", "body": "B", "user_names": ["nobody"]}),
            422,
            "No recipients specified.",
        ),
        (
            json!({"subject": "S", "body": "B", "everybody": true}),
            400,
            "unknown field `everybody`",
        ),
    ] {
        assert_problem(&served.admin_post("/v1/broadcast", &body), status, detail);
    }
    let bad = served.post_as(Some(ADMIN_TOKEN), "/v1/broadcast", &[], b"{\"subject\": ");
    assert_problem(&bad, 400, "line 1 column");
    assert_eq!(events(&scratch), 0, "a refused broadcast stored nothing");
}

/// `herald.yaml` as written by `Served::start`, with the rule `from` renamed `to`.
fn rename_rule(scratch: &Scratch, from: &str, to: &str) {
    let path = scratch.path("herald.yaml");
    let yaml = std::fs::read_to_string(&path).unwrap();
    assert!(yaml.contains(&format!("name: {from},")), "{yaml}");
    std::fs::write(
        &path,
        yaml.replace(&format!("name: {from},"), &format!("name: {to},")),
    )
    .unwrap();
}

fn sighup(served: &Served) {
    // SAFETY: kill has no memory preconditions; the pid is our live child's.
    unsafe { libc::kill(served.pid() as i32, libc::SIGHUP) };
}

#[test]
fn a_reload_swaps_the_rule_while_events_flow_and_none_is_lost_or_evaluated_twice() {
    const N: usize = 240;
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    std::thread::scope(|scope| {
        let poster = scope.spawn(|| {
            for i in 0..N {
                let reply = served.post_event(&user_created(&format!("rl-{i}"), 1000 + i as u32));
                assert_eq!(reply.status, 202, "{}", reply.body);
            }
        });
        assert!(wait_for(Duration::from_secs(30), || events(&scratch) >= 40));
        rename_rule(&scratch, "new-user", "welcome");
        let reloaded = served.admin_post("/v1/admin/reload", &json!({}));
        assert_eq!(reloaded.status, 200, "{}", reloaded.body);
        assert_eq!(reloaded.json()["rules"], json!(["welcome"]));
        assert!(wait_for(Duration::from_secs(30), || events(&scratch) >= 140));
        rename_rule(&scratch, "welcome", "hello");
        sighup(&served);
        poster.join().unwrap();
    });
    let evaluated = || scratch.count("SELECT count(*) FROM events WHERE state = 'done'");
    assert!(wait_for(Duration::from_secs(60), || evaluated() == N as i64));
    assert_eq!(events(&scratch), N as i64, "no event lost");
    assert_eq!(
        scratch.count("SELECT count(DISTINCT event_seq) FROM rule_runs"),
        N as i64,
        "every event ran a rule"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM (SELECT event_seq FROM rule_runs GROUP BY event_seq HAVING count(*) != 1)"),
        0,
        "no event ran under two rule sets"
    );
    assert_eq!(
        scratch.count(
            "SELECT count(*) FROM (SELECT event_seq FROM outbox GROUP BY event_seq \
                       HAVING count(*) != 2 OR count(DISTINCT rule) != 1)"
        ),
        0,
        "each event queued its two rows, from one rule"
    );
    assert_eq!(
        scratch.count("SELECT count(*) FROM outbox"),
        ROWS_PER_EVENT * N as i64
    );
    for rule in ["new-user", "welcome", "hello"] {
        let rows = format!("SELECT count(*) FROM rule_runs WHERE rule = '{rule}'");
        assert!(scratch.count(&rows) > 0, "{rule} evaluated no event");
    }
    let last = "SELECT rule FROM rule_runs ORDER BY event_seq DESC LIMIT 1";
    let conn = rusqlite::Connection::open(scratch.path("var/herald.db")).unwrap();
    let rule: String = conn.query_row(last, [], |r| r.get(0)).unwrap();
    assert_eq!(rule, "hello", "the SIGHUP set is in force");
}

#[test]
fn a_broken_config_or_module_is_refused_and_the_old_rules_keep_serving() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    let path = scratch.path("herald.yaml");
    let good = std::fs::read_to_string(&path).unwrap();

    std::fs::write(
        &path,
        good.replace("builtin:new-user", "./missing-rule.wasm"),
    )
    .unwrap();
    let refused = served.admin_post("/v1/admin/reload", &json!({}));
    assert_problem(&refused, 422, "missing-rule.wasm");
    assert_problem(&refused, 422, "the rules in force are unchanged");

    std::fs::write(&path, good.replace("rules:\n", "rules: [\n")).unwrap();
    assert_problem(
        &served.admin_post("/v1/admin/reload", &json!({})),
        422,
        "line",
    );

    sighup(&served);
    assert!(wait_for(Duration::from_secs(20), || crate::serve::log_of(
        &scratch
    )
    .contains("reload failed")));

    assert_eq!(
        served.post_event(&user_created("after-broken", 70)).status,
        202
    );
    let by_old = "SELECT count(*) FROM outbox WHERE rule = 'new-user'";
    assert!(
        wait_for(Duration::from_secs(20), || scratch.count(by_old)
            == ROWS_PER_EVENT),
        "the old rule did not evaluate; log:\n{}",
        crate::serve::log_of(&scratch)
    );
    assert_eq!(served.get("/readyz", None).unwrap().status, 200);
}

/// `herald status` against the scratch config, with `envs` and `args`.
fn status(scratch: &Scratch, envs: &[(&str, &str)], args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .arg("--config")
        .arg(scratch.path("herald.yaml"))
        .arg("--state-dir")
        .arg(scratch.path("var"))
        .arg("status")
        .args(args)
        .env_remove("HERALD_ADMIN_TOKEN")
        .envs(envs.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn herald_status_prints_readiness_outbox_depth_rules_and_the_oldest_due_row() {
    let scratch = Scratch::with_config("");
    let served = Served::start(&scratch, QUEUE_ONLY, &[]);
    two_queued_rows(&served, &scratch);
    let out = status(&scratch, &[("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)], &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ready",
        "rules: new-user",
        "quarantined: none",
        "outbox: queued 2",
        "oldest due row: waiting",
    ] {
        assert!(text.contains(line), "`{line}` not in:\n{text}");
    }
    std::fs::write(scratch.path("admin.token"), format!("{ADMIN_TOKEN}\n")).unwrap();
    let token_file = scratch.path("admin.token");
    let out = status(
        &scratch,
        &[],
        &["--json", "--token-file", token_file.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["ready"], true);
    assert_eq!(json["status"]["outbox"]["queued"], 2);

    let out = status(&scratch, &[("HERALD_ADMIN_TOKEN", INGEST_TOKEN)], &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("403"),
        "{out:?}"
    );
}

#[test]
fn herald_status_says_the_service_is_down_and_exits_1() {
    let scratch = Scratch::with_config("");
    let port = crate::support::free_port();
    std::fs::write(
        scratch.path("herald.yaml"),
        format!("{QUEUE_ONLY}http:\n  listen: 127.0.0.1:{port}\n  tokens: [{{name: ops, scope: admin, token_env: X}}]\n"),
    )
    .unwrap();
    let out = status(&scratch, &[("HERALD_ADMIN_TOKEN", ADMIN_TOKEN)], &[]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("does not answer at http://127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains("is it running?"), "{err}");
}

/// The shipped unit's `[Service]` settings, as `key=value` pairs.
fn unit_settings() -> Vec<(String, String)> {
    let unit = std::fs::read_to_string(crate::support::repo().join("etc/herald.service")).unwrap();
    unit.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

#[test]
fn the_systemd_unit_is_hardened_reloads_with_sighup_and_outwaits_the_shutdown_grace() {
    let settings = unit_settings();
    let value = |key: &str| {
        settings
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or_else(|| panic!("etc/herald.service has no {key}="))
    };
    assert!(
        value("ExecStart").ends_with(" serve"),
        "{}",
        value("ExecStart")
    );
    assert!(value("ExecStart").contains("--state-dir /var/lib/herald"));
    assert_eq!(value("User"), "herald");
    assert_eq!(value("StateDirectory"), "herald");
    assert_eq!(value("ConfigurationDirectory"), "herald");
    for key in ["ProtectHome", "NoNewPrivileges", "PrivateTmp"] {
        assert_eq!(value(key), "yes", "{key}");
    }
    assert_eq!(value("ProtectSystem"), "strict");
    assert_eq!(value("RestrictAddressFamilies"), "AF_INET AF_INET6 AF_UNIX");
    assert_eq!(value("SystemCallFilter"), "@system-service");
    assert_eq!(value("ExecReload"), "/bin/kill -HUP $MAINPID");
    assert_eq!(value("KillSignal"), "SIGTERM");
    let stop = humantime::parse_duration(value("TimeoutStopSec")).unwrap();
    assert!(
        stop > Duration::from_secs(10),
        "TimeoutStopSec must exceed serve.shutdown_grace (10s)"
    );
    assert!(
        !settings.iter().any(|(k, _)| k == "MemoryDenyWriteExecute"),
        "wasmtime compiles rules at run time; W^X memory would stop it"
    );
}

/// `systemd-analyze verify` finds nothing to say about the unit (skipped where it is not installed).
#[test]
fn systemd_analyze_verify_accepts_the_unit() {
    let probe = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .expect("systemd-analyze is not installed: run `make test-deps` (Debian's systemd)");
    assert!(probe.status.success());
    let scratch = Scratch::new();
    let unit = std::fs::read_to_string(crate::support::repo().join("etc/herald.service")).unwrap();
    // verify checks that ExecStart's binary exists: point it at the one under test.
    let unit = unit.replace("/usr/local/bin/herald", env!("CARGO_BIN_EXE_herald"));
    std::fs::write(scratch.path("herald.service"), unit).unwrap();
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(scratch.path("herald.service"))
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let about_unit: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("herald.service"))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify: {about_unit:#?}"
    );
}

#[test]
fn a_sighup_while_the_rules_compile_is_a_reload_once_serving_not_a_kill() {
    let scratch = Scratch::with_config("");
    let yaml = "mail: {from: \"\"}\nrules:\n  - {name: new-user, module: builtin:new-user, \
                on: [omero.user.created]}\n";
    // From the moment the signals are caught until /healthz answers, SIGHUP every look.
    let mut served = Served::start_with(&scratch, yaml, &[], |served| {
        if crate::serve::log_of(&scratch).contains("signals caught") {
            served.signal(libc::SIGHUP);
        }
    });
    assert!(served.running());
    let reloaded = wait_for(Duration::from_secs(60), || {
        crate::serve::log_of(&scratch).contains("reloaded the config")
    });
    assert!(reloaded, "{}", crate::serve::log_of(&scratch));
    assert!(served.running());
    assert_eq!(served.post_event(&user_created("hup-1", 5)).status, 202);
    assert!(served.terminate().success());
}
