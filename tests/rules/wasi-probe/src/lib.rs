//! Test fixture: a rule that tries every WASI capability and mails a report of what it saw.
//!
//! Each line of the body is `name: value`. Access attempts read `denied (<error>)` or
//! `OPEN (<what it got>)`; clocks and random read as numbers.

use std::collections::hash_map::RandomState;
use std::fmt::Debug;
use std::hash::BuildHasher;
use std::io::Read;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use herald_sdk::{Event, Message, Rule, export_rule};

/// `wasi:random/random`, which std does not expose, bound directly.
mod wasi_random {
    herald_sdk::wit_bindgen::generate!({
        inline: "
            package herald-test:probe;
            package wasi:random@0.2.0 {
                interface random {
                    get-random-bytes: func(len: u64) -> list<u8>;
                    get-random-u64: func() -> u64;
                }
            }
            world probe {
                import wasi:random/random@0.2.0;
            }
        ",
        world: "probe",
        generate_all,
        runtime_path: "herald_sdk::wit_bindgen::rt",
    });
}

pub struct Probe;

impl Rule for Probe {
    fn handle(event: Event) -> Result<Vec<Message>, String> {
        let report = report().join("\n") + "\n";
        Ok(vec![
            Message::new(format!("wasi probe {}", event.id), report).to("probe@example.org"),
        ])
    }
}

fn report() -> Vec<String> {
    let mut lines = Vec::new();
    let mut line = |name: &str, value: String| lines.push(format!("{name}: {value}"));
    line(
        "read-dir /",
        access(std::fs::read_dir("/").map(|d| d.count())),
    );
    line(
        "read-dir .",
        access(std::fs::read_dir(".").map(|d| d.count())),
    );
    line(
        "open /etc/passwd",
        access(std::fs::read("/etc/passwd").map(|b| b.len())),
    );
    line(
        "write /tmp/probe",
        access(std::fs::write("/tmp/herald-probe", b"x")),
    );
    line("env vars", count(std::env::vars().count()));
    line("args", count(std::env::args().count()));
    line("stdin", access(read_stdin()));
    line(
        "tcp connect 127.0.0.1:25",
        access(std::net::TcpStream::connect("127.0.0.1:25")),
    );
    line(
        "tcp listen",
        access(std::net::TcpListener::bind("127.0.0.1:0")),
    );
    line("udp bind", access(std::net::UdpSocket::bind("0.0.0.0:0")));
    line("dns localhost", access(resolve("localhost:25")));
    line("wall clock ms", wall_clock_ms());
    line("monotonic elapsed ns", monotonic_elapsed().to_string());
    line(
        "insecure seed hash",
        RandomState::new().hash_one("probe").to_string(),
    );
    line(
        "random u64",
        wasi_random::wasi::random::random::get_random_u64().to_string(),
    );
    line(
        "random bytes",
        hex(&wasi_random::wasi::random::random::get_random_bytes(8)),
    );
    lines
}

fn access<T: Debug, E: std::fmt::Display>(result: Result<T, E>) -> String {
    match result {
        Ok(value) => format!("OPEN ({value:?})"),
        Err(err) => format!("denied ({err})"),
    }
}

/// Environment entries must be absent: a count above zero is access.
fn count(n: usize) -> String {
    if n == 0 {
        "none".to_owned()
    } else {
        format!("OPEN ({n})")
    }
}

fn read_stdin() -> std::io::Result<usize> {
    let mut buf = Vec::new();
    match std::io::stdin().read_to_end(&mut buf)? {
        0 => Err(std::io::Error::other("empty")),
        n => Ok(n),
    }
}

fn resolve(host: &str) -> std::io::Result<Vec<std::net::SocketAddr>> {
    use std::net::ToSocketAddrs;
    Ok(host.to_socket_addrs()?.collect())
}

fn wall_clock_ms() -> String {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(since) => since.as_millis().to_string(),
        Err(err) => format!("before the epoch ({err})"),
    }
}

fn monotonic_elapsed() -> u128 {
    let start = Instant::now();
    let mut spin = 0u64;
    for i in 0..10_000u64 {
        spin = std::hint::black_box(spin.wrapping_add(i));
    }
    start.elapsed().as_nanos()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

export_rule!(Probe);
