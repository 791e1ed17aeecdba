//! Helpers for end-to-end tests: run the real `herald` binary in a scratch state folder.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

/// Where the test-fixture rules (tests/rules/*) were compiled.
pub fn fixture_wasm(package: &str) -> PathBuf {
    Path::new(env!("HERALD_TEST_RULES_DIR")).join(format!("{}.wasm", package.replace('-', "_")))
}

/// Where the test-fixture rules also built like the embedded rules (no WASI) were made components.
pub fn bare_fixture_wasm(package: &str) -> PathBuf {
    Path::new(env!("HERALD_TEST_BARE_RULES_DIR"))
        .join(format!("{}.wasm", package.replace('-', "_")))
}

/// A scratch folder with its own config; dropped with the test.
pub struct Scratch {
    pub dir: tempfile::TempDir,
}

impl Scratch {
    /// A scratch folder using the shipped `etc/herald.yaml`, state kept here.
    pub fn new() -> Scratch {
        Scratch {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A scratch folder with a config of its own, written to `herald.yaml`.
    /// `directory.yaml` there is a copy of `etc/directory.yaml`.
    pub fn with_config(yaml: &str) -> Scratch {
        let scratch = Scratch::new();
        std::fs::copy(
            repo().join("etc/directory.yaml"),
            scratch.path("directory.yaml"),
        )
        .unwrap();
        std::fs::write(scratch.path("herald.yaml"), yaml).unwrap();
        scratch
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Run herald with the shipped config and this folder as its state_dir.
    pub fn herald(&self, args: &[&str]) -> Output {
        self.run(&repo().join("etc/herald.yaml"), args)
    }

    /// Run herald with this folder's own `herald.yaml`.
    pub fn herald_own(&self, args: &[&str]) -> Output {
        self.run(&self.path("herald.yaml"), args)
    }

    /// Run herald with the given config file, state kept here.
    pub fn herald_with(&self, config: &Path, args: &[&str]) -> Output {
        self.run(config, args)
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_herald"))
            .current_dir(repo())
            .arg("--config")
            .arg(config)
            .arg("--state-dir")
            .arg(self.path("var"))
            .args(args)
            .env_remove("HERALD_CONFIG")
            .env_remove("HERALD_STATE_DIR")
            .output()
            .expect("run the herald binary")
    }

    /// The .eml files written, sorted by name, with their bytes.
    pub fn mails(&self) -> Vec<(String, Vec<u8>)> {
        let dir = self.path("var/mail");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut mails: Vec<(String, Vec<u8>)> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().into_owned(),
                    std::fs::read(&p).unwrap(),
                )
            })
            .collect();
        mails.sort();
        mails
    }

    /// Run one SQL count against the store.
    pub fn count(&self, sql: &str) -> i64 {
        let conn = rusqlite::Connection::open(self.path("var/herald.db")).unwrap();
        conn.query_row(sql, [], |r| r.get(0)).unwrap()
    }
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Assert the exit code, showing both streams when it is wrong.
pub fn assert_exit(out: &Output, code: i32) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "exit code\n--- stdout\n{}\n--- stderr\n{}",
        stdout(out),
        stderr(out)
    );
}

/// 127.0.0.1 ports that nothing listens on right now (the OS may hand one out again: callers
/// that bind through another process use `spawn_listening`, which retries on a clash).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// A server process listening on `port`, killed when dropped.
pub struct Listening {
    pub child: std::process::Child,
    pub port: u16,
}

impl Drop for Listening {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start a server with `start(port)` on a free port; when the port turns out to be taken
/// (the child exits, or something else answers while it is gone), try another one.
pub fn spawn_listening(mut start: impl FnMut(u16) -> std::process::Child) -> Listening {
    for _ in 0..5 {
        let port = free_port();
        let mut server = Listening {
            child: start(port),
            port,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if server.child.try_wait().unwrap().is_some() {
                break; // it could not bind: try another port
            }
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                std::thread::sleep(Duration::from_millis(50));
                if server.child.try_wait().unwrap().is_none() {
                    return server;
                }
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start listening"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free port could be bound after 5 tries");
}

/// Postfix's smtp-sink with `options`, on a free port (retried on a bind clash).
pub fn smtp_sink(options: &[&str]) -> Listening {
    let sink = std::env::var_os("HERALD_SMTP_SINK")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join("target/tools/postfix/usr/sbin/smtp-sink"));
    assert!(
        sink.is_file(),
        "{} not found: run `make test-deps`",
        sink.display()
    );
    // The unpacked package keeps its shared libraries in usr/lib/postfix.
    let libs = sink.parent().unwrap().parent().unwrap().join("lib/postfix");
    spawn_listening(|port| {
        let mut command = Command::new(&sink);
        command.env("LD_LIBRARY_PATH", &libs);
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.args(["-u", "nobody"]);
        }
        command
            .args(options)
            .arg(format!("127.0.0.1:{port}"))
            .arg("100")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start smtp-sink")
    })
}

/// A TCP relay between Herald and a server that counts what Herald sent: DATA commands and
/// final dots. Tests trigger kills on these observed events instead of on sleeps. The
/// upstream port can change (a server replaced on a new port) while Herald keeps `port`.
pub struct Tap {
    pub port: u16,
    upstream: Arc<AtomicU16>,
    data: Arc<AtomicUsize>,
    dots: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    /// What Herald sent, read by read (the first `READS_KEPT` reads).
    reads: Arc<Mutex<Vec<Vec<u8>>>>,
}

/// Reads of Herald's bytes a tap keeps for [`Tap::reads`].
const READS_KEPT: usize = 4096;

impl Tap {
    pub fn to(upstream: u16) -> Tap {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let tap = Tap {
            port: listener.local_addr().unwrap().port(),
            upstream: Arc::new(AtomicU16::new(upstream)),
            data: Arc::default(),
            dots: Arc::default(),
            stop: Arc::default(),
            reads: Arc::default(),
        };
        let (upstream, data, dots, stop, reads) = (
            tap.upstream.clone(),
            tap.data.clone(),
            tap.dots.clone(),
            tap.stop.clone(),
            tap.reads.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let port = upstream.load(Ordering::SeqCst);
                        let counted = (data.clone(), dots.clone(), reads.clone());
                        relay(client, port, counted);
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        tap
    }

    /// Send new connections to another server port.
    pub fn redirect(&self, upstream: u16) {
        self.upstream.store(upstream, Ordering::SeqCst);
    }

    /// DATA commands Herald has sent so far.
    pub fn data(&self) -> usize {
        self.data.load(Ordering::SeqCst)
    }

    /// Final dots (`CRLF.CRLF`) Herald has sent so far.
    pub fn dots(&self) -> usize {
        self.dots.load(Ordering::SeqCst)
    }

    /// Herald's bytes as the tap read them: on loopback, one read per write Herald made.
    pub fn reads(&self) -> Vec<String> {
        let reads = self.reads.lock().unwrap();
        reads
            .iter()
            .map(|read| String::from_utf8_lossy(read).into_owned())
            .collect()
    }
}

impl Drop for Tap {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// DATA and dot counters, and the reads kept, of one tap.
type Counted = (Arc<AtomicUsize>, Arc<AtomicUsize>, Arc<Mutex<Vec<Vec<u8>>>>);

fn relay(client: std::net::TcpStream, port: u16, (data, dots, reads): Counted) {
    client.set_nonblocking(false).unwrap();
    let Ok(server) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return; // the client sees the connection close, as with a server that is down
    };
    let (mut from_server, mut to_client) =
        (server.try_clone().unwrap(), client.try_clone().unwrap());
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from_server, &mut to_client);
        let _ = to_client.shutdown(std::net::Shutdown::Both);
    });
    std::thread::spawn(move || {
        let (mut client, mut server) = (client, server);
        let mut counters = [
            Counter::new(b"\r\nDATA\r\n", data),
            Counter::new(b"\r\n.\r\n", dots),
        ];
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match std::io::Read::read(&mut client, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            // Count before forwarding: once the server can see it, so can the test.
            counters.iter_mut().for_each(|c| c.feed(&buf[..n]));
            let mut kept = reads.lock().unwrap();
            if kept.len() < READS_KEPT {
                kept.push(buf[..n].to_vec());
            }
            drop(kept);
            if std::io::Write::write_all(&mut server, &buf[..n]).is_err() {
                break;
            }
        }
        let _ = server.shutdown(std::net::Shutdown::Both);
    });
}

/// Counts a byte pattern in a stream that arrives in chunks (matches across chunks too).
struct Counter {
    needle: &'static [u8],
    /// The last `needle.len() - 1` bytes seen: too short to hold a whole match again.
    tail: Vec<u8>,
    count: Arc<AtomicUsize>,
}

impl Counter {
    fn new(needle: &'static [u8], count: Arc<AtomicUsize>) -> Counter {
        Counter {
            needle,
            tail: Vec::new(),
            count,
        }
    }

    fn feed(&mut self, chunk: &[u8]) {
        self.tail.extend_from_slice(chunk);
        let found = self
            .tail
            .windows(self.needle.len())
            .filter(|w| *w == self.needle)
            .count();
        self.count.fetch_add(found, Ordering::SeqCst);
        let keep = self.tail.len().saturating_sub(self.needle.len() - 1);
        self.tail.drain(..keep);
    }
}

/// Poll `ready` every 10 ms until it holds; false when `limit` passed first.
pub fn wait_for(limit: Duration, mut ready: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    ready()
}
