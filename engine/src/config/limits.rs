//! The `limits` keys as written: each value checked and bounded, merged over the defaults.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

use super::Limits;
use super::scalar::{OkOrDefault, Scalar, check_scalar, rejected};
use super::units::{GIB, KIB, MIB, parse_size, show_size};

/// Limits as written: each key optional, merged over the defaults.
#[derive(Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsPatch {
    fuel: Option<Fuel>,
    memory: Option<MemorySize>,
    wall_time: Option<WallTime>,
    stack: Option<StackSize>,
    max_messages: Option<Count>,
    max_output: Option<OutputSize>,
    max_recipients: Option<Count>,
    max_log: Option<LogSize>,
}

impl LimitsPatch {
    /// These overrides applied over `base`.
    pub(super) fn over(self, base: Limits) -> Limits {
        Limits {
            fuel: self.fuel.map_or(base.fuel, |v| v.0),
            memory_bytes: self.memory.map_or(base.memory_bytes, |v| v.0),
            wall_time: self.wall_time.map_or(base.wall_time, |v| v.0),
            stack_bytes: self.stack.map_or(base.stack_bytes, |v| v.0),
            max_messages: self.max_messages.map_or(base.max_messages, |v| v.0),
            max_output_bytes: self.max_output.map_or(base.max_output_bytes, |v| v.0),
            max_recipients: self.max_recipients.map_or(base.max_recipients, |v| v.0),
            max_log_bytes: self.max_log.map_or(base.max_log_bytes, |v| v.0),
        }
    }
}

/// `fuel`: above 0.
#[derive(Clone, Copy)]
struct Fuel(u64);

impl<'de> Deserialize<'de> for Fuel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a fuel budget above 0", |s| match s {
            Scalar::Int(n) if n > 0 => Ok(Fuel(n)),
            _ => rejected(),
        })
    }
}

/// A count above 0 that fits a u32.
#[derive(Clone, Copy)]
struct Count(u32);

impl<'de> Deserialize<'de> for Count {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(
            d,
            format!("a whole number from 1 to {}", u32::MAX),
            |s| match s {
                Scalar::Int(n) => u32::try_from(n)
                    .ok()
                    .filter(|&n| n > 0)
                    .map(Count)
                    .ok_or_default(),
                _ => rejected(),
            },
        )
    }
}

/// `ingest.max_items`: a count from 16 to 1,000,000.
#[derive(Clone, Copy)]
pub(super) struct ItemCount(u64);

impl ItemCount {
    pub(super) fn count(self) -> u64 {
        self.0
    }
}

impl<'de> Deserialize<'de> for ItemCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a whole number from 16 to 1000000", |s| match s {
            Scalar::Int(n) if (16..=1_000_000).contains(&n) => Ok(ItemCount(n)),
            _ => rejected(),
        })
    }
}

/// `wall_time`: a humantime duration above 0 and at most 60s.
#[derive(Clone, Copy)]
struct WallTime(Duration);

const MAX_WALL_TIME: Duration = Duration::from_secs(60);

impl<'de> Deserialize<'de> for WallTime {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, "a duration above 0 and at most 60s", |s| {
            let time = match s {
                Scalar::Str(text) => {
                    humantime::parse_duration(text.trim()).map_err(|e| e.to_string())?
                }
                Scalar::Int(_) => return Err("a unit is needed, e.g. 100ms".to_owned()),
                Scalar::Neg(_) => return rejected(),
            };
            let in_range = !time.is_zero() && time <= MAX_WALL_TIME;
            if in_range {
                Ok(WallTime(time))
            } else {
                rejected()
            }
        })
    }
}

/// A byte size from `MIN` to `MAX`: a plain integer, or a whole number with a unit.
#[derive(Clone, Copy)]
pub(super) struct Size<const MIN: u64, const MAX: u64>(u64);

pub(super) type MemorySize = Size<{ 64 * KIB }, { 4 * GIB }>;
pub(super) type StackSize = Size<{ 64 * KIB }, { 64 * MIB }>;
pub(super) type OutputSize = Size<KIB, GIB>;
pub(super) type LogSize = Size<0, GIB>;
pub(super) type EventSize = Size<KIB, { 64 * MIB }>;
pub(super) type StringSize = Size<64, { 64 * MIB }>;

impl<const MIN: u64, const MAX: u64> Size<MIN, MAX> {
    /// The size in bytes.
    pub(super) fn bytes(self) -> u64 {
        self.0
    }

    fn range() -> String {
        format!("from {} to {}", show_size(MIN), show_size(MAX))
    }

    /// The fix hint for a key of this size type.
    pub(super) fn hint(example: &str) -> String {
        format!(
            "write a size {} as bytes or with a unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. {example}",
            Self::range()
        )
    }
}

impl<'de, const MIN: u64, const MAX: u64> Deserialize<'de> for Size<MIN, MAX> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        check_scalar(d, format!("a size {}", Self::range()), |s| {
            let bytes = match s {
                Scalar::Int(n) => n,
                Scalar::Str(text) => parse_size(text).ok_or_default()?,
                Scalar::Neg(_) => return rejected(),
            };
            if (MIN..=MAX).contains(&bytes) {
                Ok(Size(bytes))
            } else {
                rejected()
            }
        })
    }
}
