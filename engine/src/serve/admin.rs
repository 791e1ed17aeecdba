//! The endpoints about the process itself: `GET /healthz`, `GET /readyz`, `GET /metrics`.

use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::from_fn_with_state;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::config::Scope;
use crate::sources::http::auth::{self, Tokens};
use crate::sources::readiness::Readiness;
use crate::store::Store;
use crate::store::writer::Writer;

/// Health and readiness (no token), and metrics (an `admin` token; `reader` counts the outbox).
pub fn routes(writer: Writer, readiness: Readiness, reader: Store, tokens: Arc<Tokens>) -> Router {
    let guarded = Router::new()
        .route("/metrics", get(metrics))
        .with_state(Arc::new(Mutex::new(reader)))
        .route_layer(from_fn_with_state((tokens, Scope::Admin), auth::require));
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state((writer, readiness))
        .merge(guarded)
}

/// The process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready: the rules are loaded (they are before the API listens), every source holds its
/// starting position, and the store takes a write (an empty transaction through the writer,
/// so a full or read-only store is not ready). Otherwise 503, one line per reason.
async fn readyz(State((writer, readiness)): State<(Writer, Readiness)>) -> Response {
    let mut reasons: Vec<String> = readiness
        .not_ready()
        .into_iter()
        .map(|(part, state)| format!("not ready: {part}: {state}"))
        .collect();
    if let Err(err) = writer.journal(Vec::new()).await {
        reasons.push(format!("not ready: the store takes no write: {err}"));
    }
    if reasons.is_empty() {
        let notes: String = readiness
            .degraded()
            .into_iter()
            .map(|(part, why)| format!("degraded: {part}: {why}\n"))
            .collect();
        return (StatusCode::OK, format!("ready\n{notes}")).into_response();
    }
    (StatusCode::SERVICE_UNAVAILABLE, reasons.join("\n") + "\n").into_response()
}

/// Every series in the Prometheus text format, the outbox counted at this moment.
async fn metrics(State(reader): State<Arc<Mutex<Store>>>) -> Response {
    let counted = tokio::task::spawn_blocking(move || {
        let store = reader.lock().unwrap_or_else(PoisonError::into_inner);
        store.outbox_counts()
    })
    .await;
    match counted {
        Ok(Ok(counts)) => crate::metrics::outbox_rows(&counts),
        Ok(Err(err)) => tracing::warn!("metrics: cannot count the outbox: {err}"),
        Err(err) => tracing::warn!("metrics: cannot count the outbox: {err}"),
    }
    let mut response = crate::metrics::render().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
    );
    response
}
