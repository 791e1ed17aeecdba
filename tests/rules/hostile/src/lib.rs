//! Test fixture: a rule that misbehaves on purpose, its misdeed chosen by `config.misdeed`.
//!
//! loop | memory | recursion | panic | flood | stderr-flood | log-flood | header-injection |
//! invalid-address | error | none
//!
//! Every invocation first writes `seen:<event id>` to its key-value store, so a test can check
//! that a failed invocation's writes are discarded. An event whose data says `"behave": true`
//! gets a well-behaved mail whatever the misdeed, saying whether `seen:<data.check>` is stored:
//! the same module and rule, run again after it misbehaved.

use std::hint::black_box;

use herald_sdk::{Event, Message, Recipient, Rule, config, export_rule, kv, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    misdeed: String,
}

pub struct Hostile;

impl Rule for Hostile {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let settings: Settings = config::get()?;
        kv::set(&format!("seen:{}", event.id), b"1", None);
        if event.data_json.contains(r#""behave":true"#) {
            return Ok(vec![behaved(&event)]);
        }
        log::info(&format!(
            "misbehaving ({}) on {}",
            settings.misdeed, event.id
        ));
        match settings.misdeed.as_str() {
            "loop" => spin(),
            "memory" => hoard(),
            "recursion" => Ok(vec![mail(&format!("depth {}", descend(0, 1)))]),
            "panic" => panic!("hostile rule panicked on purpose"),
            "flood" => Ok(flood(100_000)),
            "stderr-flood" => flood_stderr(),
            "log-flood" => Ok(flood_log()),
            "header-injection" => Ok(vec![mail("Hello\r\nBcc: victim@example.org")]),
            "invalid-address" => Ok(vec![
                Message::new("hi", "body\n").to(Recipient::Address("not an address".into())),
            ]),
            "error" => Err("refusing on purpose".into()),
            _ => Ok(vec![mail("well behaved")]),
        }
    }
}

/// A good mail that says whether the key `seen:<data.check>` is in the store.
fn behaved(event: &Event) -> Message {
    let check = event
        .data_json
        .split_once(r#""check":""#)
        .and_then(|(_, rest)| rest.split_once('"'))
        .map_or("", |(id, _)| id);
    let stored = kv::get(&format!("seen:{check}")).is_some();
    mail(&format!(
        "behaved on {}; seen:{check} stored: {stored}",
        event.id
    ))
}

/// Write to stderr until the host stops it: 1 KiB lines, far past any `limits.max_log`.
fn flood_stderr() -> Result<Vec<Message>, String> {
    let line = "x".repeat(1023);
    for _ in 0..(1 << 20) {
        eprintln!("{line}");
    }
    Ok(vec![mail("stderr never filled")])
}

/// 1000 log lines of 1000 bytes each, then a good mail.
fn flood_log() -> Vec<Message> {
    let line = "y".repeat(1000);
    for _ in 0..1000 {
        log::info(&line);
    }
    vec![mail("logged a lot")]
}

fn mail(subject: &str) -> Message {
    Message::new(subject, "body\n").to("someone@example.org")
}

fn spin() -> Result<Vec<Message>, String> {
    let mut n: u64 = 0;
    loop {
        n = black_box(n.wrapping_add(1));
    }
}

/// Reserve memory megabyte by megabyte without touching it: cheap in fuel,
/// so the memory limit, not the fuel budget, is what stops it.
fn hoard() -> Result<Vec<Message>, String> {
    let mut hoard: Vec<Vec<u8>> = Vec::new();
    loop {
        let mut block = Vec::with_capacity(1 << 20);
        block.push(1u8);
        hoard.push(black_box(block));
    }
}

/// Never equal to a depth in practice; read volatile so the recursion cannot be folded away.
static NEVER: u64 = u64::MAX;

/// Recursion that lives on the wasm stack only: no local has its address
/// taken, so nothing goes to the shadow stack in linear memory, and the
/// engine's stack limit is what stops it.
#[inline(never)]
fn descend(depth: u64, mix: u64) -> u64 {
    // SAFETY: a volatile read of an immutable static.
    if depth == unsafe { std::ptr::read_volatile(&NEVER) } {
        return mix;
    }
    descend(depth + 1, mix.rotate_left(3) ^ depth)
        .wrapping_mul(mix | 1)
        .wrapping_sub(depth)
}

fn flood(n: usize) -> Vec<Message> {
    (0..n)
        .map(|i| Message {
            to: vec![Recipient::UserId(i as i64)],
            ..Message::new("", "")
        })
        .collect()
}

export_rule!(Hostile);
