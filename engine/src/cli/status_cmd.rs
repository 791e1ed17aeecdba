//! `herald status`: asks the running service (`GET /readyz`, `GET /v1/status`) what it is doing.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use super::{CliError, Context, Outcome, report};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// The service's base URL (default: http:// and the config's http.listen).
    #[arg(long)]
    url: Option<String>,
    /// A file holding an admin token (else HERALD_ADMIN_TOKEN).
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn run(ctx: &Context, args: Args) -> Outcome {
    let base = match &args.url {
        Some(url) => url.trim_end_matches('/').to_owned(),
        None => local_url(ctx)?,
    };
    let token = admin_token(args.token_file.as_deref())?;
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let ready = match get(&agent, &format!("{base}/readyz"), None) {
        Ok((status, body)) => (status == 200, body.trim().to_owned()),
        Err(err) => {
            eprintln!(
                "herald status: the service does not answer at {base} ({err}); \
                 is it running? (`systemctl status herald`, `journalctl -u herald`)"
            );
            return Ok(ExitCode::from(1));
        }
    };
    let (code, body) = get(&agent, &format!("{base}/v1/status"), Some(&token))
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("GET {base}/v1/status failed: {e}")))?;
    if code != 200 {
        let detail = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["detail"].as_str().map(str::to_owned))
            .unwrap_or(body);
        eprintln!("herald status: GET /v1/status answered {code}: {detail}");
        return Ok(ExitCode::from(1));
    }
    let status: Value = serde_json::from_str(&body)
        .map_err(|e| CliError::Runtime(anyhow::anyhow!("GET /v1/status: not JSON ({e})")))?;
    if args.json {
        report::print_json(&serde_json::json!({"ready": ready.0, "status": status}))?;
    } else {
        print_status(&base, &ready, &status);
    }
    Ok(if ready.0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `http://` and the config's `http.listen`, an unspecified address asked on loopback.
fn local_url(ctx: &Context) -> Result<String, CliError> {
    let mut listen = ctx.config()?.http.listen;
    if listen.ip().is_unspecified() {
        listen.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    Ok(format!("http://{listen}"))
}

/// The admin token from `--token-file`, else `HERALD_ADMIN_TOKEN`; an error says where to put it.
fn admin_token(file: Option<&std::path::Path>) -> Result<String, CliError> {
    let token = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|e| {
            CliError::Usage(format!("cannot read --token-file {}: {e}", path.display()))
        })?,
        None => std::env::var("HERALD_ADMIN_TOKEN").map_err(|_| {
            CliError::Usage(
                "no admin token: pass --token-file FILE or set HERALD_ADMIN_TOKEN \
                 (a token of scope admin in http.tokens)"
                    .into(),
            )
        })?,
    };
    Ok(token.trim().to_owned())
}

fn get(agent: &ureq::Agent, url: &str, token: Option<&str>) -> Result<(u16, String), ureq::Error> {
    let mut request = agent.get(url);
    if let Some(token) = token {
        request = request.header("Authorization", format!("Bearer {token}"));
    }
    let mut response = request.call()?;
    let status = response.status().as_u16();
    Ok((
        status,
        response.body_mut().read_to_string().unwrap_or_default(),
    ))
}

fn print_status(base: &str, (ready, why): &(bool, String), status: &Value) {
    let readiness = if *ready { "ready" } else { why.as_str() };
    println!("herald {} at {base}: {readiness}", text(&status["version"]));
    println!(
        "uptime: {}",
        humantime::format_duration(Duration::from_secs(
            status["uptime_seconds"].as_u64().unwrap_or_default(),
        ))
    );
    println!(
        "rules: {} (reloads: {})",
        list(&status["rules"]),
        status["reload_generation"]
    );
    println!("quarantined: {}", list(&status["quarantined"]));
    let outbox = status["outbox"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "empty".into());
    println!("outbox: {outbox}");
    match status["oldest_due_seconds"].as_f64() {
        Some(age) => println!("oldest due row: waiting {age:.1}s"),
        None => println!("oldest due row: none due"),
    }
}

fn text(value: &Value) -> String {
    value.as_str().unwrap_or_default().to_owned()
}

fn list(value: &Value) -> String {
    let items: Vec<String> = value
        .as_array()
        .map(|a| a.iter().map(text).collect())
        .unwrap_or_default();
    if items.is_empty() {
        "none".into()
    } else {
        items.join(", ")
    }
}
