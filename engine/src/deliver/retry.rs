//! Retry policy: when a failed delivery is tried again, and when it becomes a dead letter.
//!
//! Modelled on Postfix: the next try comes after the message's age, clamped to
//! [min, max] (300 s and 4000 s by default), plus random jitter so a long outage
//! does not come back as one flood; after the maximum lifetime (5 days) the
//! message is a dead letter. A permanent failure is a dead letter at once.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use super::Class;
use crate::config::DeliveryConfig;
use crate::store::RowState;

/// The knobs of the policy.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Policy {
    pub min_backoff: Duration,
    pub max_backoff: Duration,
    pub max_lifetime: Duration,
    /// Up to this fraction of the delay is added at random.
    pub jitter: f64,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            min_backoff: Duration::from_secs(300),
            max_backoff: Duration::from_secs(4000),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            jitter: 0.1,
        }
    }
}

impl From<&DeliveryConfig> for Policy {
    fn from(d: &DeliveryConfig) -> Self {
        Policy {
            min_backoff: d.min_backoff,
            max_backoff: d.max_backoff,
            max_lifetime: d.max_lifetime,
            jitter: f64::from(d.jitter_percent) / 100.0,
        }
    }
}

/// What happens to a row after a failed attempt.
#[derive(Clone, Debug, PartialEq)]
pub enum Next {
    RetryAt(DateTime<Utc>),
    Dead(String),
}

/// A row's state after an attempt: sent, dead or queued (with when).
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub state: RowState,
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why a row became dead when the attempt itself does not say (the lifetime ran out).
    pub note: Option<String>,
}

impl Policy {
    /// The row's state after an attempt of class `class`.
    pub fn decide(
        &self,
        class: Class,
        queued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        seed: u64,
    ) -> Decision {
        let decision = |state, next_attempt_at, note| Decision {
            state,
            next_attempt_at,
            note,
        };
        match class {
            Class::Sent => decision(RowState::Sent, None, None),
            Class::Permanent => decision(RowState::Dead, None, None),
            _ => match self.after_failure(class, queued_at, now, seed) {
                Next::RetryAt(at) => decision(RowState::Queued, Some(at), None),
                Next::Dead(why) => decision(RowState::Dead, None, Some(why)),
            },
        }
    }

    /// Decide the row's fate. `seed` makes the jitter reproducible (row id and attempt).
    pub fn after_failure(
        &self,
        class: Class,
        queued_at: DateTime<Utc>,
        now: DateTime<Utc>,
        seed: u64,
    ) -> Next {
        if class == Class::Permanent {
            return Next::Dead("permanent failure".into());
        }
        let age = (now - queued_at).to_std().unwrap_or_default();
        if age >= self.max_lifetime {
            return Next::Dead(format!(
                "gave up after {} in the queue (delivery.max_lifetime)",
                humantime::format_duration(self.max_lifetime)
            ));
        }
        let base = match class {
            Class::Config => self.max_backoff,
            _ => age.clamp(self.min_backoff, self.max_backoff),
        };
        let delay = base + self.jitter_for(base, seed);
        // A delay past the calendar's end (an absurd max_backoff) waits until that end.
        let at = chrono::Duration::from_std(delay)
            .ok()
            .and_then(|delay| now.checked_add_signed(delay))
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        Next::RetryAt(at)
    }

    fn jitter_for(&self, base: Duration, seed: u64) -> Duration {
        if self.jitter <= 0.0 {
            return Duration::ZERO;
        }
        let fraction: f64 = StdRng::seed_from_u64(seed).random_range(0.0..self.jitter);
        base.mul_f64(fraction)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn no_jitter() -> Policy {
        Policy {
            jitter: 0.0,
            ..Policy::default()
        }
    }

    #[test]
    fn a_backoff_past_the_calendar_waits_until_its_end() {
        let p = Policy {
            max_backoff: Duration::MAX,
            ..no_jitter()
        };
        assert_eq!(
            p.after_failure(Class::Config, at(0), at(10), 1),
            Next::RetryAt(DateTime::<Utc>::MAX_UTC)
        );
    }

    #[test]
    fn backoff_follows_the_age_clamped_to_min_and_max() {
        let p = no_jitter();
        assert_eq!(
            p.after_failure(Class::Transient, at(0), at(10), 1),
            Next::RetryAt(at(10 + 300))
        );
        assert_eq!(
            p.after_failure(Class::Transient, at(0), at(1000), 1),
            Next::RetryAt(at(2000))
        );
        assert_eq!(
            p.after_failure(Class::Ambiguous, at(0), at(9000), 1),
            Next::RetryAt(at(13000))
        );
    }

    #[test]
    fn permanent_is_dead_at_once_and_old_messages_expire() {
        let p = no_jitter();
        assert_eq!(
            p.after_failure(Class::Permanent, at(0), at(1), 1),
            Next::Dead("permanent failure".into())
        );
        let five_days = 5 * 24 * 3600;
        assert!(matches!(
            p.after_failure(Class::Transient, at(0), at(five_days), 1),
            Next::Dead(_)
        ));
    }

    #[test]
    fn config_errors_wait_the_longest_interval() {
        assert_eq!(
            no_jitter().after_failure(Class::Config, at(0), at(5), 1),
            Next::RetryAt(at(4005))
        );
    }

    #[test]
    fn jitter_stays_within_its_fraction_and_varies_by_seed() {
        let p = Policy::default();
        let times: Vec<_> = (0..20)
            .map(
                |seed| match p.after_failure(Class::Transient, at(0), at(0), seed) {
                    Next::RetryAt(t) => (t - at(0)).num_milliseconds(),
                    Next::Dead(_) => unreachable!(),
                },
            )
            .collect();
        assert!(
            times.iter().all(|ms| (300_000..330_000).contains(ms)),
            "{times:?}"
        );
        assert!(
            times.iter().any(|ms| *ms != times[0]),
            "jitter must vary: {times:?}"
        );
    }
}
