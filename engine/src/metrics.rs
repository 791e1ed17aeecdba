//! Process metrics (Prometheus text, every series `herald_*`): a leaf every layer may count into.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// A histogram family needs a constructor that can be named in a type.
type Buckets = fn() -> Histogram;

/// Every series this process keeps.
struct Metrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    refused: Counter,
    commit_batch: Histogram,
    evaluated: Counter,
    rule_runs: Family<Labels, Counter>,
    rule_seconds: Family<Labels, Histogram, Buckets>,
    rule_fuel: Family<Labels, Histogram, Buckets>,
    deliveries: Family<Labels, Counter>,
    outbox: Family<Labels, Gauge>,
    smtp: Family<Labels, Counter>,
    wal_syncs: Family<Labels, Counter>,
    sources: SourceSeries,
}

/// The OMERO connector's series: per source, and the directory read from OMERO's database.
#[derive(Default)]
struct SourceSeries {
    emitted: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    lag: Family<Labels, Gauge>,
    directory_stale: Gauge,
    directory_age: Gauge,
}

fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("herald");
        let m = Metrics {
            received: Family::default(),
            refused: Counter::default(),
            commit_batch: Histogram::new([
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 1024.0,
            ]),
            evaluated: Counter::default(),
            rule_runs: Family::default(),
            rule_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.000_01, 4.0, 10))
            }),
            rule_fuel: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(1000.0, 4.0, 10))
            }),
            deliveries: Family::default(),
            outbox: Family::default(),
            smtp: Family::default(),
            wal_syncs: Family::default(),
            sources: SourceSeries::default(),
            registry: Registry::default(),
        };
        registry.register(
            "smtp_listener",
            "What the SMTP listener did: messages accepted, too big, not stored (451); \
             sessions refused (not allowed, busy) or cut off (timeout)",
            m.smtp.clone(),
        );
        registry.register(
            "events_received",
            "Events accepted by ingest, by type and whether they were new or duplicates",
            m.received.clone(),
        );
        registry.register(
            "requests_refused",
            "Ingest requests refused for bad input (nothing stored)",
            m.refused.clone(),
        );
        registry.register(
            "ingest_commit_batch_events",
            "Events per ingest commit (group commit: many requests share one fsync)",
            m.commit_batch.clone(),
        );
        registry.register(
            "events_evaluated",
            "Events evaluated and committed",
            m.evaluated.clone(),
        );
        registry.register(
            "rule_runs",
            "Rule invocations by rule and result (ok or failed)",
            m.rule_runs.clone(),
        );
        registry.register(
            "rule_duration_seconds",
            "Wall time of each rule invocation, by rule",
            m.rule_seconds.clone(),
        );
        registry.register(
            "rule_fuel_used",
            "Fuel (roughly wasm instructions) each rule invocation used, by rule",
            m.rule_fuel.clone(),
        );
        registry.register(
            "deliveries",
            "Delivery attempts recorded, by outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "outbox_rows",
            "Outbox rows by state, as of the last scrape",
            m.outbox.clone(),
        );
        registry.register(
            "store_wal_syncs",
            "Syncs of the store's WAL by the flusher (written commits: evaluations, delivery runs), \
             by outcome (ok, failed: those commits would not survive a power loss)",
            m.wal_syncs.clone(),
        );
        m.sources.register(&mut registry);
        Metrics { registry, ..m }
    }
}

impl SourceSeries {
    fn register(&self, registry: &mut Registry) {
        registry.register(
            "source_events",
            "Events an OMERO source journaled, by source",
            self.emitted.clone(),
        );
        registry.register(
            "source_errors",
            "Failed reads of an OMERO source (database, log file, probe), by source",
            self.errors.clone(),
        );
        registry.register(
            "source_lag",
            "How far a source is behind: eventlog rows not yet read, log bytes not yet read",
            self.lag.clone(),
        );
        registry.register(
            "directory_stale",
            "1 while the directory is a stored snapshot because OMERO's database cannot be read",
            self.directory_stale.clone(),
        );
        registry.register(
            "directory_snapshot_age_seconds",
            "Age of the directory snapshot in force (directory.source: omero-db)",
            self.directory_age.clone(),
        );
    }
}

/// `source` journaled `events` events.
pub fn source_emitted(source: &str, events: usize) {
    metrics()
        .sources
        .emitted
        .get_or_create(&vec![("source", source.to_owned())])
        .inc_by(events as u64);
}

/// `source` failed a read.
pub fn source_error(source: &str) {
    metrics()
        .sources
        .errors
        .get_or_create(&vec![("source", source.to_owned())])
        .inc();
}

/// How far `source` is behind (rows or bytes).
pub fn source_lag(source: &str, lag: i64) {
    metrics()
        .sources
        .lag
        .get_or_create(&vec![("source", source.to_owned())])
        .set(lag);
}

/// Whether the directory in force is a stale snapshot, and its age in seconds.
pub fn directory_snapshot(stale: bool, age_seconds: i64) {
    let series = &metrics().sources;
    series.directory_stale.set(i64::from(stale));
    series.directory_age.set(age_seconds);
}

/// One event journaled by ingest.
pub fn event_received(kind: &str, duplicate: bool) {
    let status = if duplicate { "duplicate" } else { "new" };
    metrics()
        .received
        .get_or_create(&vec![
            ("type", kind.to_owned()),
            ("status", status.to_owned()),
        ])
        .inc();
}

/// The flusher synced the WAL (`ok`) or could not (`failed`).
pub fn wal_sync(ok: bool) {
    let outcome = if ok { "ok" } else { "failed" };
    metrics()
        .wal_syncs
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// One ingest request refused for bad input.
pub fn request_refused() {
    metrics().refused.inc();
}

/// One ingest commit of `events` events.
pub fn commit_batch(events: usize) {
    metrics().commit_batch.observe(events as f64);
}

/// How one rule invocation ended.
pub struct RuleRun<'a> {
    pub rule: &'a str,
    pub ok: bool,
    pub seconds: f64,
    pub fuel: u64,
}

/// One event evaluated, and each rule run on it.
pub fn evaluated<'a>(runs: impl IntoIterator<Item = RuleRun<'a>>) {
    let m = metrics();
    m.evaluated.inc();
    for run in runs {
        let result = if run.ok { "ok" } else { "failed" };
        let rule = vec![("rule", run.rule.to_owned())];
        m.rule_runs
            .get_or_create(&vec![
                ("rule", run.rule.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
        m.rule_seconds.get_or_create(&rule).observe(run.seconds);
        m.rule_fuel.get_or_create(&rule).observe(run.fuel as f64);
    }
}

/// One delivery attempt recorded with this outcome (sent, transient, …).
pub fn delivery(outcome: &str) {
    metrics()
        .deliveries
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// One outcome of the SMTP listener (`accepted`, `too_big`, `not_stored`, `not_allowed`, `busy`,
/// `timeout`).
pub fn smtp(outcome: &'static str) {
    metrics()
        .smtp
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// The outbox's row counts by state, as read from the store (states absent from it are 0).
pub fn outbox_rows(counts: &[(String, i64)]) {
    let m = metrics();
    m.outbox.clear();
    for (state, count) in counts {
        m.outbox
            .get_or_create(&vec![("state", state.clone())])
            .set(*count);
    }
}

/// Everything in the Prometheus text format.
pub fn render() -> String {
    let mut text = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut text, &metrics().registry);
    text
}
