//! Why one rule invocation failed, with a named reason an admin can act on.

use std::fmt;
use std::time::Duration;

/// A failed invocation. It fails that (event, rule) only; nothing is queued.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// The module could not be instantiated (missing import, pool exhausted…).
    Instantiate { message: String },
    /// The fuel budget ran out (a loop, or simply too much work).
    OutOfFuel { fuel: u64 },
    /// The wall-time deadline passed (epoch interruption).
    Deadline { wall_time: Duration },
    /// The rule asked for more linear memory than its limit.
    Memory { limit_bytes: u64 },
    /// The wasm stack overflowed (unbounded recursion).
    StackOverflow { stack_bytes: u64 },
    /// The rule panicked; the message is what it wrote to stderr.
    Panic { message: String },
    /// Any other trap.
    Trap { message: String },
    /// The rule returned an error.
    RuleError { message: String },
    /// The output broke a cap: too many messages, recipients or bytes.
    OutputCap { message: String },
    /// A subject or header that could inject headers, or a forbidden header.
    InvalidHeader { message: String },
    /// An address that is not a valid email address.
    InvalidAddress { message: String },
}

impl Failure {
    /// A short stable code, for the store, metrics and `--json`.
    pub fn code(&self) -> &'static str {
        match self {
            Failure::Instantiate { .. } => "instantiate",
            Failure::OutOfFuel { .. } => "out-of-fuel",
            Failure::Deadline { .. } => "deadline",
            Failure::Memory { .. } => "memory",
            Failure::StackOverflow { .. } => "stack-overflow",
            Failure::Panic { .. } => "panic",
            Failure::Trap { .. } => "trap",
            Failure::RuleError { .. } => "rule-error",
            Failure::OutputCap { .. } => "output-cap",
            Failure::InvalidHeader { .. } => "invalid-header",
            Failure::InvalidAddress { .. } => "invalid-address",
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Instantiate { message } => write!(f, "cannot instantiate: {message}"),
            Failure::OutOfFuel { fuel } => write!(
                f,
                "out of fuel: spent its budget of {fuel} units (raise limits.fuel if the work is legitimate)"
            ),
            Failure::Deadline { wall_time } => write!(
                f,
                "deadline: still running after {} ms of wall time (limits.wall_time)",
                wall_time.as_millis()
            ),
            Failure::Memory { limit_bytes } => write!(
                f,
                "memory: tried to grow past its limit of {} KiB (limits.memory)",
                limit_bytes / 1024
            ),
            Failure::StackOverflow { stack_bytes } => write!(
                f,
                "stack overflow: recursion past the {} KiB stack (limits.stack)",
                stack_bytes / 1024
            ),
            Failure::Panic { message } => write!(f, "panic: {message}"),
            Failure::Trap { message } => write!(f, "trap: {message}"),
            Failure::RuleError { message } => write!(f, "rule error: {message}"),
            Failure::OutputCap { message } => write!(f, "output cap: {message}"),
            Failure::InvalidHeader { message } => write!(f, "invalid header: {message}"),
            Failure::InvalidAddress { message } => write!(f, "invalid address: {message}"),
        }
    }
}
