//! The `sources` section and `directory.source: omero-db`: OMERO's database, logs and ports as inputs.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::PasswordSource;
use super::delivery::Interval;
use super::scalar::{Scalar, check_scalar, check_text, rejected};
use super::values::PathValue;

/// How often the directory is read again from OMERO's database unless configured.
const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// How often `eventlog` is polled unless configured.
const DEFAULT_POLL: Duration = Duration::from_secs(2);
/// How long a skipped `eventlog` id is waited for unless configured.
const DEFAULT_GAP_GRACE: Duration = Duration::from_secs(300);
/// Rows read per `eventlog` query unless configured.
const DEFAULT_BATCH: u32 = 1000;

/// Where the directory comes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum DirectorySource {
    /// `directory.path` (a YAML file).
    #[default]
    File,
    /// OMERO's own database, read again every `refresh` and when `eventlog` shows directory changes.
    OmeroDb { db: DbConnection, refresh: Duration },
}

/// A PostgreSQL connection to OMERO's database: the URL (without a password) and where the password is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DbConnection {
    pub url: String,
    pub password: Option<PasswordSource>,
}

/// One entry of `sources`.
#[derive(Clone, Debug, PartialEq)]
pub enum SourceConfig {
    Eventlog(EventlogConfig),
    Log(LogConfig),
    Probe(ProbeConfig),
    WebLog(WebLogConfig),
}

/// `kind: omero-eventlog`.
#[derive(Clone, Debug, PartialEq)]
pub struct EventlogConfig {
    pub db: DbConnection,
    /// How often `eventlog` is read.
    pub poll: Duration,
    /// How long an id skipped below the highest one seen is waited for before it counts as rolled back.
    pub gap_grace: Duration,
    /// Where a first start begins.
    pub start: Start,
    /// Rows read per query.
    pub batch: u32,
    /// The zone OMERO's `event.time` (a timestamp without zone) is in; the database's own when absent.
    pub timezone: Option<String>,
}

/// Where an `eventlog` cursor begins on its first start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Start {
    /// At the current end: history is not mailed.
    #[default]
    End,
    /// At the first row: every past event is mailed again.
    Beginning,
}

/// `kind: omero-log` (Blitz-0.log).
#[derive(Clone, Debug, PartialEq)]
pub struct LogConfig {
    pub path: PathBuf,
    /// The zone the log's timestamps (local time, no zone) are in; UTC when absent.
    pub timezone: Option<String>,
    /// The `server` named in up/down events.
    pub server: String,
    /// How often the file is looked at.
    pub poll: Duration,
}

/// `kind: omero-probe`.
#[derive(Clone, Debug, PartialEq)]
pub struct ProbeConfig {
    pub host: String,
    pub ports: Vec<u16>,
    pub interval: Duration,
    /// Failed rounds in a row before the server counts as down (and answered rounds before it is up again).
    pub failures: u32,
    pub server: String,
}

/// `kind: omero-web-log` (OMEROweb.log).
#[derive(Clone, Debug, PartialEq)]
pub struct WebLogConfig {
    pub path: PathBuf,
    pub timezone: Option<String>,
    pub server: String,
    pub poll: Duration,
}

impl SourceConfig {
    /// The name the source goes by in `herald sources`, logs, metrics and the store.
    pub fn name(&self) -> String {
        match self {
            SourceConfig::Eventlog(_) => "omero-eventlog".to_owned(),
            SourceConfig::Log(log) => format!("omero-log:{}", log.path.display()),
            SourceConfig::Probe(probe) => format!("omero-probe:{}", probe.host),
            SourceConfig::WebLog(log) => format!("omero-web-log:{}", log.path.display()),
        }
    }
}

/// The `directory` section as written.
#[derive(Default, Deserialize)]
#[serde(try_from = "DirectoryFields")]
pub(super) struct RawDirectory {
    pub(super) path: Option<PathValue>,
    source: DirectorySourceFields,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct DirectoryFields {
    source: Option<DirectoryKind>,
    path: Option<PathValue>,
    url: Option<DbUrl>,
    password_env: Option<EnvName>,
    password_file: Option<PathValue>,
    refresh: Option<Interval>,
}

#[derive(Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
enum DirectoryKind {
    #[default]
    File,
    OmeroDb,
}

#[derive(Default)]
struct DirectorySourceFields {
    db: Option<(DbUrl, Option<RawPassword>)>,
    refresh: Option<Duration>,
}

/// Where a password is, before paths are resolved.
enum RawPassword {
    File(PathBuf),
    Env(String),
}

impl TryFrom<DirectoryFields> for RawDirectory {
    type Error = String;

    fn try_from(d: DirectoryFields) -> Result<RawDirectory, String> {
        let kind = d.source.unwrap_or_default();
        let password = password(d.password_file, d.password_env)?;
        let db = match (kind, d.url) {
            (DirectoryKind::File, None) if password.is_none() && d.refresh.is_none() => None,
            (DirectoryKind::File, _) => {
                return Err("url, password_env, password_file and refresh are for \
                            `source: omero-db`; add it, or remove them to read `path`"
                    .into());
            }
            (DirectoryKind::OmeroDb, None) => {
                return Err("`source: omero-db` needs `url`, e.g. \
                            postgresql://herald@127.0.0.1:5432/omero"
                    .into());
            }
            (DirectoryKind::OmeroDb, Some(url)) => Some((url, password)),
        };
        Ok(RawDirectory {
            path: d.path,
            source: DirectorySourceFields {
                db,
                refresh: d.refresh.map(|r| r.0),
            },
        })
    }
}

impl RawDirectory {
    pub(super) fn source(self, base: &Path) -> DirectorySource {
        match self.source.db {
            None => DirectorySource::File,
            Some((url, password)) => DirectorySource::OmeroDb {
                db: connection(url, password, base),
                refresh: self.source.refresh.unwrap_or(DEFAULT_REFRESH),
            },
        }
    }
}

fn password(file: Option<PathValue>, env: Option<EnvName>) -> Result<Option<RawPassword>, String> {
    match (file, env) {
        (Some(_), Some(_)) => Err("both password_file and password_env are set; keep one".into()),
        (Some(file), None) => Ok(Some(RawPassword::File(file.0))),
        (None, Some(env)) => Ok(Some(RawPassword::Env(env.0))),
        (None, None) => Ok(None),
    }
}

fn connection(url: DbUrl, password: Option<RawPassword>, base: &Path) -> DbConnection {
    DbConnection {
        url: url.0,
        password: password.map(|p| match p {
            RawPassword::File(file) => PasswordSource::File(base.join(file)),
            RawPassword::Env(env) => PasswordSource::Env(env),
        }),
    }
}

/// One `sources` entry as written, by `kind`.
#[derive(Deserialize)]
#[serde(tag = "kind")]
pub(super) enum RawSource {
    #[serde(rename = "omero-eventlog")]
    Eventlog(RawEventlog),
    #[serde(rename = "omero-log")]
    Log(RawLog),
    #[serde(rename = "omero-probe")]
    Probe(RawProbe),
    #[serde(rename = "omero-web-log")]
    WebLog(RawLog),
}

#[derive(Deserialize)]
#[serde(try_from = "EventlogFields")]
pub(super) struct RawEventlog {
    url: DbUrl,
    password: Option<RawPassword>,
    poll: Option<Interval>,
    gap_grace: Option<Interval>,
    start: Option<Start>,
    batch: Option<Batch>,
    timezone: Option<ZoneName>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventlogFields {
    url: DbUrl,
    password_env: Option<EnvName>,
    password_file: Option<PathValue>,
    poll: Option<Interval>,
    gap_grace: Option<Interval>,
    start: Option<Start>,
    batch: Option<Batch>,
    timezone: Option<ZoneName>,
}

impl TryFrom<EventlogFields> for RawEventlog {
    type Error = String;

    fn try_from(e: EventlogFields) -> Result<RawEventlog, String> {
        Ok(RawEventlog {
            password: password(e.password_file, e.password_env)?,
            url: e.url,
            poll: e.poll,
            gap_grace: e.gap_grace,
            start: e.start,
            batch: e.batch,
            timezone: e.timezone,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    path: PathValue,
    timezone: Option<ZoneName>,
    server: Option<EnvName>,
    poll: Option<Interval>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProbe {
    host: EnvName,
    ports: Option<Ports>,
    interval: Option<Interval>,
    failures: Option<Batch>,
    server: Option<EnvName>,
}

impl RawSource {
    /// Apply defaults; paths resolve against `base`.
    pub(super) fn resolve(self, base: &Path) -> SourceConfig {
        match self {
            RawSource::Eventlog(e) => SourceConfig::Eventlog(EventlogConfig {
                db: connection(e.url, e.password, base),
                poll: e.poll.map_or(DEFAULT_POLL, |p| p.0),
                gap_grace: e.gap_grace.map_or(DEFAULT_GAP_GRACE, |g| g.0),
                start: e.start.unwrap_or_default(),
                batch: e.batch.map_or(DEFAULT_BATCH, |b| b.0),
                timezone: e.timezone.map(|z| z.0),
            }),
            RawSource::Log(log) => SourceConfig::Log(LogConfig {
                path: base.join(log.path.0),
                timezone: log.timezone.map(|z| z.0),
                server: log.server.map_or_else(|| "omero".to_owned(), |s| s.0),
                poll: log.poll.map_or(Duration::from_secs(1), |p| p.0),
            }),
            RawSource::WebLog(log) => SourceConfig::WebLog(WebLogConfig {
                path: base.join(log.path.0),
                timezone: log.timezone.map(|z| z.0),
                server: log.server.map_or_else(|| "omero".to_owned(), |s| s.0),
                poll: log.poll.map_or(Duration::from_secs(1), |p| p.0),
            }),
            RawSource::Probe(p) => SourceConfig::Probe(ProbeConfig {
                server: p.server.map_or_else(|| p.host.0.clone(), |s| s.0),
                host: p.host.0,
                ports: p.ports.map_or_else(|| vec![4064, 4063], |p| p.0),
                interval: p.interval.map_or(Duration::from_secs(10), |i| i.0),
                failures: p.failures.map_or(3, |f| f.0),
            }),
        }
    }
}

/// A non-empty list of ports from 1 to 65535.
struct Ports(Vec<u16>);

impl<'de> Deserialize<'de> for Ports {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let ports = Vec::<u16>::deserialize(d)?;
        if ports.is_empty() || ports.contains(&0) {
            return Err(serde::de::Error::custom(
                "`ports` needs at least one port from 1 to 65535, e.g. [4064, 4063]",
            ));
        }
        Ok(Ports(ports))
    }
}

/// A PostgreSQL URL or key=value string without a password in it.
struct DbUrl(String);

impl<'de> Deserialize<'de> for DbUrl {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "a PostgreSQL URL without a password, e.g. \
                        postgresql://herald@127.0.0.1:5432/omero";
        check_text(d, expected, |text| {
            let parsed =
                tokio_postgres::Config::from_str(text.trim()).map_err(|e| e.to_string())?;
            if parsed.get_password().is_some() {
                return Err(
                    "the password must not be in the URL: put it in password_file \
                            or password_env"
                        .into(),
                );
            }
            Ok(DbUrl(text.trim().to_owned()))
        })
    }
}

/// A non-empty word: an environment variable name, a host or a server name.
struct EnvName(String);

impl<'de> Deserialize<'de> for EnvName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(d, "a non-empty name without spaces", |text| {
            let text = text.trim();
            if text.is_empty() || text.contains(char::is_whitespace) {
                rejected()
            } else {
                Ok(EnvName(text.to_owned()))
            }
        })
    }
}

/// An IANA zone name such as Europe/London (checked against the system's zone files when used).
struct ZoneName(String);

impl<'de> Deserialize<'de> for ZoneName {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_text(
            d,
            "an IANA time zone such as Europe/London or UTC",
            |text| {
                let text = text.trim();
                let valid = !text.is_empty()
                    && !text.starts_with('/')
                    && !text.split('/').any(|part| part.is_empty() || part == "..")
                    && text
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "/_+-".contains(c));
                if valid {
                    Ok(ZoneName(text.to_owned()))
                } else {
                    rejected()
                }
            },
        )
    }
}

/// A whole number from 1 to 1,000,000.
struct Batch(u32);

impl<'de> Deserialize<'de> for Batch {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a whole number from 1 to 1000000", |s| match s {
            Scalar::Int(n) if (1..=1_000_000).contains(&n) => Ok(Batch(n as u32)),
            _ => rejected(),
        })
    }
}

/// The fix hint for a key of `sources` or of `directory` with `source: omero-db`.
pub(super) fn hint(key: &str) -> Option<String> {
    let hint = match key {
        "sources" => {
            "each source is a map with `kind` and that kind's keys: omero-eventlog (url, password_env|password_file, \
             poll, gap_grace, start, batch, timezone), omero-log and omero-web-log (path, timezone, server, poll), \
             omero-probe (host, ports, interval, failures, server)"
        }
        "kind" => "write one of omero-eventlog, omero-log, omero-probe, omero-web-log",
        "source" => "write `file` (read directory.path) or `omero-db` (read OMERO's database)",
        "url" => {
            "write a PostgreSQL URL without the password, e.g. postgresql://herald@127.0.0.1:5432/omero"
        }
        "refresh" | "poll" | "gap_grace" | "interval" => {
            "write a duration with a unit, above 0 and at most 60d, e.g. 2s or 5m"
        }
        "start" => "write `end` (the default: history is not mailed) or `beginning`",
        "batch" | "failures" => "write a whole number from 1 to 1000000",
        "timezone" => "write an IANA time zone, e.g. Europe/London",
        "ports" => "write a list of ports, e.g. [4064, 4063]",
        "server" => "write the server's name as mails should show it, e.g. omero.example.org",
        _ => return None,
    };
    Some(hint.to_owned())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::{Config, expect_invalid};

    fn load(text: &str) -> Result<Config, crate::config::ConfigError> {
        Config::from_str(text, Path::new("etc/herald.yaml"), None)
    }

    #[test]
    fn the_issue_config_shape_loads_with_its_defaults() {
        let config = load(
            "directory:\n  source: omero-db\n  url: postgresql://herald@127.0.0.1:5432/omero\n  \
             password_env: HERALD_OMERO_DB_PASSWORD\n  refresh: 5m\n\
             sources:\n  - {kind: omero-eventlog, url: postgresql://herald@127.0.0.1:5432/omero, \
             password_env: HERALD_OMERO_DB_PASSWORD, poll: 2s, gap_grace: 5m}\n  \
             - {kind: omero-log, path: /var/log/Blitz-0.log, timezone: Europe/London}\n  \
             - {kind: omero-probe, host: 127.0.0.1, ports: [4064, 4063], interval: 10s, failures: 3}\n  \
             - {kind: omero-web-log, path: OMEROweb.log}\n",
        )
        .unwrap();
        let DirectorySource::OmeroDb { db, refresh } = &config.directory.source else {
            panic!("{:?}", config.directory.source)
        };
        assert_eq!(*refresh, Duration::from_secs(300));
        assert_eq!(
            db.password,
            Some(PasswordSource::Env("HERALD_OMERO_DB_PASSWORD".into()))
        );
        assert_eq!(config.sources.len(), 4);
        let SourceConfig::Eventlog(eventlog) = &config.sources[0] else {
            panic!()
        };
        assert_eq!(
            (eventlog.poll, eventlog.start, eventlog.batch),
            (Duration::from_secs(2), Start::End, 1000)
        );
        let SourceConfig::WebLog(web) = &config.sources[3] else {
            panic!()
        };
        assert_eq!(web.path, Path::new("etc/OMEROweb.log"));
    }

    #[test]
    fn bad_connector_settings_name_the_key_and_line_with_a_fix() {
        let err = expect_invalid(load("directory:\n  source: omero-db\n"));
        assert!(err.message.contains("needs `url`"), "{err}");
        assert_eq!(
            err.location.map(|l| l.line),
            Some(1),
            "the `directory` section"
        );
        let err = expect_invalid(load(
            "sources:\n  - {kind: omero-eventlog, url: \"postgresql://herald:pw@db/omero\"}\n",
        ));
        assert!(
            err.message.contains("password must not be in the URL"),
            "{err}"
        );
        assert!(err.to_string().contains("herald.yaml:2"), "{err}");
        let err = expect_invalid(load(
            "sources:\n  - {kind: omero-probe, host: h, ports: []}\n",
        ));
        assert!(err.to_string().contains("ports"), "{err}");
        let err = expect_invalid(load("sources:\n  - {kind: omero-logs, path: x}\n"));
        assert!(err.message.contains("`omero-eventlog`"), "{err}");
    }
}
