//! The host side of the sandbox: per-invocation state and the imports a rule may call.

use std::sync::Arc;

use rand::SeedableRng;
use rand::rngs::StdRng;
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::{HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxView, WasiView};

use super::bindings::herald::rule::{directory, host, types};
use super::convert;
use super::kv::{KvOverlay, KvRead};
use super::limit::{HostLimit, LogPipe};
use crate::config::Limits;
use crate::directory::Directory;

/// Longest key a rule may use in its store.
const MAX_KV_KEY: usize = 256;
/// Largest value a rule may store under one key.
const MAX_KV_VALUE: usize = 64 * 1024;

/// One line a rule logged.
#[derive(Clone, Debug, PartialEq)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

/// What one invocation may see and what it leaves behind.
pub struct HostState {
    /// Built on the rule's first WASI call: a rule that imports no WASI (the embedded rules)
    /// never pays for it.
    wasi: Option<WasiCtx>,
    table: ResourceTable,
    time_unix_ms: i64,
    seed: u64,
    pub(super) limiter: Limiter,
    stderr: LogPipe,
    config_json: Arc<str>,
    directory: Arc<Directory>,
    pub(super) kv: KvOverlay,
    pub(super) logs: Vec<LogLine>,
    log_budget: usize,
    pub(super) logs_dropped: usize,
}

/// The inputs of one invocation, besides the event.
pub struct Invocation<'a> {
    pub rule: &'a str,
    pub config_json: Arc<str>,
    pub directory: Arc<Directory>,
    pub kv: Arc<dyn KvRead>,
    pub limits: &'a Limits,
    /// The event's time, which is all the rule's clocks ever read.
    pub time_unix_ms: i64,
    /// Seeds the rule's random numbers, so a replay is reproducible.
    pub seed: u64,
}

impl HostState {
    pub fn new(inv: &Invocation<'_>) -> HostState {
        let stderr = LogPipe::new(inv.limits.max_log_bytes);
        HostState {
            wasi: None,
            table: ResourceTable::new(),
            time_unix_ms: inv.time_unix_ms,
            seed: inv.seed,
            limiter: Limiter::new(inv.limits),
            stderr,
            config_json: inv.config_json.clone(),
            directory: inv.directory.clone(),
            kv: KvOverlay::new(inv.rule, inv.kv.clone(), inv.time_unix_ms),
            logs: Vec::new(),
            log_budget: inv.limits.max_log_bytes as usize,
            logs_dropped: 0,
        }
    }

    /// A state with no config, directory or store behind it, for a throwaway instance.
    pub(super) fn inert(limits: &Limits) -> HostState {
        HostState::new(&Invocation {
            rule: "",
            config_json: Arc::from("{}"),
            directory: Arc::new(Directory::default()),
            kv: Arc::new(super::kv::MemoryKv::default()),
            limits,
            time_unix_ms: 0,
            seed: 0,
        })
    }

    /// The largest linear memory the rule had, in bytes.
    pub fn peak_memory(&self) -> u64 {
        self.limiter.peak_bytes as u64
    }

    /// What the rule wrote to stderr (a panic message, usually).
    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.contents()).into_owned()
    }
}

/// WASI with no capabilities: no files, sockets, env or args; stdin closed;
/// clocks frozen at the event's time; random seeded from the event.
fn deterministic_wasi(time_unix_ms: i64, seed: u64, stderr: LogPipe) -> WasiCtx {
    let mut builder = WasiCtx::builder();
    builder
        .stderr(stderr)
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(FrozenClock(time_unix_ms))
        .monotonic_clock(FrozenClock(time_unix_ms))
        .secure_random(StdRng::seed_from_u64(seed))
        .insecure_random(StdRng::seed_from_u64(seed ^ 0x5eed))
        .insecure_random_seed(u128::from(seed));
    builder.build()
}

/// A clock that always reads the event's time.
struct FrozenClock(i64);

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> std::time::Duration {
        std::time::Duration::from_millis(1)
    }

    fn now(&self) -> std::time::Duration {
        std::time::Duration::from_millis(self.0.max(0) as u64)
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000
    }

    fn now(&self) -> u64 {
        (self.0.max(0) as u64).saturating_mul(1_000_000)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        let (time_unix_ms, seed, stderr) = (self.time_unix_ms, self.seed, &self.stderr);
        let ctx = self
            .wasi
            .get_or_insert_with(|| deterministic_wasi(time_unix_ms, seed, stderr.clone()));
        WasiCtxView {
            ctx,
            table: &mut self.table,
        }
    }
}

/// Caps linear memory and tables.
pub struct Limiter {
    memory_bytes: usize,
    /// The largest linear memory granted so far.
    peak_bytes: usize,
}

/// Table elements one instance may have (function tables of Rust guests are small).
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl Limiter {
    fn new(limits: &Limits) -> Limiter {
        Limiter {
            memory_bytes: limits.memory_bytes as usize,
            peak_bytes: 0,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > self.memory_bytes {
            return Err(wasmtime::Error::new(HostLimit::Memory {
                limit_bytes: self.memory_bytes as u64,
            }));
        }
        self.peak_bytes = self.peak_bytes.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

impl types::Host for HostState {}

/// How the SDK's panic hook starts the `log` line it writes on a rule with no stderr (built
/// for wasm32-unknown-unknown): the text of Rust's own panic report.
const PANIC_REPORT: &str = "panicked at ";

impl host::Host for HostState {
    fn log(&mut self, level: host::Level, message: String) -> Result<()> {
        if matches!(level, host::Level::Error) && message.starts_with(PANIC_REPORT) {
            // Where a WASI rule's panic report goes: the capped stderr the failure is read from.
            return self
                .stderr
                .append(format!("{message}\n").as_bytes())
                .map_err(wasmtime::Error::new);
        }
        if message.len() > self.log_budget {
            self.logs_dropped += 1;
            return Ok(());
        }
        self.log_budget -= message.len();
        self.logs.push(LogLine {
            level: level_name(level),
            message,
        });
        Ok(())
    }

    fn config(&mut self) -> Result<String> {
        Ok(self.config_json.to_string())
    }

    fn kv_get(&mut self, key: String) -> Result<Option<Vec<u8>>> {
        check_kv_key(&key)?;
        Ok(self.kv.get(&key))
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_seconds: Option<u64>) -> Result<()> {
        check_kv_key(&key)?;
        if value.len() > MAX_KV_VALUE {
            wasmtime::bail!(
                "kv value for `{key}` is {} bytes; the cap is {MAX_KV_VALUE}",
                value.len()
            );
        }
        self.kv
            .set(key, value, ttl_seconds)
            .map_err(|e| wasmtime::format_err!("{e}"))
    }

    fn kv_delete(&mut self, key: String) -> Result<()> {
        check_kv_key(&key)?;
        self.kv
            .delete(key)
            .map_err(|e| wasmtime::format_err!("{e}"))
    }
}

fn check_kv_key(key: &str) -> Result<()> {
    if key.is_empty() || key.len() > MAX_KV_KEY {
        wasmtime::bail!("kv key must be 1 to {MAX_KV_KEY} bytes, got {}", key.len());
    }
    Ok(())
}

fn level_name(level: host::Level) -> &'static str {
    match level {
        host::Level::Trace => "trace",
        host::Level::Debug => "debug",
        host::Level::Info => "info",
        host::Level::Warn => "warn",
        host::Level::Error => "error",
    }
}

impl directory::Host for HostState {
    fn user_by_id(&mut self, id: i64) -> Result<Option<types::User>> {
        Ok(self.directory.user_by_id(id).map(convert::dir_user))
    }

    fn user_by_name(&mut self, name: String) -> Result<Option<types::User>> {
        Ok(self.directory.user_by_name(&name).map(convert::dir_user))
    }

    fn group_by_id(&mut self, id: i64) -> Result<Option<types::Group>> {
        Ok(self.directory.group_by_id(id).map(convert::dir_group))
    }

    fn group_by_name(&mut self, name: String) -> Result<Option<types::Group>> {
        Ok(self.directory.group_by_name(&name).map(convert::dir_group))
    }

    fn group_members(&mut self, name: String) -> Result<Vec<types::Member>> {
        let members = self.directory.members(&name);
        Ok(members
            .into_iter()
            .map(|(user, owner)| types::Member {
                user: convert::dir_user(user),
                owner,
            })
            .collect())
    }

    fn groups_of(&mut self, user_id: i64) -> Result<Vec<types::Group>> {
        let groups = self.directory.groups_of(user_id);
        Ok(groups.into_iter().map(convert::dir_group).collect())
    }

    fn admins(&mut self) -> Result<Vec<types::User>> {
        Ok(self
            .directory
            .admins()
            .into_iter()
            .map(convert::dir_user)
            .collect())
    }

    fn active_users(&mut self) -> Result<Vec<types::User>> {
        let users = self.directory.active_users();
        Ok(users.into_iter().map(convert::dir_user).collect())
    }

    fn all_users(&mut self) -> Result<Vec<types::User>> {
        Ok(self
            .directory
            .users()
            .iter()
            .map(convert::dir_user)
            .collect())
    }
}
