//! Benchmark: the Python new-user rule next to the Rust one, fresh instance per invocation, plus
//! the Python component's first load (Cranelift compile) and its load from the compiled cache.
//!
//! `cargo bench --bench python` builds rules/python/new-user with `herald rule build` into
//! target/python-bench (componentize-py is installed on first use, or `HERALD_COMPONENTIZE_PY`).

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[path = "common/timing.rs"]
mod timing;

use herald::config::Limits;
use herald::directory::Directory;
use herald::evaluate::host::{HostState, Invocation};
use herald::evaluate::sandbox::{Prepared, Sandbox};
use herald::evaluate::{KvRead, MemoryKv, convert};
use herald::event;

const RUST_ITERATIONS: usize = 3000;
const PYTHON_ITERATIONS: usize = 300;
const CACHED_LOADS: usize = 5;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let directory = Arc::new(Directory::load(&root.join("etc/directory.yaml")).expect("directory"));
    let ev = event::from_str(
        r#"{"id":"bench-1","source":"omero://bench","type":"omero.user.created","time":"2026-11-23T09:15:00Z",
            "data":{"user":{"id":52,"name":"erin"}}}"#,
        chrono::Utc::now(),
    )
    .unwrap();
    let wit_event = convert::event(&ev);
    let kv: Arc<dyn KvRead> = Arc::new(MemoryKv::default());
    let rust_limits = Limits::default();
    let python_limits = Limits::default().for_python();

    let python_wasm = std::fs::read(build_python_rule(root)).expect("the built component");
    let cache = tempfile::tempdir().unwrap();
    let sandbox = || Sandbox::new(python_limits.memory_bytes, Some(cache.path().join("c")));
    let started = Instant::now();
    let python = sandbox().prepare(&python_wasm, &python_limits).unwrap();
    let compile = started.elapsed();
    let mut loads: Vec<Duration> = (0..CACHED_LOADS)
        .map(|_| {
            let started = Instant::now();
            black_box(sandbox().prepare(&python_wasm, &python_limits).unwrap());
            started.elapsed()
        })
        .collect();
    loads.sort();
    let rust = Sandbox::new(python_limits.memory_bytes, None)
        .prepare(herald::builtin::wasm("new-user").unwrap(), &rust_limits)
        .unwrap();

    let time_unix_ms = ev.time.timestamp_millis();
    let state = |limits: &Limits| {
        HostState::new(&Invocation {
            rule: "new-user",
            config_json: Arc::from("{}"),
            directory: directory.clone(),
            kv: kv.clone(),
            limits,
            time_unix_ms,
            seed: 7,
        })
    };
    let run = |prepared: &Prepared, limits: &Limits, iterations: usize| {
        timing::sorted_times(iterations / 10, iterations, || {
            let ran = prepared.invoke(state(limits), &wit_event, limits);
            black_box(ran.result.unwrap());
        })
    };
    let instantiate = |prepared: &Prepared, limits: &Limits, iterations: usize| {
        timing::sorted_times(iterations / 10, iterations, || {
            prepared.instantiate_only(state(limits), limits)
        })
    };
    println!(
        "rule new-user, Python ({} KiB component) against Rust, fresh Store + instance + call + drop:",
        python_wasm.len() / 1024
    );
    report(
        "Rust (builtin:new-user)",
        &run(&rust, &rust_limits, RUST_ITERATIONS),
    );
    report(
        "Python (rules/python/new-user)",
        &run(&python, &python_limits, PYTHON_ITERATIONS),
    );
    report(
        "Python, instantiate only (no call)",
        &instantiate(&python, &python_limits, PYTHON_ITERATIONS),
    );
    println!(
        "  Python first load (Cranelift compile + cache write): {:.1} s",
        compile.as_secs_f64()
    );
    println!(
        "  Python load from the compiled cache: median {:.1} ms of {CACHED_LOADS}",
        loads[CACHED_LOADS / 2].as_secs_f64() * 1e3
    );
}

/// `herald rule build` on a copy of rules/python/new-user under target/python-bench.
fn build_python_rule(root: &Path) -> PathBuf {
    let dir = root.join("target/python-bench/new-user");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for file in ["app.py", "herald-rule.yaml"] {
        std::fs::copy(
            root.join("rules/python/new-user").join(file),
            dir.join(file),
        )
        .unwrap();
    }
    let mut command = Command::new(env!("CARGO_BIN_EXE_herald"));
    command.current_dir(&dir).args(["rule", "build"]);
    if std::env::var_os("XDG_CACHE_HOME").is_none() {
        command.env("XDG_CACHE_HOME", root.join("target/python-e2e/xdg"));
    }
    let status = command.status().expect("run herald rule build");
    assert!(status.success(), "herald rule build failed");
    dir.join("new-user.wasm")
}

fn report(label: &str, times: &[Duration]) {
    let at = |q: usize| timing::percentile(times, q).as_secs_f64() * 1e6;
    println!(
        "  {label:<34} median {:>9.1} µs   p99 {:>9.1} µs   ({} calls)",
        at(50),
        at(99),
        times.len()
    );
}
