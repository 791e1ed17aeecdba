//! Bearer tokens: read once from `token_file`/`token_env`, compared in constant time, never logged.

use std::sync::Arc;

use anyhow::{Context, bail};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use subtle::ConstantTimeEq;

use super::problem::Problem;
use crate::config::{Scope, TokenConfig, TokenSource};

/// The configured tokens with their secrets.
pub struct Tokens {
    entries: Vec<Entry>,
}

struct Entry {
    name: String,
    scope: Scope,
    secret: Vec<u8>,
}

impl Tokens {
    /// Read every token's secret; an error names the token and where it looked, never a value.
    pub fn load(config: &[TokenConfig]) -> anyhow::Result<Tokens> {
        if config.is_empty() {
            bail!(
                "http.tokens is empty, so nobody could call the API; add one, e.g. \
                 `tokens: [{{name: omero, scope: ingest, token_file: ingest.token}}]`"
            );
        }
        let entries = config.iter().map(read).collect::<anyhow::Result<_>>()?;
        Ok(Tokens { entries })
    }

    /// The entry whose secret is `presented`. Every secret is compared, each in constant
    /// time, so the time taken does not tell which one (or how much of one) matched.
    fn find(&self, presented: &[u8]) -> Option<&Entry> {
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.secret.as_slice().ct_eq(presented)) {
                found = Some(entry);
            }
        }
        found
    }
}

fn read(token: &TokenConfig) -> anyhow::Result<Entry> {
    let secret = match &token.source {
        TokenSource::File(path) => std::fs::read_to_string(path).with_context(|| {
            format!(
                "http.tokens {}: cannot read token_file {}",
                token.name,
                path.display()
            )
        })?,
        TokenSource::Env(var) => std::env::var(var).with_context(|| {
            format!(
                "http.tokens {}: environment variable {var} (token_env) is not set",
                token.name
            )
        })?,
    };
    let secret = secret.trim();
    if secret.len() < 16 {
        bail!(
            "http.tokens {}: the token is shorter than 16 characters; use a long random one, \
             e.g. `openssl rand -hex 32`",
            token.name
        );
    }
    Ok(Entry {
        name: token.name.clone(),
        scope: token.scope,
        secret: secret.as_bytes().to_vec(),
    })
}

/// What a route needs: the tokens and the scope it takes (`admin` tokens pass everywhere).
pub type Guard = (Arc<Tokens>, Scope);

/// Middleware: 401 without a known bearer token, 403 when its scope does not reach the route.
pub async fn require(
    State((tokens, needed)): State<Guard>,
    request: Request,
    next: Next,
) -> Response {
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(entry) = presented.and_then(|p| tokens.find(p.as_bytes())) else {
        let why = match presented {
            None => "an `Authorization: Bearer TOKEN` header is needed",
            Some(_) => "the bearer token is not one of http.tokens",
        };
        return unauthorized(why);
    };
    if needed == Scope::Admin && entry.scope != Scope::Admin {
        let detail = format!(
            "token {} has scope ingest; this endpoint needs a token with scope admin",
            entry.name
        );
        return Problem::new(StatusCode::FORBIDDEN, detail).into_response();
    }
    tracing::debug!(token = %entry.name, path = %request.uri().path(), "authorized");
    next.run(request).await
}

fn unauthorized(why: &str) -> Response {
    let mut response = Problem::new(StatusCode::UNAUTHORIZED, why).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"herald\""),
    );
    response
}
