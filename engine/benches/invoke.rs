//! Benchmark: one rule invocation on a fresh sandbox instance, against the same rule run natively.
//!
//! `cargo bench --bench invoke` prints medians (and p90, p99) in microseconds.

use std::hint::black_box;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

#[path = "common/floor.rs"]
mod floor;
#[path = "common/timing.rs"]
mod timing;

use herald::config::Limits;
use herald::directory::Directory;
use herald::evaluate::host::{HostState, Invocation};
use herald::evaluate::sandbox::Sandbox;
use herald::evaluate::{KvRead, MemoryKv, convert, output};
use herald::event;
use herald_sdk::Rule as _;

const ITERATIONS: usize = 3000;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let directory = Arc::new(Directory::load(&root.join("etc/directory.yaml")).expect("directory"));
    let limits = Limits::default();
    let ev = event::from_str(
        r#"{"id":"bench-1","source":"omero://bench","type":"omero.user.created","time":"2026-11-23T09:15:00Z",
            "data":{"user":{"id":52,"name":"erin"}}}"#,
        chrono::Utc::now(),
    )
    .unwrap();
    let wit_event = convert::event(&ev);
    let kv: Arc<dyn KvRead> = Arc::new(MemoryKv::default());

    let sandbox = Sandbox::new(limits.memory_bytes, None);
    let wasm = herald::builtin::wasm("new-user").unwrap();
    let prepared = sandbox.prepare(wasm, &limits).unwrap();
    let invocation = || Invocation {
        rule: "new-user",
        config_json: Arc::from("{}"),
        directory: directory.clone(),
        kv: kv.clone(),
        limits: &limits,
        time_unix_ms: ev.time.timestamp_millis(),
        seed: 7,
    };

    println!(
        "rule new-user, {ITERATIONS} iterations each: median (p90, p99), minor page faults per call"
    );
    let native_median = report(
        "native: same rule logic, compiled natively",
        measure(|| native(&ev)),
    );
    let engine = sandbox.engine_for(&limits).unwrap();
    let mut floor_median = 0.0;
    for (label, floor) in floor::Floor::all(&engine) {
        floor_median = report(
            label,
            measure(|| {
                black_box(floor.run());
            }),
        );
    }
    report(
        "host state: limiter + kv view (WASI ctx lazily)",
        measure(|| drop(black_box(HostState::new(&invocation())))),
    );
    report(
        "instantiate only: fresh Store + instance + drop",
        measure(|| prepared.instantiate_only(HostState::new(&invocation()), &limits)),
    );
    let sandboxed_median = report(
        "sandboxed: fresh Store + instance + call + drop",
        measure(|| {
            let ran = prepared.invoke(HostState::new(&invocation()), &wit_event, &limits);
            black_box(ran.result.unwrap());
        }),
    );
    report(
        "sandboxed + output checks and directory expansion",
        measure(|| {
            let ran = prepared.invoke(HostState::new(&invocation()), &wit_event, &limits);
            black_box(output::resolve(ran.result.unwrap(), &directory, &limits).unwrap());
        }),
    );
    println!(
        "  medians against native: sandboxed {:.1}×, the floor of the rules' shape {:.1}× \
         (the issue's target: ≤ 8×)",
        sandboxed_median / native_median,
        floor_median / native_median
    );
}

/// The same logic as the wasm rule, called directly with the SDK's native test host.
fn native(ev: &event::Event) {
    thread_local! {
        static INSTALLED: () = herald_sdk::testing::TestHost::new().install();
    }
    INSTALLED.with(|_| ());
    let user = herald_sdk::User {
        id: 52,
        name: "erin".into(),
        first_name: None,
        last_name: None,
        email: None,
    };
    let sdk_event = herald_sdk::testing::event(
        &ev.kind,
        herald_sdk::Payload::UserCreated(herald_sdk::UserCreated {
            user,
            groups: vec![],
        }),
    );
    black_box(herald_rule_new_user::NewUser::handle(black_box(sdk_event)).unwrap());
}

/// Per-call times, sorted, and the mean minor page faults per call.
fn measure(mut f: impl FnMut()) -> (Vec<Duration>, f64) {
    for _ in 0..ITERATIONS / 10 {
        f();
    }
    let faults_before = minor_faults();
    let times = timing::sorted_times(0, ITERATIONS, f);
    let faults = (minor_faults() - faults_before) as f64 / ITERATIONS as f64;
    (times, faults)
}

/// Print one line; its median in µs.
fn report(label: &str, (times, faults): (Vec<Duration>, f64)) -> f64 {
    let at = |p: usize| timing::percentile(&times, p).as_secs_f64() * 1e6;
    println!(
        "  {label:<52} {:>8.2} µs  ({:.2}, {:.2} µs)  {faults:>6.1} page faults",
        at(50),
        at(90),
        at(99)
    );
    at(50)
}

/// Minor page faults of this process so far.
fn minor_faults() -> i64 {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}
