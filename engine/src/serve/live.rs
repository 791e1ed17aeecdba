//! The rule set in force (config, directory, rules): read by every stage, swapped whole at a reload.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use crate::config::Config;
use crate::evaluate::Evaluator;

/// One complete, compiled set: the config it came from and its evaluator (directory and rules).
pub struct RuleSet {
    pub config: Arc<Config>,
    pub evaluator: Arc<Evaluator>,
}

/// The set in force; a reload replaces it in one step, so a reader sees the old or the new set whole.
pub struct Live {
    current: RwLock<Arc<RuleSet>>,
    generation: AtomicU64,
}

impl Live {
    pub fn new(set: RuleSet) -> Live {
        Live {
            current: RwLock::new(Arc::new(set)),
            generation: AtomicU64::new(0),
        }
    }

    /// The set in force now.
    pub fn current(&self) -> Arc<RuleSet> {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Put `set` in force; the evaluation stage takes it before its next event.
    pub fn swap(&self, set: RuleSet) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(set);
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Bumped at every swap, so a stage can tell that the set it holds is no longer in force.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}
