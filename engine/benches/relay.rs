//! The SMTP relay: smtp-source → `herald serve` (durable accept) → smtp-sink, beside the direct rate and the disk's bound.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "common/cpu.rs"]
#[allow(dead_code)] // each bench target compiles this file; not all use all of it
mod cpu;
#[path = "common/disk.rs"]
mod disk;
#[path = "common/postfix.rs"]
mod postfix;

use postfix::{Sink, tools_dir};

/// Messages per measurement.
const COUNT: usize = 2000;

fn main() {
    let tools = tools_dir();
    let sink = Sink::start(&tools);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    println!("smtp-source -d, {COUNT} messages per run, into 127.0.0.1");
    println!(
        "{:>8}  {:>16}  {:>11}  {:>17}  {:>16}  {:>22}  {:>6}  {:>8}",
        "sessions",
        "direct to sink/s",
        "disk bound/s",
        "herald accepted/s",
        "herald relayed/s",
        "accepted, no relay/s",
        "ratio",
        "of bound"
    );
    let mut cpu_lines = Vec::new();
    for sessions in [1, 8] {
        let (direct, direct_cpu) = sink.direct(&tools, sessions as usize, COUNT);
        let commits = disk::commits_per_second();
        let dir = tempfile::tempdir().unwrap();
        let herald = Herald::start(&root, dir.path(), Some(sink.port));
        let (sink_before, herald_before) = (sink.cpu(), herald.cpu());
        let start = Instant::now();
        let accepted_run = postfix::source_run(&tools, herald.smtp, sessions as usize, COUNT);
        let accepted = accepted_run.rate;
        herald.wait_sent(COUNT);
        let relayed = COUNT as f64 / start.elapsed().as_secs_f64();
        let relay_cpu = cpu::Split {
            source: accepted_run.cpu,
            herald: herald.cpu() - herald_before,
            sink: sink.cpu() - sink_before,
            wall: start.elapsed(),
        };
        cpu_lines.push((sessions, direct_cpu, relay_cpu));
        drop(herald);
        let dir = tempfile::tempdir().unwrap();
        let held = Herald::start(&root, dir.path(), None);
        let alone = postfix::source_rate(&tools, held.smtp, sessions as usize, COUNT);
        // The disk's best of two readings, one before and one after Herald's runs.
        let commits = commits.max(disk::commits_per_second());
        let bound = disk::bound(sessions as usize, commits, direct);
        println!(
            "{sessions:>8}  {direct:>16.0}  {bound:>11.0}  {accepted:>17.0}  {relayed:>16.0}  {alone:>22.0}  {:>5.0}%  {:>7.0}%",
            100.0 * accepted / direct,
            100.0 * accepted / bound
        );
    }
    print_cpu(&cpu_lines);
    println!(
        "ratio: herald's durable accept rate (relaying at the same time) against smtp-source \
         straight into smtp-sink; \"no relay\": mail.from empty, so nothing is sent meanwhile"
    );
    println!(
        "disk bound: what any accept that is durable before its 250 could reach if the commit were \
         its only cost: each message takes the direct exchange's time plus one commit, at best \
         shared by all sessions; commits/s measured in this run (the better of two readings) as \
         one-row SQLite commits (WAL, synchronous=FULL, like the store) on the same file system"
    );
}

/// Where the cores went: CPU per message of each process, directly and through Herald.
fn print_cpu(lines: &[(u32, cpu::Split, cpu::Split)]) {
    println!(
        "CPU per message, µs (source + herald + sink), and cores busy; through Herald until every \
         message was relayed"
    );
    for (sessions, direct, relay) in lines {
        println!(
            "{sessions:>8}  {}",
            cpu::Split::compare(direct, relay, COUNT)
        );
    }
}

/// `herald serve` with its SMTP listener, relaying into `sink`.
struct Herald {
    child: Child,
    smtp: u16,
    state: PathBuf,
}

impl Herald {
    /// With `sink`, relayed mail goes there; without, sending is off (`mail.from: ""`).
    fn start(root: &Path, dir: &Path, sink: Option<u16>) -> Herald {
        std::fs::write(dir.join("ingest.token"), "bench-token-0123456789abcdef").unwrap();
        let (http, smtp) = (free_port(), free_port());
        let mail = match sink {
            Some(sink) => format!(
                "{{from: herald@example.org, transport: smtp, smtp: {{host: 127.0.0.1, port: {sink}, max_connections: 8}}}}"
            ),
            None => "{from: \"\"}".to_owned(),
        };
        let config = format!(
            "state_dir: var\nmail: {mail}\n\
             directory: {{path: {}}}\nrules: []\n\
             http:\n  listen: 127.0.0.1:{http}\n  tokens:\n    \
             - {{name: bench, scope: ingest, token_file: ingest.token}}\n\
             smtp_listener:\n  listen: 127.0.0.1:{smtp}\n",
            root.join("etc/directory.yaml").display()
        );
        std::fs::write(dir.join("herald.yaml"), config).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .arg("--config")
            .arg(dir.join("herald.yaml"))
            .arg("serve")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start herald serve");
        let deadline = Instant::now() + Duration::from_secs(120);
        while TcpStream::connect(("127.0.0.1", smtp)).is_err() {
            assert!(Instant::now() < deadline, "the SMTP listener did not start");
            std::thread::sleep(Duration::from_millis(50));
        }
        Herald {
            child,
            smtp,
            state: dir.join("var/herald.db"),
        }
    }

    /// The CPU time the server has used so far.
    fn cpu(&self) -> Duration {
        cpu::of_process(self.child.id())
    }

    /// Wait until `count` relayed rows are sent.
    fn wait_sent(&self, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(600);
        let conn = rusqlite::Connection::open(&self.state).unwrap();
        loop {
            let sent: i64 = conn
                .query_row(
                    "SELECT count(*) FROM outbox WHERE rule = 'relay' AND state = 'sent'",
                    [],
                    |r| r.get(0),
                )
                .unwrap_or(0);
            if sent as usize >= count {
                return;
            }
            assert!(Instant::now() < deadline, "only {sent} of {count} relayed");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Herald {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}
