//! Which parts of `herald serve` hold their starting position: what `GET /readyz` waits for.
//!
//! Each long-running source takes a [`Part`] before it starts and marks it ready once
//! nothing committed from then on can be missed (the scheduler after its catch-up, a
//! database cursor once it holds its start). `/readyz` answers 200 only when every part
//! is ready and the store takes a write.

use std::sync::{Arc, Mutex, PoisonError};

/// Where one part stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum State {
    Starting,
    Ready,
    /// Ready, with something an operator should know (a stale directory snapshot served while
    /// OMERO's database is down); `/readyz` answers 200 and prints it.
    Degraded(String),
    /// It cannot go on for now; the text says why (it keeps trying).
    Failing(String),
}

impl State {
    /// Ready or degraded: what `/readyz` counts as ready.
    pub fn is_ready(&self) -> bool {
        matches!(self, State::Ready | State::Degraded(_))
    }
}

struct Entry {
    name: String,
    state: Mutex<State>,
}

/// The parts of one process; cloned handles share them.
#[derive(Clone, Default)]
pub struct Readiness {
    parts: Arc<Mutex<Vec<Arc<Entry>>>>,
}

/// One part's handle, held by the source it stands for.
#[derive(Clone)]
pub struct Part(Arc<Entry>);

impl Readiness {
    /// Register a part named `name`, starting.
    pub fn part(&self, name: impl Into<String>) -> Part {
        let entry = Arc::new(Entry {
            name: name.into(),
            state: Mutex::new(State::Starting),
        });
        self.lock().push(entry.clone());
        Part(entry)
    }

    /// The parts that are not ready, with where each stands.
    pub fn not_ready(&self) -> Vec<(String, State)> {
        self.lock()
            .iter()
            .map(|entry| (entry.name.clone(), entry.get()))
            .filter(|(_, state)| !state.is_ready())
            .collect()
    }

    /// The parts that are ready but degraded, with why.
    pub fn degraded(&self) -> Vec<(String, String)> {
        self.lock()
            .iter()
            .filter_map(|entry| match entry.get() {
                State::Degraded(why) => Some((entry.name.clone(), why)),
                _ => None,
            })
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Entry>>> {
        self.parts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Entry {
    fn get(&self) -> State {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

impl Part {
    /// It holds its starting position.
    pub fn ready(&self) {
        self.set(State::Ready);
    }

    /// It holds its position but an operator should know `why`.
    pub fn degraded(&self, why: impl Into<String>) {
        self.set(State::Degraded(why.into()));
    }

    /// It cannot go on for now and says why.
    pub fn failing(&self, why: impl Into<String>) {
        self.set(State::Failing(why.into()));
    }

    pub fn state(&self) -> State {
        self.0.get()
    }

    fn set(&self, state: State) {
        *self.0.state.lock().unwrap_or_else(PoisonError::into_inner) = state;
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            State::Starting => f.write_str("starting"),
            State::Ready => f.write_str("ready"),
            State::Degraded(why) => write!(f, "ready, degraded: {why}"),
            State::Failing(why) => write!(f, "failing: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parts_not_ready_are_listed_with_their_state() {
        let readiness = Readiness::default();
        let schedule = readiness.part("schedule");
        let eventlog = readiness.part("omero-eventlog");
        assert_eq!(readiness.not_ready().len(), 2);
        schedule.ready();
        eventlog.failing("connection refused");
        assert_eq!(
            readiness.not_ready(),
            vec![(
                "omero-eventlog".to_string(),
                State::Failing("connection refused".into())
            )]
        );
        eventlog.ready();
        assert!(readiness.not_ready().is_empty());
        eventlog.degraded("stale snapshot");
        assert!(readiness.not_ready().is_empty());
        assert_eq!(
            readiness.degraded(),
            vec![("omero-eventlog".to_string(), "stale snapshot".to_string())]
        );
    }
}
