//! Rule health: consecutive failures, quarantine after too many, and release.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use super::{Result, Store};
use crate::evaluate::RuleOutcome;

/// What the store knows of one rule's recent behaviour.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct RuleHealth {
    pub rule: String,
    pub consecutive_failures: i64,
    pub last_failure_at: Option<String>,
    pub last_reason: Option<String>,
    /// Set while the rule is quarantined (skipped).
    pub quarantined_at: Option<String>,
    /// Invocations skipped while quarantined.
    pub skipped: i64,
}

/// A rule that has just crossed the quarantine threshold.
#[derive(Clone, Debug, PartialEq)]
pub struct Quarantined {
    pub rule: String,
    pub failures: i64,
    pub reason: String,
}

impl Store {
    /// Every rule the store has seen fail or be skipped.
    pub fn rule_health(&self) -> Result<Vec<RuleHealth>> {
        let mut stmt = self.conn.prepare(
            "SELECT rule, consecutive_failures, last_failure_at, last_reason, quarantined_at, skipped
             FROM rule_health ORDER BY rule",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(RuleHealth {
                rule: r.get(0)?,
                consecutive_failures: r.get(1)?,
                last_failure_at: r.get(2)?,
                last_reason: r.get(3)?,
                quarantined_at: r.get(4)?,
                skipped: r.get(5)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// The rules that are quarantined now.
    pub fn quarantined(&self) -> Result<HashSet<String>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT rule FROM rule_health WHERE quarantined_at IS NOT NULL")?;
        let rows = stmt.query_map([], |r| r.get(0))?;
        rows.collect::<rusqlite::Result<_>>().map_err(Into::into)
    }

    /// Count one invocation skipped because the rule is quarantined.
    pub fn count_skipped(&mut self, rule: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE rule_health SET skipped = skipped + 1 WHERE rule = ?1",
            [rule],
        )?;
        Ok(())
    }

    /// Lift a quarantine and forget the failure streak. False when the rule was not quarantined.
    pub fn release_rule(&mut self, rule: &str) -> Result<bool> {
        let changed = self.conn.execute(
            "UPDATE rule_health SET quarantined_at = NULL, consecutive_failures = 0
             WHERE rule = ?1 AND quarantined_at IS NOT NULL",
            [rule],
        )?;
        Ok(changed == 1)
    }
}

/// Record each outcome's success or failure; return the rules that reach
/// `quarantine_after` consecutive failures now (0 never quarantines).
pub(super) fn record_outcomes(
    tx: &Transaction<'_>,
    outcomes: &[RuleOutcome],
    quarantine_after: u32,
    now: DateTime<Utc>,
) -> Result<Vec<Quarantined>> {
    let mut newly = Vec::new();
    for outcome in outcomes {
        match &outcome.result {
            Ok(_) => {
                tx.prepare_cached(
                    "UPDATE rule_health SET consecutive_failures = 0 WHERE rule = ?1",
                )?
                .execute([&outcome.rule])?;
            }
            Err(failure) => {
                let failures = record_failure(tx, &outcome.rule, &failure.to_string(), now)?;
                if quarantine_after > 0
                    && failures >= i64::from(quarantine_after)
                    && quarantine(tx, &outcome.rule, now)?
                {
                    newly.push(Quarantined {
                        rule: outcome.rule.clone(),
                        failures,
                        reason: failure.to_string(),
                    });
                }
            }
        }
    }
    Ok(newly)
}

fn record_failure(
    tx: &Transaction<'_>,
    rule: &str,
    reason: &str,
    now: DateTime<Utc>,
) -> Result<i64> {
    tx.prepare_cached("INSERT INTO rule_health (rule, consecutive_failures, last_failure_at, last_reason) VALUES (?1, 1, ?2, ?3)
         ON CONFLICT (rule) DO UPDATE SET consecutive_failures = consecutive_failures + 1,
             last_failure_at = excluded.last_failure_at, last_reason = excluded.last_reason
         RETURNING consecutive_failures")?.query_row(
        params![rule, now.to_rfc3339(), reason],
        |r| r.get(0),
    )
    .map_err(Into::into)
}

/// Quarantine `rule`; false when it already was.
fn quarantine(tx: &Transaction<'_>, rule: &str, now: DateTime<Utc>) -> Result<bool> {
    let changed = tx.prepare_cached("UPDATE rule_health SET quarantined_at = ?2 WHERE rule = ?1 AND quarantined_at IS NULL RETURNING 1")?.query_row(
            params![rule, now.to_rfc3339()],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    Ok(changed.is_some())
}
