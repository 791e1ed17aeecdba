//! Test fixture: a rule that misbehaves on purpose, its misdeed chosen by `config.misdeed`.
//!
//! loop | memory | recursion | panic | flood | header-injection | invalid-address | error | none

use std::hint::black_box;

use herald_sdk::{Event, Message, Recipient, Rule, config, export_rule, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Settings {
    misdeed: String,
}

pub struct Hostile;

impl Rule for Hostile {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let settings: Settings = config::get()?;
        log::info(&format!(
            "misbehaving ({}) on {}",
            settings.misdeed, event.id
        ));
        match settings.misdeed.as_str() {
            "loop" => spin(),
            "memory" => hoard(),
            "recursion" => Ok(vec![mail(&format!("depth {}", descend(black_box(0))))]),
            "panic" => panic!("hostile rule panicked on purpose"),
            "flood" => Ok(flood(100_000)),
            "header-injection" => Ok(vec![mail("Hello\r\nBcc: victim@example.org")]),
            "invalid-address" => Ok(vec![
                Message::new("hi", "body\n").to(Recipient::Address("not an address".into())),
            ]),
            "error" => Err("refusing on purpose".into()),
            _ => Ok(vec![mail("well behaved")]),
        }
    }
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

/// Recursion that lives on the wasm stack (locals only, no shadow-stack
/// arrays), so the engine's stack limit is what stops it.
fn descend(depth: u64) -> u64 {
    if black_box(depth) == u64::MAX {
        return 0;
    }
    descend(black_box(depth + 1)).wrapping_add(1)
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
