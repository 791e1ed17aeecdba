//! The admin API (scope `admin`): broadcast, the outbox, the rules; the same store calls as the CLI.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use serde_json::{Value, json};

use super::live::Live;
use super::reload::Reloader;
use crate::config::Scope;
use crate::deliver::render;
use crate::manage::broadcast::{self, Counts, Refusal, Request};
use crate::sources::http::auth::{self, Tokens};
use crate::sources::http::problem::Problem;
use crate::store::writer::Writer;
use crate::store::{Filter, Ingested, ListState, Store};

/// What the admin endpoints use: a store connection of their own, the writer, the set in force.
pub struct Api {
    pub store: Arc<Mutex<Store>>,
    pub writer: Writer,
    pub live: Arc<Live>,
    pub reloader: Arc<Reloader>,
    /// When the service started (for the uptime in `GET /v1/status`).
    pub started: Instant,
}

/// How long `POST /v1/broadcast` waits for the evaluation stage to queue the mail.
const BROADCAST_WAIT: Duration = Duration::from_secs(30);

/// Every admin route, behind an `admin` token.
pub fn routes(api: Arc<Api>, tokens: Arc<Tokens>) -> Router {
    Router::new()
        .route("/v1/broadcast", post(post_broadcast))
        .route("/v1/outbox", get(list_outbox))
        .route("/v1/outbox/{id}", get(show_row))
        .route("/v1/outbox/{id}/retry", post(retry_row))
        .route("/v1/outbox/{id}/cancel", post(cancel_row))
        .route("/v1/rules", get(list_rules))
        .route("/v1/rules/{name}/release", post(release_rule))
        .route("/v1/admin/reload", post(reload))
        .route("/v1/status", get(status))
        .route_layer(from_fn_with_state((tokens, Scope::Admin), auth::require))
        .with_state(api)
}

type Answer = Result<Response, Problem>;

/// Run `work` on the API's store connection, off the tokio workers.
async fn with_store<T: Send + 'static>(
    api: &Api,
    work: impl FnOnce(&mut Store) -> anyhow::Result<T> + Send + 'static,
) -> Result<T, Problem> {
    let store = api.store.clone();
    let done = tokio::task::spawn_blocking(move || {
        let mut store = store.lock().unwrap_or_else(PoisonError::into_inner);
        work(&mut store)
    })
    .await;
    match done {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(store_failed(&err)),
        Err(err) => Err(store_failed(&anyhow::anyhow!("{err}"))),
    }
}

fn store_failed(err: &anyhow::Error) -> Problem {
    tracing::error!("admin API: the store failed: {err:#}");
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the store failed: {err:#}; retry later"),
    )
}

fn ok(value: Value) -> Answer {
    Ok((StatusCode::OK, axum::Json(value)).into_response())
}

fn answer(result: Answer) -> Response {
    result.unwrap_or_else(|problem| {
        tracing::info!(status = problem.status.as_u16(), detail = %problem.detail, "admin request refused");
        problem.into_response()
    })
}

/// `GET /v1/outbox?state=&rule=&since=&limit=`: rows newest first, as `herald outbox list --json`.
async fn list_outbox(State(api): State<Arc<Api>>, RawQuery(query): RawQuery) -> Response {
    answer(
        async {
            let filter = outbox_filter(query.as_deref().unwrap_or(""))?;
            let rows = with_store(&api, move |store| Ok(store.list_outbox(&filter)?)).await?;
            ok(json!({ "rows": rows }))
        }
        .await,
    )
}

/// The filter of `herald outbox list` from a query string; a bad value is a 400 naming its key.
fn outbox_filter(query: &str) -> Result<Filter, Problem> {
    let mut filter = Filter {
        state: None,
        rule: None,
        since: None,
        limit: 100,
    };
    let pairs: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    for (key, value) in pairs {
        let bad = |why: String| Problem::bad_request(format!("query parameter `{key}`: {why}"));
        match key.as_str() {
            "state" => filter.state = Some(value.parse::<ListState>().map_err(bad)?),
            "rule" => filter.rule = Some(value),
            "since" => filter.since = Some(crate::manage::parse_time(&value).map_err(bad)?),
            "limit" => {
                filter.limit = value
                    .parse()
                    .map_err(|_| bad(format!("`{value}` is not a count (0: all)")))?
            }
            _ => {
                return Err(bad(
                    "unknown; the filters are state, rule, since and limit".into()
                ));
            }
        }
    }
    Ok(filter)
}

/// A path id, or a 400 naming it.
fn row_id(text: &str) -> Result<i64, Problem> {
    text.parse().map_err(|_| {
        Problem::bad_request(format!("`{text}` is not an outbox row id (a whole number)"))
    })
}

fn no_row(id: i64) -> Problem {
    Problem::new(
        StatusCode::NOT_FOUND,
        format!("no outbox row {id}; GET /v1/outbox lists them"),
    )
}

/// `GET /v1/outbox/{id}`: the row, every attempt and the whole message.
async fn show_row(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    answer(
        async {
            let id = row_id(&id)?;
            let from = api.live.current().config.display_sender();
            let found = with_store(&api, move |store| {
                let Some(listed) = store.listed(id)? else {
                    return Ok(None);
                };
                let message = render::stored_message(store, id, &from)?;
                Ok(Some(json!({
                    "row": listed, "attempts": store.attempts(id)?,
                    "message": message.as_ref().map(|m| String::from_utf8_lossy(m)).ok(),
                    "unreadable": message.as_ref().err(),
                })))
            })
            .await?;
            ok(found.ok_or_else(|| no_row(id))?)
        }
        .await,
    )
}

/// `POST /v1/outbox/{id}/retry`: a dead or deferred row becomes due now.
async fn retry_row(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    answer(
        change_row(&api, &id, "queued", "dead or deferred", |store, id| {
            Ok(store.retry_row(id, Utc::now())?)
        })
        .await,
    )
}

/// `POST /v1/outbox/{id}/cancel`: a row not sent yet is never sent.
async fn cancel_row(State(api): State<Arc<Api>>, Path(id): Path<String>) -> Response {
    answer(
        change_row(&api, &id, "cancelled", "queued or dead", |store, id| {
            Ok(store.cancel_row(id)?)
        })
        .await,
    )
}

/// Apply `change`; 404 for no such row, 409 when the row is not in a state it applies to.
async fn change_row(
    api: &Api,
    id: &str,
    done: &'static str,
    allowed: &'static str,
    change: fn(&mut Store, i64) -> anyhow::Result<bool>,
) -> Answer {
    let id = row_id(id)?;
    let (changed, row) = with_store(api, move |store| {
        let changed = change(store, id)?;
        Ok((changed, store.listed(id)?))
    })
    .await?;
    let Some(row) = row else {
        return Err(no_row(id));
    };
    if !changed {
        return Err(Problem::new(
            StatusCode::CONFLICT,
            format!(
                "row {id} is {}, not {allowed}; it was not changed",
                row.state.as_str()
            ),
        ));
    }
    tracing::info!(row = id, "outbox row {done} by the admin API");
    ok(json!({ "id": id, "state": row.state.as_str(), "row": row }))
}

/// `GET /v1/rules`: every configured rule with its health, as `herald rules --json`.
async fn list_rules(State(api): State<Arc<Api>>) -> Response {
    let config = api.live.current().config.clone();
    answer(
        async {
            let rules = with_store(&api, move |store| {
                crate::manage::rules::listing(&config, store)
            })
            .await?;
            ok(json!({ "rules": rules }))
        }
        .await,
    )
}

/// `POST /v1/rules/{name}/release`: lift a quarantine; 404 for a rule not configured, 409 when not quarantined.
async fn release_rule(State(api): State<Arc<Api>>, Path(name): Path<String>) -> Response {
    let configured = api
        .live
        .current()
        .config
        .rules
        .iter()
        .any(|r| r.name == name);
    answer(
        async {
            if !configured {
                return Err(Problem::new(
                    StatusCode::NOT_FOUND,
                    format!("no rule named {name}; GET /v1/rules lists them"),
                ));
            }
            let rule = name.clone();
            if !with_store(&api, move |store| Ok(store.release_rule(&rule)?)).await? {
                return Err(Problem::new(
                    StatusCode::CONFLICT,
                    format!("rule {name} is not quarantined"),
                ));
            }
            tracing::info!(rule = %name, "rule released by the admin API");
            ok(json!({ "rule": name, "state": "active" }))
        }
        .await,
    )
}

/// `POST /v1/broadcast`: `herald email` over HTTP. The body is a JSON object with `subject`,
/// `body`, and the recipients (`everyone`, `inactive`, `user_ids`, `user_names`, `group_ids`,
/// `group_names`, `extra`); the answer has OMERO's counts once the mail is queued.
async fn post_broadcast(State(api): State<Arc<Api>>, body: Bytes) -> Response {
    answer(broadcast(&api, &body).await)
}

async fn broadcast(api: &Api, body: &[u8]) -> Answer {
    let mut request: Request = serde_json::from_slice(body).map_err(|e| {
        Problem::bad_request(format!(
            "invalid broadcast at line {} column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let set = api.live.current();
    let mut notices = Vec::new();
    if request.everyone && request.has_targets() {
        notices.push("Warning: users and groups ignored".to_owned());
    }
    notices.extend(request.drop_unknown(set.evaluator.directory()));
    let invalid = request.drop_invalid_extra();
    let invalid_extra = invalid.len();
    notices.extend(invalid);
    request
        .validate(&set.config, &set.evaluator)
        .map_err(refused)?;
    let evaluator = set.evaluator.clone();
    with_store(api, move |store| {
        broadcast::refuse_quarantined(&evaluator, store)
    })
    .await?
    .map_err(refused)?;
    let event = request.event("herald://api/broadcast");
    let journaled = api.writer.journal(vec![event.clone()]).await.map_err(|e| {
        Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("the broadcast was not stored ({e}); retry later"),
        )
    })?;
    let (Ingested::New(seq) | Ingested::Duplicate(seq)) = journaled[0];
    let outcome = wait_evaluated(api, seq).await?;
    let Some((counts, no_email)) = outcome else {
        return Ok((
            StatusCode::ACCEPTED,
            axum::Json(json!({
                "event": {"id": event.id, "source": event.source}, "evaluated": false,
                "notices": notices,
                "message": "Queued; the rules have not run yet (GET /v1/outbox shows the mail)",
            })),
        )
            .into_response());
    };
    ok(json!({
        "event": {"id": event.id, "source": event.source}, "evaluated": true,
        "queued": counts.queued, "sent": counts.sent, "dead": counts.dead,
        "no_email": no_email, "invalid_extra": invalid_extra, "notices": notices,
        "message": format!("Queued {} emails", counts.total()),
    }))
}

/// A refused broadcast: 422 with OMERO's message and exit code.
fn refused(Refusal(code, message): Refusal) -> Problem {
    let mut problem = Problem::invalid(message);
    problem.errors.push(json!({ "omero_exit_code": code }));
    problem
}

/// Wait until the evaluation stage has run the broadcast; its counts, or `None` past the wait.
/// A rule that failed on it is a 422 with OMERO's `Failed to send emails` message.
async fn wait_evaluated(api: &Api, seq: i64) -> Result<Option<(Counts, usize)>, Problem> {
    let deadline = Instant::now() + BROADCAST_WAIT;
    while Instant::now() < deadline {
        let done = with_store(api, move |store| {
            if !store.evaluated(seq)? {
                return Ok(None);
            }
            Ok(Some((
                store.first_failure(seq)?,
                Counts::of(store, seq)?,
                store.no_email_count(seq)?,
            )))
        })
        .await?;
        match done {
            Some((Some(failure), _, _)) => {
                return Err(refused(broadcast::failed_with(&failure)));
            }
            Some((None, counts, no_email)) => return Ok(Some((counts, no_email))),
            None => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    Ok(None)
}

/// `POST /v1/admin/reload`: the config, directory and rules from disk, swapped in whole; a
/// 422 with the config diagnostic when anything fails to load (the old set stays in force).
async fn reload(State(api): State<Arc<Api>>) -> Response {
    let reloader = api.reloader.clone();
    let done = tokio::task::spawn_blocking(move || reloader.reload()).await;
    answer(match done {
        Ok(Ok(reloaded)) => ok(json!(reloaded)),
        Ok(Err(err)) => Err(Problem::invalid(format!(
            "reload refused, the rules in force are unchanged: {err:#}"
        ))),
        Err(err) => Err(Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("reload failed: {err}; the rules in force are unchanged"),
        )),
    })
}

/// `GET /v1/status`: what the service is doing, for `herald status` and monitoring.
async fn status(State(api): State<Arc<Api>>) -> Response {
    let set = api.live.current();
    let rules: Vec<String> = set
        .evaluator
        .rules()
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let generation = api.live.generation();
    let uptime = api.started.elapsed().as_secs();
    answer(
        async {
            let (outbox, oldest, quarantined) = with_store(&api, |store| {
                let now = Utc::now();
                let oldest = store
                    .oldest_due_millis(now)?
                    .map(|due| (now.timestamp_millis() - due).max(0) as f64 / 1000.0);
                let mut quarantined: Vec<String> = store.quarantined()?.into_iter().collect();
                quarantined.sort();
                Ok((store.outbox_counts()?, oldest, quarantined))
            })
            .await?;
            let outbox: serde_json::Map<String, Value> = outbox
                .into_iter()
                .map(|(state, n)| (state, json!(n)))
                .collect();
            ok(json!({
                "version": env!("CARGO_PKG_VERSION"), "uptime_seconds": uptime,
                "rules": rules, "reload_generation": generation, "quarantined": quarantined,
                "outbox": outbox, "oldest_due_seconds": oldest,
            }))
        }
        .await,
    )
}
