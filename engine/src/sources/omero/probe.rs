//! The `omero-probe` source: TCP connects to OMERO's router ports; down and up events with hysteresis.
//!
//! A round tries every port; it answers when any port accepts a connection. The server is
//! down after `failures` silent rounds in a row and up again after as many answered rounds in a
//! row, so a flapping port does not flood the admins. The state the probe starts in is learnt
//! the same way without an event (Herald cannot tell a crash it did not see). The state is kept
//! in the store, so a restart does not report the same change twice. A clean shutdown is also
//! in Blitz-0.log: the journal recognises the probe's down event as the same happening.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::config::ProbeConfig;
use crate::event::{self, Event, types};
use crate::sources::Feed;
use crate::sources::readiness::Part;
use crate::store::Store;

/// What the probe believes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seen {
    #[default]
    Unknown,
    Up,
    Down,
}

/// The hysteresis: the state and the rounds in a row that disagree with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hysteresis {
    pub state: Seen,
    /// Rounds in a row whose result differs from `state`.
    pub against: u32,
}

impl Hysteresis {
    /// Record one round; returns the new state when it changed from a known one (an event to send).
    pub fn round(&mut self, answered: bool, needed: u32) -> Option<Seen> {
        let result = if answered { Seen::Up } else { Seen::Down };
        if result == self.state {
            self.against = 0;
            return None;
        }
        self.against += 1;
        if self.against < needed.max(1) {
            return None;
        }
        let was = self.state;
        self.state = result;
        self.against = 0;
        (was != Seen::Unknown).then_some(result)
    }
}

/// One probe.
pub struct Probe {
    pub config: ProbeConfig,
    pub name: String,
    pub feed: Feed,
    pub store: Arc<Mutex<Store>>,
    pub ready: Part,
}

impl Probe {
    /// Probe every `interval` until the process stops.
    pub async fn run(self) {
        let mut seen = self.saved();
        self.ready.ready();
        loop {
            let answered = self.answered().await;
            if let Some(change) = seen.round(answered, self.config.failures) {
                self.journal(change).await;
            }
            self.save(&seen);
            tokio::select! {
                () = tokio::time::sleep(self.config.interval) => {}
                () = self.feed.stopped() => return,
            }
        }
    }

    /// Whether any port accepts a TCP connection within the round's time.
    async fn answered(&self) -> bool {
        let limit =
            (self.config.interval / 2).clamp(Duration::from_millis(100), Duration::from_secs(5));
        for port in &self.config.ports {
            let connect = tokio::net::TcpStream::connect((self.config.host.as_str(), *port));
            if let Ok(Ok(_)) = tokio::time::timeout(limit, connect).await {
                return true;
            }
        }
        false
    }

    async fn journal(&self, change: Seen) {
        let Some(event) = self.event(change) else {
            return;
        };
        let kind = event.kind.clone();
        match self.feed.writer.journal(vec![event]).await {
            Ok(_) => {
                tracing::info!("{}: {kind}", self.name);
                crate::metrics::source_emitted(&self.name, 1);
            }
            Err(err) => {
                crate::metrics::source_error(&self.name);
                tracing::error!("{}: cannot journal {kind}: {err}", self.name);
            }
        }
    }

    fn event(&self, change: Seen) -> Option<Event> {
        let now = Utc::now();
        let (kind, data) = match change {
            Seen::Up => (types::SERVER_UP, json!({"server": self.config.server})),
            Seen::Down => (
                types::SERVER_DOWN,
                json!({"server": self.config.server, "reason": format!(
                    "no answer on {}:{:?} for {} rounds (crash or network)",
                    self.config.host, self.config.ports, self.config.failures
                )}),
            ),
            Seen::Unknown => return None,
        };
        let envelope = json!({
            "specversion": "1.0",
            "id": format!("{kind}@{}", now.to_rfc3339_opts(SecondsFormat::Millis, true)),
            "source": format!("omero-probe://{}", self.config.host),
            "type": kind,
            "time": now.to_rfc3339_opts(SecondsFormat::Millis, true),
            "data": data,
        });
        event::from_json(envelope, now).ok()
    }

    fn saved(&self) -> Hysteresis {
        let store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let saved = store.source_cursor(&self.name).ok().flatten();
        saved
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn save(&self, seen: &Hysteresis) {
        let mut store = self.store.lock().unwrap_or_else(PoisonError::into_inner);
        let text = serde_json::to_string(seen).unwrap_or_default();
        let saved = tokio::task::block_in_place(|| {
            store.save_source_cursor(&self.name, &text, 0, Utc::now())
        });
        if let Err(err) = saved {
            tracing::warn!("{}: cannot save its state: {err}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flapping_port_changes_nothing_and_a_steady_one_changes_once() {
        let mut seen = Hysteresis::default();
        for _ in 0..3 {
            assert_eq!(
                seen.round(true, 3),
                None,
                "learning the first state sends nothing"
            );
        }
        assert_eq!(seen.state, Seen::Up);
        for answered in [false, true, false, false, true] {
            assert_eq!(seen.round(answered, 3), None, "flapping");
        }
        assert_eq!(seen.round(false, 3), None);
        assert_eq!(seen.round(false, 3), None);
        assert_eq!(seen.round(false, 3), Some(Seen::Down));
        assert_eq!(seen.round(false, 3), None, "down once");
        seen.round(true, 3);
        seen.round(true, 3);
        assert_eq!(seen.round(true, 3), Some(Seen::Up));
    }
}
