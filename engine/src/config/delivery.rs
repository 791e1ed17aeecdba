//! The `delivery` section: retry backoff, queue lifetime, leases and polling of the delivery workers.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::DeliveryConfig;
use super::scalar::{Scalar, check_scalar, rejected};

/// The longest interval any delivery setting takes.
const MAX_INTERVAL: Duration = Duration::from_secs(60 * 24 * 3600);

impl Default for DeliveryConfig {
    /// Postfix's: retry after the message's age clamped to [300 s, 4000 s], give up after 5 days.
    fn default() -> Self {
        DeliveryConfig {
            min_backoff: Duration::from_secs(300),
            max_backoff: Duration::from_secs(4000),
            max_lifetime: Duration::from_secs(5 * 24 * 3600),
            jitter_percent: 10,
            lease: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDelivery {
    min_backoff: Option<Interval>,
    max_backoff: Option<Interval>,
    max_lifetime: Option<Interval>,
    jitter_percent: Option<Percent>,
    lease: Option<Interval>,
    poll_interval: Option<Interval>,
}

impl RawDelivery {
    pub(super) fn resolve(self) -> DeliveryConfig {
        let d = DeliveryConfig::default();
        let pick = |value: Option<Interval>, default: Duration| value.map_or(default, |i| i.0);
        DeliveryConfig {
            min_backoff: pick(self.min_backoff, d.min_backoff),
            max_backoff: pick(self.max_backoff, d.max_backoff),
            max_lifetime: pick(self.max_lifetime, d.max_lifetime),
            jitter_percent: self.jitter_percent.map_or(d.jitter_percent, |p| p.0),
            lease: pick(self.lease, d.lease),
            poll_interval: pick(self.poll_interval, d.poll_interval),
        }
    }
}

/// A duration with a unit, above 0 and at most 60 days.
pub(super) struct Interval(pub(super) Duration);

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a duration above 0 and at most 60d, e.g. 5m", |s| {
            let time = match s {
                Scalar::Str(text) => {
                    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?
                }
                Scalar::Int(_) => return Err("a unit is needed, e.g. 300s".to_owned()),
                Scalar::Neg(_) => return rejected(),
            };
            if time.is_zero() || time > MAX_INTERVAL {
                rejected()
            } else {
                Ok(Interval(time))
            }
        })
    }
}

/// A whole percentage from 0 to 100.
struct Percent(u8);

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(
            d,
            "a whole percentage from 0 to 100, e.g. 10",
            |s| match s {
                Scalar::Int(n) if n <= 100 => Ok(Percent(n as u8)),
                _ => rejected(),
            },
        )
    }
}
