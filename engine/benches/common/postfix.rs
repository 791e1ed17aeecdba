//! Postfix's smtp-sink and smtp-source for the benchmarks, from `make test-deps` or `$HERALD_SMTP_SINK`.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `usr` folder of the unpacked postfix package.
pub fn tools_dir() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tools/postfix");
    let sink = std::env::var_os("HERALD_SMTP_SINK")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("usr/sbin/smtp-sink"));
    assert!(
        sink.is_file(),
        "smtp-sink not found at {}; run `make test-deps`",
        sink.display()
    );
    sink.parent().unwrap().parent().unwrap().to_owned()
}

/// A postfix tool, with the package's shared libraries on LD_LIBRARY_PATH.
pub fn tool(usr: &Path, name: &str) -> Command {
    let mut command = Command::new(usr.join("sbin").join(name));
    command.env("LD_LIBRARY_PATH", usr.join("lib/postfix"));
    command
}

/// smtp-sink on a free loopback port, killed when dropped.
pub struct Sink {
    child: Child,
    pub port: u16,
}

impl Sink {
    /// The CPU time smtp-sink has used so far.
    pub fn cpu(&self) -> Duration {
        crate::cpu::of_process(self.child.id())
    }

    /// smtp-source straight into this sink (the reference): its rate, and the CPU time both
    /// ends spent on it.
    pub fn direct(&self, usr: &Path, sessions: usize, count: usize) -> (f64, crate::cpu::Split) {
        let sink_before = self.cpu();
        let run = source_run(usr, self.port, sessions, count);
        let split = crate::cpu::Split {
            source: run.cpu,
            herald: Duration::ZERO,
            sink: self.cpu() - sink_before,
            wall: run.wall,
        };
        (run.rate, split)
    }
}

impl Sink {
    pub fn start(usr: &Path) -> Sink {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = tool(usr, "smtp-sink");
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            command.args(["-u", "nobody"]);
        }
        let child = command
            .arg(format!("127.0.0.1:{port}"))
            .arg("256")
            .stdout(Stdio::null())
            .spawn()
            .expect("start smtp-sink");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "smtp-sink did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Sink { child, port }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Messages per second of smtp-source sending `count` messages over `sessions` parallel
/// sessions (reusing connections) to 127.0.0.1:`port`: every benchmark's SMTP reference.
pub fn source_rate(usr: &Path, port: u16, sessions: usize, count: usize) -> f64 {
    source_run(usr, port, sessions, count).rate
}

/// One smtp-source run: its rate, its wall time and the CPU time it used.
pub struct SourceRun {
    pub rate: f64,
    pub wall: Duration,
    pub cpu: Duration,
}

/// [`source_rate`], with the run's wall and CPU time.
pub fn source_run(usr: &Path, port: u16, sessions: usize, count: usize) -> SourceRun {
    let cpu_before = crate::cpu::of_waited_children();
    let start = Instant::now();
    let status = tool(usr, "smtp-source")
        .args(["-d", "-s", &sessions.to_string(), "-m", &count.to_string()])
        .args(["-f", "omero@example.org", "-t", "user@example.org"])
        .arg(format!("127.0.0.1:{port}"))
        .status()
        .expect("run smtp-source");
    assert!(status.success(), "smtp-source failed");
    let wall = start.elapsed();
    SourceRun {
        rate: count as f64 / wall.as_secs_f64(),
        wall,
        cpu: crate::cpu::of_waited_children().saturating_sub(cpu_before),
    }
}
