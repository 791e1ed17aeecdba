//! The wasmtime sandbox: engines, the compiled-component cache, and one limited invocation.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{
    Component, ComponentExportIndex, HasSelf, Instance, InstancePre, Linker, TypedFunc,
};
use wasmtime::{
    Engine, InstanceAllocationStrategy, PoolConcurrencyLimitError, PoolingAllocationConfig, Store,
    Trap,
};

use super::bindings::Rule;
use super::bindings::herald::rule::types as wit;
use super::failure::Failure;
use super::host::HostState;
use super::limit::HostLimit;
use crate::config::Limits;

/// How often the epoch ticks; wall-time deadlines are rounded up to it.
pub const EPOCH_TICK: Duration = Duration::from_millis(2);

/// Component instances (and memories) the pool holds at once.
const POOL_SLOTS: u32 = 64;

/// The smallest pool slot: the default memory limit, so every small rule shares one pool.
const MIN_SLOT_BYTES: u64 = 16 << 20;

/// Owns one wasmtime engine per distinct stack limit (wasmtime sets the stack per
/// engine) and memory size class (each engine's pool has slots of one size), the epoch
/// ticker, and the compiled-component cache.
pub struct Sandbox {
    engines: Mutex<HashMap<EngineKey, Engine>>,
    max_memory_bytes: u64,
    cache_dir: Option<PathBuf>,
}

/// What an engine is made for: the wasm stack, and the slot size of its pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct EngineKey {
    stack_bytes: u64,
    slot_bytes: u64,
}

impl EngineKey {
    /// A rule's memory limit rounded up to a power of two (at least 16 MiB, at most the
    /// largest limit of any rule), so a 64 MiB Python rule gets a pool of its own and the
    /// 16 MiB Rust rules keep slots of 16 MiB.
    fn for_limits(limits: &Limits, max_memory_bytes: u64) -> EngineKey {
        let class = limits
            .memory_bytes
            .max(MIN_SLOT_BYTES)
            .checked_next_power_of_two()
            .unwrap_or(u64::MAX);
        EngineKey {
            stack_bytes: limits.stack_bytes,
            slot_bytes: class.min(max_memory_bytes.max(limits.memory_bytes)),
        }
    }
}

/// A rule ready to run: its component pre-linked against the host imports.
///
/// The exports are looked up by name rather than through a generated world, so a rule
/// built against any frozen contract version loads: `handle` is in every version,
/// `check-config` since 0.1.1 (the imports of an older version are found by the
/// linker's semver matching: `@0.1.0` is served by this host's `@0.1.1`).
#[derive(Clone)]
pub struct Prepared {
    engine: Engine,
    pre: InstancePre<HostState>,
    handle: ComponentExportIndex,
    /// Whether `handle` was found to have the contract's type (on a throwaway instance at
    /// prepare), so that an invocation need not type-check it again.
    handle_typed: bool,
    check_config: Option<ComponentExportIndex>,
}

/// The contract's `handle`: an event in, messages or an error text out.
type Handle<'a> = TypedFunc<(&'a wit::Event,), (Result<Vec<wit::Message>, String>,)>;

impl Sandbox {
    /// `max_memory_bytes` is the largest memory limit of any rule: no pool's slots are
    /// larger. `cache_dir` keeps compiled components between runs.
    pub fn new(max_memory_bytes: u64, cache_dir: Option<PathBuf>) -> Sandbox {
        Sandbox {
            engines: Mutex::new(HashMap::new()),
            max_memory_bytes,
            cache_dir,
        }
    }

    /// Compile (or load from the cache) and pre-link one rule's component.
    pub fn prepare(&self, wasm: &[u8], limits: &Limits) -> anyhow::Result<Prepared> {
        let engine = self.engine(EngineKey::for_limits(limits, self.max_memory_bytes))?;
        let component = self.component(&engine, wasm)?;
        let mut linker = Linker::<HostState>::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)?;
        Rule::add_to_linker::<_, HasSelf<_>>(&mut linker, |state| state)?;
        let Some(handle) = component.get_export_index(None, "handle") else {
            bail!(
                "the component does not export the rule contract's `handle` (herald:rule): add \
                 `herald_sdk::export_rule!(YourRule);` at the root of the rule's src/lib.rs"
            );
        };
        let check_config = component.get_export_index(None, "check-config");
        let pre = linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("the rule needs something the sandbox does not provide")?;
        let handle_typed = handle_has_contract_type(&engine, &pre, &handle, limits);
        Ok(Prepared {
            engine,
            pre,
            handle,
            handle_typed,
            check_config,
        })
    }

    /// The engine a rule with these limits runs on: for benchmarks that measure
    /// wasmtime's own floor on the same configuration.
    #[doc(hidden)]
    pub fn engine_for(&self, limits: &Limits) -> anyhow::Result<Engine> {
        self.engine(EngineKey::for_limits(limits, self.max_memory_bytes))
    }

    fn engine(&self, key: EngineKey) -> anyhow::Result<Engine> {
        let mut engines = self.engines.lock().expect("engine map lock");
        if let Some(engine) = engines.get(&key) {
            return Ok(engine.clone());
        }
        let engine = new_engine(key.stack_bytes, key.slot_bytes)?;
        start_epoch_ticker(&engine);
        engines.insert(key, engine.clone());
        Ok(engine)
    }

    fn component(&self, engine: &Engine, wasm: &[u8]) -> anyhow::Result<Component> {
        if !super::module::is_component(wasm) {
            bail!(
                "this is not a WebAssembly component; build the rule with \
                 `cargo build --release --target wasm32-wasip2`"
            );
        }
        let Some(dir) = &self.cache_dir else {
            return Component::new(engine, wasm).map_err(anyhow::Error::from);
        };
        let path = dir.join(format!("{}.cwasm", cache_key(engine, wasm)));
        if path.exists() && trusted_cache_file(&path) {
            // SAFETY: only files this host wrote are in the cache, keyed by
            // the wasm's hash and the engine's compatibility hash.
            match unsafe { Component::deserialize_file(engine, &path) } {
                Ok(component) => return Ok(component),
                Err(err) => {
                    tracing::warn!(path = %path.display(), %err, "recompiling a bad cache entry")
                }
            }
        }
        let compiled = engine
            .precompile_component(wasm)
            .map_err(anyhow::Error::from)?;
        write_cache(dir, &path, &compiled);
        // SAFETY: `compiled` was produced just now by this engine.
        unsafe { Component::deserialize(engine, &compiled) }.map_err(anyhow::Error::from)
    }
}

fn cache_key(engine: &Engine, wasm: &[u8]) -> String {
    let mut compat = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let mut hash = Sha256::new();
    hash.update(wasm);
    hash.update(compat.finish().to_le_bytes());
    hex::encode(&hash.finalize()[..16])
}

/// Only a file that this user owns and nobody else can write is loaded:
/// deserializing compiled code runs it as Herald.
fn trusted_cache_file(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    let trusted =
        |p: &Path| std::fs::metadata(p).is_ok_and(|m| m.uid() == uid && m.mode() & 0o022 == 0);
    let ok = trusted(path) && path.parent().is_some_and(trusted);
    if !ok {
        tracing::warn!(path = %path.display(), "ignoring a compiled-rule cache file that is not ours alone");
    }
    ok
}

/// Best effort: a cache that cannot be written only costs a recompile.
fn write_cache(dir: &Path, path: &Path, compiled: &[u8]) {
    use std::os::unix::fs::DirBuilderExt;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .and_then(|()| std::fs::write(&tmp, compiled))
        .and_then(|()| std::fs::rename(&tmp, path));
    if let Err(err) = written {
        tracing::warn!(dir = %dir.display(), %err, "cannot write the compiled-rule cache");
        let _ = std::fs::remove_file(&tmp);
    }
}

fn new_engine(stack_bytes: u64, slot_bytes: u64) -> anyhow::Result<Engine> {
    let mut pool = PoolingAllocationConfig::default();
    pool.total_component_instances(POOL_SLOTS)
        .total_core_instances(POOL_SLOTS * 4)
        .total_memories(POOL_SLOTS)
        .total_tables(POOL_SLOTS * 4)
        .max_memory_size(slot_bytes as usize)
        // Reset the first 256 KiB of a reused slot with memset instead of
        // madvise, so the next instance does not fault those pages in again.
        // With the embedded rules' 64 KiB shadow stack (engine/build.rs) that
        // covers every page a typical invocation touches: 0 page faults, and
        // 35.6 µs → 11.2 µs per invocation (benches/invoke.rs).
        .linear_memory_keep_resident(256 << 10)
        .table_keep_resident(64 << 10);
    let mut config = wasmtime::Config::new();
    config
        .consume_fuel(true)
        .epoch_interruption(true)
        .max_wasm_stack(stack_bytes as usize)
        .wasm_component_model(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config).map_err(anyhow::Error::from)
}

/// Type-check `handle` once, on a throwaway instance (type-checking the event's variant is
/// about a tenth of an invocation). `false` when that instance cannot be made: each
/// invocation then checks, and fails, exactly as it would have.
fn handle_has_contract_type(
    engine: &Engine,
    pre: &InstancePre<HostState>,
    handle: &ComponentExportIndex,
    limits: &Limits,
) -> bool {
    let mut store = new_store(engine, HostState::inert(limits), limits);
    let Ok(instance) = pre.instantiate(&mut store) else {
        return false;
    };
    instance
        .get_typed_func::<(&wit::Event,), (Result<Vec<wit::Message>, String>,)>(&mut store, handle)
        .is_ok()
}

fn new_store(engine: &Engine, state: HostState, limits: &Limits) -> Store<HostState> {
    let mut store = Store::new(engine, state);
    store.limiter(|state| &mut state.limiter);
    store.set_fuel(limits.fuel).expect("fuel is enabled");
    store.set_epoch_deadline(deadline_ticks(limits.wall_time));
    store.epoch_deadline_trap();
    store
}

/// Tick every engine's epoch from one thread; it stops when the engine is gone.
fn start_epoch_ticker(engine: &Engine) {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("herald-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .expect("spawn the epoch ticker thread");
}

/// The result of one invocation, and the state it left.
pub struct Ran {
    pub result: Result<Vec<wit::Message>, Failure>,
    pub state: HostState,
    pub fuel_used: u64,
    /// The wasm call stack of a trap, innermost first (function names; file:line with debug info).
    pub backtrace: Option<String>,
}

impl Prepared {
    /// Instantiate in a fresh store and drop it, without calling: for benchmarks.
    #[doc(hidden)]
    pub fn instantiate_only(&self, state: HostState, limits: &Limits) {
        let mut store = self.store(state, limits);
        let _ = self.pre.instantiate(&mut store).expect("instantiate");
    }

    /// Whether the rule can check its config at load (`check-config`, contract 0.1.1 on).
    pub fn checks_config(&self) -> bool {
        self.check_config.is_some()
    }

    /// Ask the rule whether it takes `config_json`; `Ok(None)` when it has no
    /// `check-config` (built against 0.1.0) and `Ok(Some(Err(..)))` when it refuses it.
    pub fn check_config(
        &self,
        state: HostState,
        config_json: &str,
        limits: &Limits,
    ) -> anyhow::Result<Option<Result<(), wit::ConfigError>>> {
        let Some(index) = &self.check_config else {
            return Ok(None);
        };
        let mut store = self.store(state, limits);
        let instance = self
            .pre
            .instantiate(&mut store)
            .map_err(anyhow::Error::from)?;
        let func = instance
            .get_typed_func::<(&str,), (Result<(), wit::ConfigError>,)>(&mut store, index)
            .map_err(anyhow::Error::from)
            .context("the rule's `check-config` does not have the contract's type")?;
        let (verdict,) = func
            .call(&mut store, (config_json,))
            .map_err(anyhow::Error::from)?;
        Ok(Some(verdict))
    }

    fn store(&self, state: HostState, limits: &Limits) -> Store<HostState> {
        new_store(&self.engine, state, limits)
    }

    fn handle_func<'a>(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
    ) -> wasmtime::Result<Handle<'a>> {
        if !self.handle_typed {
            return instance.get_typed_func(&mut *store, self.handle);
        }
        let func = instance
            .get_func(&mut *store, self.handle)
            .ok_or_else(|| wasmtime::format_err!("the rule has no `handle` export"))?;
        // SAFETY: every instance of `self.pre` is of the same component, whose `handle`
        // was found to have exactly this type by `handle_has_contract_type`.
        Ok(unsafe { Handle::new_unchecked(func) })
    }

    fn call_handle(
        &self,
        store: &mut Store<HostState>,
        instance: &Instance,
        event: &wit::Event,
    ) -> wasmtime::Result<Result<Vec<wit::Message>, String>> {
        let func = self.handle_func(store, instance)?;
        let (result,) = func.call(&mut *store, (event,))?;
        Ok(result)
    }

    /// Run `handle` once in a fresh store and instance, within `limits`.
    pub fn invoke(&self, state: HostState, event: &wit::Event, limits: &Limits) -> Ran {
        let mut store = self.store(state, limits);
        let called = self
            .pre
            .instantiate(&mut store)
            .map_err(|err| (Phase::Instantiate, err))
            .and_then(|instance| {
                self.call_handle(&mut store, &instance, event)
                    .map_err(|err| (Phase::Call, err))
            });
        let fuel_used = limits.fuel - store.get_fuel().unwrap_or(0);
        let state = store.into_data();
        let backtrace = called.as_ref().err().and_then(|(_, err)| backtrace(err));
        let result = match called {
            Ok(Ok(messages)) => Ok(messages),
            Ok(Err(message)) => Err(Failure::RuleError { message }),
            Err((phase, err)) => Err(classify(phase, &err, &state.stderr(), limits)),
        };
        Ran {
            result,
            state,
            fuel_used,
            backtrace,
        }
    }
}

/// The wasm frames wasmtime attached to a trap, if any.
fn backtrace(err: &wasmtime::Error) -> Option<String> {
    let trace = err.downcast_ref::<wasmtime::WasmBacktrace>()?;
    (!trace.frames().is_empty()).then(|| trace.to_string())
}

fn deadline_ticks(wall_time: Duration) -> u64 {
    let tick = EPOCH_TICK.as_micros();
    (wall_time.as_micros().div_ceil(tick) as u64).max(1)
}

/// Where an invocation failed: setting the instance up, or in the call itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Instantiate,
    Call,
}

/// Name the reason a call failed, from the error's type: wasmtime's [`Trap`] and
/// [`PoolConcurrencyLimitError`], and the host's own [`HostLimit`]. No error text is matched.
fn classify(phase: Phase, err: &wasmtime::Error, stderr: &str, limits: &Limits) -> Failure {
    if let Some(limit) = err.downcast_ref::<HostLimit>() {
        return host_limit(*limit, limits);
    }
    if let Some(trap) = err.downcast_ref::<Trap>() {
        return trap_failure(*trap, stderr, limits);
    }
    let message = format!("{err:#}");
    if phase == Phase::Instantiate || err.downcast_ref::<PoolConcurrencyLimitError>().is_some() {
        return Failure::Instantiate { message };
    }
    Failure::Trap {
        message: with_stderr(message, stderr),
    }
}

fn host_limit(limit: HostLimit, limits: &Limits) -> Failure {
    match limit {
        HostLimit::Memory { .. } => Failure::Memory {
            limit_bytes: limits.memory_bytes,
        },
        HostLimit::Log { limit_bytes } => Failure::OutputCap {
            message: format!(
                "the rule wrote more than {limit_bytes} bytes to stderr (limits.max_log)"
            ),
        },
    }
}

fn trap_failure(trap: Trap, stderr: &str, limits: &Limits) -> Failure {
    match trap {
        Trap::OutOfFuel => Failure::OutOfFuel { fuel: limits.fuel },
        Trap::Interrupt => Failure::Deadline {
            wall_time: limits.wall_time,
        },
        Trap::StackOverflow => Failure::StackOverflow {
            stack_bytes: limits.stack_bytes,
        },
        Trap::UnreachableCodeReached if stderr.contains(PYTHON_TRACEBACK) => Failure::Panic {
            message: python_exception(stderr),
        },
        Trap::UnreachableCodeReached if stderr.contains("panicked") => Failure::Panic {
            message: panic_message(stderr),
        },
        Trap::MemoryOutOfBounds => Failure::Trap {
            message: with_stderr(
                "out of bounds memory access (deep recursion overflowing the shadow stack looks like this)".into(),
                stderr,
            ),
        },
        trap => Failure::Trap {
            message: with_stderr(trap.to_string(), stderr),
        },
    }
}

/// How CPython starts the report of an uncaught exception (a componentize-py rule prints it
/// to stderr, then its runtime panics).
const PYTHON_TRACEBACK: &str = "Traceback (most recent call last):";

/// "ZeroDivisionError: division by zero (at app.py:10, in helper)" and then the traceback,
/// from a Python rule's stderr: the exception, the innermost frame, every frame.
fn python_exception(stderr: &str) -> String {
    let (_, after) = stderr.rsplit_once(PYTHON_TRACEBACK).unwrap_or(("", stderr));
    let traceback: Vec<&str> = after
        .lines()
        .take_while(|l| !l.starts_with("thread '"))
        .filter(|l| !l.trim().is_empty())
        .collect();
    let exception = traceback
        .iter()
        .rev()
        .find(|l| !l.starts_with(' '))
        .map_or("an exception", |l| l.trim());
    let location = traceback
        .iter()
        .rev()
        .find_map(|l| python_frame(l))
        .map_or(String::new(), |at| format!(" (at {at})"));
    format!(
        "{exception}{location}\n{PYTHON_TRACEBACK}\n{}",
        traceback.join("\n")
    )
}

/// `  File "/x/app.py", line 10, in helper` → `app.py:10, in helper`.
fn python_frame(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (path, rest) = rest.split_once("\", line ")?;
    let (number, function) = rest.split_once(", in ").unwrap_or((rest, ""));
    let file = path.rsplit('/').next().unwrap_or(path);
    Some(format!("{file}:{number}, in {function}"))
}

/// The panic text from Rust's "thread '…' panicked at file:line:col:\nmessage".
fn panic_message(stderr: &str) -> String {
    let after = stderr
        .split_once("panicked at ")
        .map_or(stderr, |(_, rest)| rest);
    let (location, message) = after.split_once('\n').unwrap_or(("", after));
    let message = message
        .lines()
        .take_while(|l| !l.starts_with("note: "))
        .collect::<Vec<_>>()
        .join("\n");
    format!("{} (at {})", message.trim(), location.trim_end_matches(':'))
}

fn with_stderr(message: String, stderr: &str) -> String {
    let stderr = stderr.trim();
    if stderr.is_empty() {
        message
    } else {
        format!("{message}; stderr: {stderr}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_message_is_extracted() {
        let stderr = "\nthread '<unnamed>' panicked at src/lib.rs:7:9:\nboom here\nnote: run with `RUST_BACKTRACE=1`\n";
        assert_eq!(panic_message(stderr), "boom here (at src/lib.rs:7:9)");
    }

    #[test]
    fn a_python_traceback_names_the_exception_and_the_innermost_line() {
        let stderr = "Traceback (most recent call last):\n  File \"/r/herald/world.py\", line 70, in handle\n    out = _RULE.handle(_event(event))\n  File \"/r/app.py\", line 10, in helper\n    return 1 / 0\n           ~~^~~\nZeroDivisionError: division by zero\n\nthread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\nPython function threw an unexpected exception\n";
        let message = python_exception(stderr);
        let first = message.lines().next().unwrap();
        assert_eq!(
            first,
            "ZeroDivisionError: division by zero (at app.py:10, in helper)"
        );
        assert!(message.contains("line 70, in handle"), "{message}");
        assert!(!message.contains("runtime/src/lib.rs"), "{message}");
        let failure = trap_failure(Trap::UnreachableCodeReached, stderr, &Limits::default());
        assert_eq!(failure.code(), "panic", "{failure}");
    }

    #[test]
    fn memory_size_classes_keep_small_rules_in_small_slots() {
        let rust = Limits::default();
        let python = Limits::default().for_python();
        let max = python.memory_bytes;
        assert_eq!(EngineKey::for_limits(&rust, max).slot_bytes, 16 << 20);
        assert_eq!(EngineKey::for_limits(&python, max).slot_bytes, 64 << 20);
        let odd = Limits {
            memory_bytes: 20 << 20,
            ..rust
        };
        assert_eq!(EngineKey::for_limits(&odd, max).slot_bytes, 32 << 20);
        assert_eq!(EngineKey::for_limits(&odd, 20 << 20).slot_bytes, 20 << 20);
        let tiny = Limits {
            memory_bytes: 1 << 20,
            ..rust
        };
        assert_eq!(
            EngineKey::for_limits(&tiny, max),
            EngineKey::for_limits(&rust, max)
        );
    }

    #[test]
    fn deadline_rounds_up_to_ticks() {
        assert_eq!(deadline_ticks(Duration::from_millis(100)), 50);
        assert_eq!(deadline_ticks(Duration::from_micros(1)), 1);
    }

    #[test]
    fn host_limits_and_traps_are_told_apart_by_type_not_by_text() {
        let limits = Limits::default();
        let classify_call = |err: wasmtime::Error| classify(Phase::Call, &err, "", &limits);
        let log = classify_call(wasmtime::Error::new(HostLimit::Log { limit_bytes: 64 }));
        assert_eq!(log.code(), "output-cap", "{log}");
        assert!(log.to_string().contains("limits.max_log"), "{log}");
        let memory = classify_call(wasmtime::Error::new(HostLimit::Memory { limit_bytes: 1 }));
        assert_eq!(
            memory,
            Failure::Memory {
                limit_bytes: limits.memory_bytes
            }
        );
        let fuel = classify_call(wasmtime::Error::new(Trap::OutOfFuel));
        assert_eq!(fuel, Failure::OutOfFuel { fuel: limits.fuel });
        // Text that merely looks like a limit is an ordinary trap.
        let lookalike = classify_call(wasmtime::format_err!(
            "write beyond capacity of MemoryOutputPipe; instance limit reached"
        ));
        assert_eq!(lookalike.code(), "trap", "{lookalike}");
        let setup = classify(
            Phase::Instantiate,
            &wasmtime::format_err!("no slot"),
            "",
            &limits,
        );
        assert_eq!(setup.code(), "instantiate", "{setup}");
    }

    #[test]
    fn component_preamble_is_recognised() {
        assert!(super::super::module::is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!super::super::module::is_component(b"\0asm\x01\0\0\0"));
    }
}
