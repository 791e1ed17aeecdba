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
            "recursion" => Ok(vec![mail(&format!("depth {}", descend(0, 1)))]),
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
