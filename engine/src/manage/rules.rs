//! The configured rules with their health, as `herald rules` and `GET /v1/rules` show them.

use crate::config::Config;
use crate::store::{RuleHealth, Store};

/// One JSON object per configured rule: module, events, state and failure counts.
pub fn listing(config: &Config, store: &Store) -> anyhow::Result<Vec<serde_json::Value>> {
    let health = store.rule_health()?;
    Ok(config
        .rules
        .iter()
        .map(|rule| {
            let h = health.iter().find(|h| h.rule == rule.name).cloned().unwrap_or_default();
            serde_json::json!({
                "rule": rule.name, "module": rule.module.to_string(), "on": rule.on,
                "state": state(rule.enabled, &h), "consecutive_failures": h.consecutive_failures,
                "skipped": h.skipped, "last_failure_at": h.last_failure_at, "last_reason": h.last_reason,
            })
        })
        .collect())
}

fn state(enabled: bool, health: &RuleHealth) -> &'static str {
    match (enabled, health.quarantined_at.is_some()) {
        (false, _) => "disabled",
        (true, true) => "quarantined",
        (true, false) => "active",
    }
}
