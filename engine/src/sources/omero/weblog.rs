//! OMEROweb.log lines → `omero.web.error` for 404s and server errors (Django's `django.request` logger).
//!
//! OMERO.web's `request_handler` writes, for each response Django logs (404 at WARNING, 5xx at
//! ERROR), a line ending in `HTTP <status> <WSGIRequest: <METHOD> '<path>'>`; that line carries the
//! status, method and path, and is the one read. The log holds less than Django's admin mail (no
//! referer, user agent, traceback or request details): the SMTP route gives those.

use serde_json::{Value, json};

use super::logfile::Lines;
use super::tail::Line;
use crate::event::types;

/// OMEROweb.log as a source of web errors on `host`.
pub struct WebLines {
    pub host: String,
}

/// (status, method, path) of a `HTTP <status> <WSGIRequest: <METHOD> '<path>'>` line.
pub fn request(text: &str) -> Option<(u16, String, String)> {
    if !text.contains("[") || !text.contains("django.request") {
        return None;
    }
    let (_, after) = text.rsplit_once(" HTTP ")?;
    let (status, repr) = after.split_once(' ')?;
    let status: u16 = status.parse().ok()?;
    let inner = repr.strip_prefix("<WSGIRequest: ")?.strip_suffix('>')?;
    let (method, path) = inner.split_once(' ')?;
    let path = path.strip_prefix('\'')?.strip_suffix('\'')?;
    Some((status, method.to_owned(), path.to_owned()))
}

impl Lines for WebLines {
    fn event(&mut self, line: &Line) -> Option<(&'static str, Value)> {
        let (status, method, path) = request(&line.text)?;
        if status != 404 && status < 500 {
            return None;
        }
        let url = format!("http://{}{path}", self.host);
        Some((
            types::WEB_ERROR,
            json!({"status": status, "method": method, "path": path, "url": url, "host": self.host}),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERROR: &str = "2025-08-29 10:14:06,008 ERROR [                          django.request] (proc.12345) log_response():224 HTTP 500 <WSGIRequest: GET '/webclient/x'>";
    const NOT_FOUND: &str = "2025-08-29 10:14:07,008 WARNI [                          django.request] (proc.12345) log_response():224 HTTP 404 <WSGIRequest: POST '/webclient/missing'>";
    const PLAIN: &str = "2025-08-29 10:14:06,008 ERROR [                          django.request] (proc.12345) log_response():224 Internal Server Error: /webclient/x";

    #[test]
    fn request_lines_give_status_method_and_path() {
        assert_eq!(
            request(ERROR),
            Some((500, "GET".into(), "/webclient/x".into()))
        );
        assert_eq!(
            request(NOT_FOUND),
            Some((404, "POST".into(), "/webclient/missing".into()))
        );
        assert_eq!(
            request(PLAIN),
            None,
            "the plain line of the same record is not read twice"
        );
    }
}
