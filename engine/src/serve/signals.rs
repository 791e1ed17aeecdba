//! The signals `herald serve` answers, caught from its first moment so none arrives unhandled.
//!
//! They are installed before the config is read and the rules compile: a SIGHUP sent
//! while Herald starts is then a reload once it runs (not the default action, which
//! would kill it), and a SIGTERM sent then stops it as soon as it listens, exit 0.

use anyhow::Context;
use tokio::signal::unix::{Signal, SignalKind, signal};

/// SIGHUP (reload) and SIGTERM/SIGINT (stop), caught on the service's runtime.
pub struct Signals {
    pub hangup: Signal,
    term: Signal,
    int: Signal,
}

impl Signals {
    /// Catch the three signals now; they are queued until the service reads them.
    pub fn install(runtime: &tokio::runtime::Runtime) -> anyhow::Result<Signals> {
        let _inside = runtime.enter();
        let catch = |kind: SignalKind, name: &str| {
            signal(kind).with_context(|| format!("cannot catch {name}"))
        };
        Ok(Signals {
            hangup: catch(SignalKind::hangup(), "SIGHUP")?,
            term: catch(SignalKind::terminate(), "SIGTERM")?,
            int: catch(SignalKind::interrupt(), "SIGINT")?,
        })
    }

    /// Split off the stop half: it resolves at the first SIGTERM or SIGINT.
    pub fn split(self) -> (Signal, Stop) {
        (
            self.hangup,
            Stop {
                term: self.term,
                int: self.int,
            },
        )
    }
}

/// SIGTERM and SIGINT.
pub struct Stop {
    term: Signal,
    int: Signal,
}

impl Stop {
    /// Resolves at the first SIGTERM or SIGINT.
    pub async fn received(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
