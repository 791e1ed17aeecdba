//! Process metrics (Prometheus text, every series `herald_*`): a leaf every layer may count into.

use std::sync::OnceLock;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

/// Every series this process keeps.
struct Metrics {
    registry: Registry,
    received: Family<Labels, Counter>,
    refused: Counter,
    commit_batch: Histogram,
    evaluated: Counter,
    rule_runs: Family<Labels, Counter>,
    deliveries: Family<Labels, Counter>,
    outbox: Family<Labels, Gauge>,
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
            deliveries: Family::default(),
            outbox: Family::default(),
            registry: Registry::default(),
        };
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
            "deliveries",
            "Delivery attempts recorded, by outcome",
            m.deliveries.clone(),
        );
        registry.register(
            "outbox_rows",
            "Outbox rows by state, as of the last scrape",
            m.outbox.clone(),
        );
        Metrics { registry, ..m }
    }
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

/// One ingest request refused for bad input.
pub fn request_refused() {
    metrics().refused.inc();
}

/// One ingest commit of `events` events.
pub fn commit_batch(events: usize) {
    metrics().commit_batch.observe(events as f64);
}

/// One event evaluated, and how each rule run on it ended.
pub fn evaluated<'a>(rules: impl IntoIterator<Item = (&'a str, bool)>) {
    let m = metrics();
    m.evaluated.inc();
    for (rule, ok) in rules {
        let result = if ok { "ok" } else { "failed" };
        m.rule_runs
            .get_or_create(&vec![
                ("rule", rule.to_owned()),
                ("result", result.to_owned()),
            ])
            .inc();
    }
}

/// One delivery attempt recorded with this outcome (sent, transient, …).
pub fn delivery(outcome: &str) {
    metrics()
        .deliveries
        .get_or_create(&vec![("outcome", outcome.to_owned())])
        .inc();
}

/// The outbox's row counts by state, as read from the store.
pub fn outbox_rows(counts: &[(String, i64)]) {
    let m = metrics();
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
