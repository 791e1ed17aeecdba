//! Hot reload (SIGHUP, `POST /v1/admin/reload`): build the new config, directory and rules whole, then swap.

use std::sync::{Arc, Mutex, PoisonError};

use super::live::{Live, RuleSet};

/// Loads and compiles a complete rule set from the config on disk.
pub type Loader = Box<dyn Fn() -> anyhow::Result<RuleSet> + Send + Sync>;

/// Reloads one at a time; a set that fails to load never replaces the one in force.
pub struct Reloader {
    live: Arc<Live>,
    load: Loader,
    one_at_a_time: Mutex<()>,
}

/// What a reload put in force.
#[derive(Debug, serde::Serialize)]
pub struct Reloaded {
    pub rules: Vec<String>,
    pub generation: u64,
    /// Sections that changed but are only read at start (`http`, `store`, `mail`, …).
    pub restart_needed: Vec<&'static str>,
}

impl Reloader {
    pub fn new(live: Arc<Live>, load: Loader) -> Reloader {
        Reloader {
            live,
            load,
            one_at_a_time: Mutex::new(()),
        }
    }

    /// Load and compile everything first; only a complete set is swapped in. Blocking (it
    /// compiles wasm): call it off the tokio workers. On error the old set stays in force.
    pub fn reload(&self) -> anyhow::Result<Reloaded> {
        let _one = self
            .one_at_a_time
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let set = (self.load)().inspect_err(|err| {
            tracing::error!("reload failed; the rules in force are unchanged: {err:#}");
        })?;
        let restart_needed = restart_needed(&self.live.current(), &set);
        let rules = set
            .evaluator
            .rules()
            .iter()
            .map(|r| r.name.clone())
            .collect();
        self.live.swap(set);
        let generation = self.live.generation();
        tracing::info!(
            generation,
            ?rules,
            "reloaded the config, directory and rules"
        );
        for section in &restart_needed {
            tracing::warn!("reload: `{section}` changed; it takes effect at the next restart");
        }
        Ok(Reloaded {
            rules,
            generation,
            restart_needed,
        })
    }
}

/// The sections read only at start that differ between the old set and the new one.
fn restart_needed(old: &RuleSet, new: &RuleSet) -> Vec<&'static str> {
    let (a, b) = (&old.config, &new.config);
    let mut changed = Vec::new();
    let mut check = |name, differs: bool| {
        if differs {
            changed.push(name);
        }
    };
    check("http", a.http != b.http);
    check("store", a.store != b.store);
    check("mail", a.mail != b.mail);
    check("delivery", a.delivery != b.delivery);
    check("ingest", a.ingest != b.ingest);
    check("smtp_listener", a.smtp_listener != b.smtp_listener);
    changed
}

/// Reload at every SIGHUP until the process stops.
/// (`hangup` was caught from the start, so a SIGHUP sent while Herald started is a reload now.)
pub async fn on_sighup(mut hangup: tokio::signal::unix::Signal, reloader: Arc<Reloader>) {
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP: reloading");
        let reloader = reloader.clone();
        // The outcome is logged by `reload`.
        let _ = tokio::task::spawn_blocking(move || reloader.reload()).await;
    }
}
