//! The scalar check behind every validated value, run inside the deserializer so errors keep their line.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserializer, Unexpected, Visitor};

/// A YAML scalar as seen by [`Check`].
#[derive(Clone, Copy)]
pub(super) enum Scalar<'a> {
    Int(u64),
    Neg(i64),
    Str(&'a str),
}

impl Scalar<'_> {
    fn unexpected(&self) -> Unexpected<'_> {
        match *self {
            Scalar::Int(n) => Unexpected::Unsigned(n),
            Scalar::Neg(n) => Unexpected::Signed(n),
            Scalar::Str(s) => Unexpected::Str(s),
        }
    }
}

/// A visitor that accepts a scalar when `check` returns `Ok`. On `Err(reason)` it fails with
/// "invalid value: …, expected …" (plus the reason in parentheses when not empty).
struct Check<T, F> {
    expected: String,
    check: F,
    value: PhantomData<T>,
}

/// Deserialize one scalar through `check`; maps and lists fail with "invalid type".
pub(super) fn check_scalar<'de, D, T, F>(
    d: D,
    expected: impl Into<String>,
    check: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(Scalar<'_>) -> Result<T, String>,
{
    d.deserialize_any(Check::new(expected, check))
}

/// Deserialize one scalar as text (a plain `2024` is the text "2024") through `check`.
pub(super) fn check_text<'de, D, T, F>(
    d: D,
    expected: impl Into<String>,
    check: F,
) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    F: Fn(&str) -> Result<T, String>,
{
    let check = |scalar: Scalar<'_>| match scalar {
        Scalar::Str(text) => check(text),
        _ => rejected(),
    };
    d.deserialize_str(Check::new(expected, check))
}

impl<T, F: Fn(Scalar<'_>) -> Result<T, String>> Check<T, F> {
    fn new(expected: impl Into<String>, check: F) -> Self {
        Check {
            expected: expected.into(),
            check,
            value: PhantomData,
        }
    }

    fn finish<E: de::Error>(self, scalar: Scalar<'_>) -> Result<T, E> {
        (self.check)(scalar).map_err(|reason| {
            let reason = if reason.is_empty() {
                reason
            } else {
                format!(" ({reason})")
            };
            let found = scalar.unexpected();
            E::custom(format_args!(
                "invalid value: {found}, expected {}{reason}",
                self.expected
            ))
        })
    }
}

impl<'de, T, F: Fn(Scalar<'_>) -> Result<T, String>> Visitor<'de> for Check<T, F> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.expected)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<T, E> {
        self.finish(Scalar::Int(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<T, E> {
        self.finish(u64::try_from(v).map_or(Scalar::Neg(v), Scalar::Int))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.finish(Scalar::Str(v))
    }
}

/// No reason beyond "expected …".
pub(super) fn rejected<T>() -> Result<T, String> {
    Err(String::new())
}

/// `Option::ok_or(String::new())` for the checks above.
pub(super) trait OkOrDefault<T> {
    fn ok_or_default(self) -> Result<T, String>;
}

impl<T> OkOrDefault<T> for Option<T> {
    fn ok_or_default(self) -> Result<T, String> {
        self.ok_or_else(String::new)
    }
}
