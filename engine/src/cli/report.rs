//! Human and JSON reports of what the rules did with each event.

use std::io::Write;

use serde_json::json;

use crate::evaluate::RuleOutcome;
use crate::event::Event;

/// Totals over a run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Tally {
    pub events: usize,
    pub messages: usize,
    pub failed: usize,
    pub unmatched: usize,
    pub skipped: usize,
    /// Invocations not run because the rule is quarantined.
    pub quarantined: usize,
}

impl Tally {
    /// Count one event: its outcomes and the quarantined rules that were not run for it.
    pub fn add(&mut self, outcomes: &[RuleOutcome], quarantined: &[String]) {
        self.events += 1;
        self.quarantined += quarantined.len();
        if outcomes.is_empty() && quarantined.is_empty() {
            self.unmatched += 1;
        }
        for outcome in outcomes {
            match &outcome.result {
                Ok(resolved) => {
                    self.messages += resolved.mails.len();
                    self.skipped += resolved.skipped.len();
                }
                Err(_) => self.failed += 1,
            }
        }
    }

    pub fn line(&self) -> String {
        let mut line = format!(
            "{} events: {} messages, {} failed invocations, {} events matched by no rule, {} recipients skipped",
            self.events, self.messages, self.failed, self.unmatched, self.skipped
        );
        if self.quarantined > 0 {
            line.push_str(&format!(
                ", {} invocations skipped (rule quarantined)",
                self.quarantined
            ));
        }
        line
    }
}

/// How much of each message to print.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Detail {
    /// Recipient and subject.
    Brief,
    /// Also the headers and the body.
    Full,
}

/// What the rules did with one event: the outcomes of the rules that ran, and the
/// subscribed rules that did not run because they are quarantined.
#[derive(Clone, Copy)]
pub struct EventReport<'a> {
    pub event: &'a Event,
    pub outcomes: &'a [RuleOutcome],
    pub quarantined: &'a [String],
}

/// Print one event's outcomes for a person.
pub fn human(out: &mut impl Write, report: EventReport<'_>, detail: Detail) -> std::io::Result<()> {
    let event = report.event;
    writeln!(
        out,
        "{} {} ({})",
        printable(&event.id),
        event.kind,
        event.time_rfc3339()
    )?;
    if report.outcomes.is_empty() && report.quarantined.is_empty() {
        writeln!(out, "  matched by no rule")?;
    }
    for rule in report.quarantined {
        writeln!(
            out,
            "  {rule}: SKIPPED: the rule is quarantined; release it with `herald rules release {rule}`"
        )?;
    }
    for outcome in report.outcomes {
        rule_human(out, outcome, detail)?;
    }
    Ok(())
}

fn rule_human(out: &mut impl Write, outcome: &RuleOutcome, detail: Detail) -> std::io::Result<()> {
    match &outcome.result {
        Ok(resolved) => {
            writeln!(
                out,
                "  {}: {} message(s)",
                outcome.rule,
                resolved.mails.len()
            )?;
            for mail in &resolved.mails {
                let (recipient, subject) = (printable(&mail.recipient), printable(&mail.subject));
                writeln!(out, "    -> {recipient}  {subject}")?;
                if detail == Detail::Full {
                    mail_body(out, mail)?;
                }
            }
            for skip in &resolved.skipped {
                let (recipient, reason) = (printable(&skip.recipient), printable(&skip.reason));
                writeln!(out, "    skipped {recipient}: {reason}")?;
            }
        }
        Err(failure) => {
            let failure = printable_lines(&failure.to_string());
            writeln!(out, "  {}: FAILED {failure}", outcome.rule)?
        }
    }
    for line in &outcome.logs {
        writeln!(out, "    log {}: {}", line.level, printable(&line.message))?;
    }
    Ok(())
}

fn mail_body(out: &mut impl Write, mail: &crate::mail::Mail) -> std::io::Result<()> {
    writeln!(out, "       To: {}", printable(&mail.to.join(", ")))?;
    if !mail.cc.is_empty() {
        writeln!(out, "       Cc: {}", printable(&mail.cc.join(", ")))?;
    }
    for (name, value) in &mail.headers {
        writeln!(out, "       {}: {}", printable(name), printable(value))?;
    }
    for line in mail.text.lines() {
        writeln!(out, "       | {}", printable(line))?;
    }
    if mail.html.is_some() {
        writeln!(out, "       (+ an HTML part)")?;
    }
    Ok(())
}

/// One JSON object per event, for scripts. A quarantined rule is listed with
/// `"ok": false, "reason": "quarantined"`.
pub fn json(report: EventReport<'_>) -> serde_json::Value {
    let event = report.event;
    let quarantined = report.quarantined.iter().map(|rule| {
        json!({"rule": rule, "ok": false, "reason": "quarantined",
               "error": format!("the rule is quarantined; release it with `herald rules release {rule}`")})
    });
    let rules: Vec<_> = quarantined
        .chain(report.outcomes.iter().map(rule_json))
        .collect();
    json!({"id": event.id, "source": event.source, "type": event.kind, "time": event.time_rfc3339(), "rules": rules})
}

fn rule_json(outcome: &RuleOutcome) -> serde_json::Value {
    let logs: Vec<_> = outcome
        .logs
        .iter()
        .map(|l| json!({"level": l.level, "message": l.message}))
        .collect();
    let mut value = match &outcome.result {
        Ok(resolved) => json!({
            "rule": outcome.rule,
            "ok": true,
            "mails": resolved.mails,
            "skipped": resolved.skipped.iter().map(|s| json!({"recipient": s.recipient, "reason": s.reason})).collect::<Vec<_>>(),
        }),
        Err(failure) => {
            json!({"rule": outcome.rule, "ok": false, "reason": failure.code(), "error": failure.to_string()})
        }
    };
    value["logs"] = json!(logs);
    value["fuel"] = json!(outcome.fuel_used);
    value
}

/// Print one event's outcomes as a JSON line or for a person.
pub fn print(
    out: &mut impl Write,
    report: EventReport<'_>,
    json: bool,
    detail: Detail,
) -> std::io::Result<()> {
    if json {
        writeln!(out, "{}", self::json(report))
    } else {
        human(out, report, detail)
    }
}

/// Print `value` as pretty JSON, for `--json`.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A plain table: a header row and aligned columns, no borders.
pub fn table(header: &[&str], rows: impl IntoIterator<Item = Vec<String>>) -> comfy_table::Table {
    let mut table = comfy_table::Table::new();
    table
        .load_style(comfy_table::presets::NOTHING)
        .set_header(header.to_vec());
    for row in rows {
        table.add_row(row);
    }
    table
}

/// Text from event data or another process as the terminal should see it: control characters escaped
/// (`\n`, `\u{1b}`), so no stored value can move the cursor or change colours.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            c if c.is_control() => c.escape_default().to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// [`printable`] for text of several lines (a traceback, a case's diff): each line escaped, the
/// line breaks kept.
pub fn printable_lines(text: &str) -> String {
    text.lines().map(printable).collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evaluate::host::LogLine;
    use crate::evaluate::{Failure, RuleOutcome};

    #[test]
    fn event_and_rule_text_reaches_the_terminal_escaped_with_its_line_breaks() {
        let event = crate::event::from_str(
            r#"{"id":"e\u001b[2J1","source":"t","type":"test.x","time":"2026-11-23T09:00:00Z","data":{}}"#,
            chrono::Utc::now(),
        )
        .unwrap();
        let outcome = RuleOutcome {
            rule: "r".into(),
            result: Err(Failure::Panic {
                message: "boom\u{1b}]0;title\u{7}\nTraceback (most recent call last):".into(),
            }),
            logs: vec![LogLine {
                level: "info",
                message: "\u{1b}[31mred".into(),
            }],
            kv_writes: Vec::new(),
            fuel_used: 0,
            elapsed: std::time::Duration::ZERO,
        };
        let report = EventReport {
            event: &event,
            outcomes: std::slice::from_ref(&outcome),
            quarantined: &[],
        };
        let mut out = Vec::new();
        human(&mut out, report, Detail::Full).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            !text.contains('\u{1b}') && !text.contains('\u{7}'),
            "{text:?}"
        );
        assert!(text.starts_with("e\\u{1b}[2J1 test.x"), "{text}");
        assert!(
            text.contains(
                "FAILED panic: boom\\u{1b}]0;title\\u{7}\nTraceback (most recent call last):"
            ),
            "{text}"
        );
        assert!(text.contains("log info: \\u{1b}[31mred"), "{text}");
    }
}
