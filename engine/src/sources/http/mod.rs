//! The HTTP event source: `POST /v1/events`, answered 202 only once the events are journaled.

pub mod auth;
pub mod parse;
pub mod problem;
pub mod tls;

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use chrono::Utc;
use serde_json::json;

use crate::config::{IngestConfig, Scope};
use crate::store::Ingested;
use crate::store::writer::{WriteFailed, Writer};
use problem::Problem;

/// What the ingest endpoint needs.
pub struct Ingest {
    pub writer: Writer,
    /// The largest body taken (`http.max_body`).
    pub max_body: usize,
    /// What is admitted: the size caps and the event types (`ingest.*`).
    pub types: IngestConfig,
}

/// `POST /v1/events`, for tokens of scope `ingest` or `admin`.
pub fn routes(ingest: Arc<Ingest>, tokens: Arc<auth::Tokens>) -> Router {
    Router::new()
        .route("/v1/events", post(post_events))
        .route_layer(from_fn_with_state((tokens, Scope::Ingest), auth::require))
        .with_state(ingest)
}

async fn post_events(
    State(ingest): State<Arc<Ingest>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    match accept(&ingest, &headers, body).await {
        Ok(response) => response,
        Err(problem) => {
            crate::metrics::request_refused();
            tracing::info!(status = problem.status.as_u16(), detail = %problem.detail, "event request refused");
            problem.into_response()
        }
    }
}

async fn accept(ingest: &Ingest, headers: &HeaderMap, body: Body) -> Result<Response, Problem> {
    let body = read_body(headers, body, ingest.max_body).await?;
    let admit = parse::Admit {
        now: Utc::now(),
        caps: &ingest.types.caps,
    };
    let events = parse::events(headers, &body, admit)?;
    parse::check_types(&events, &ingest.types)?;
    let names: Vec<(String, String)> = events
        .iter()
        .map(|e| (e.id.clone(), e.source.clone()))
        .collect();
    let results = ingest.writer.journal(events).await.map_err(unavailable)?;
    Ok((StatusCode::ACCEPTED, axum::Json(answer(&names, &results))).into_response())
}

/// The body, or 413 when it is over `max` (told by Content-Length, or found while reading).
async fn read_body(headers: &HeaderMap, body: Body, max: usize) -> Result<Vec<u8>, Problem> {
    let too_large = || {
        Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the body is over http.max_body ({max} bytes); send fewer events per request"),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return Err(too_large());
    }
    match to_bytes(body, max).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(err) if is_length_limit(&err) => Err(too_large()),
        Err(err) => Err(Problem::bad_request(format!("cannot read the body: {err}"))),
    }
}

fn is_length_limit(err: &axum::Error) -> bool {
    let mut source: Option<&dyn std::error::Error> = Some(err);
    while let Some(e) = source {
        if e.to_string().contains("length limit") {
            return true;
        }
        source = e.source();
    }
    false
}

/// 503: the store did not take the events; nothing was stored, the client may retry.
fn unavailable(err: WriteFailed) -> Problem {
    Problem::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("the events were not stored ({err}); retry later"),
    )
}

/// `{"events": [{"id", "source", "status": "new" | "duplicate"}]}`, from each event's (id, source).
fn answer(names: &[(String, String)], results: &[Ingested]) -> serde_json::Value {
    let events: Vec<_> = names
        .iter()
        .zip(results)
        .map(|((id, source), result)| {
            let status = match result {
                Ingested::New(_) => "new",
                Ingested::Duplicate(_) => "duplicate",
            };
            json!({"id": id, "source": source, "status": status})
        })
        .collect();
    json!({ "events": events })
}
