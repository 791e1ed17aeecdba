//! Timing for the benches: per-call wall times after a warm-up, sorted, and the usual percentiles.

use std::time::{Duration, Instant};

/// Call `f` `warmup` times, then `iterations` times; the time of each of those calls, sorted.
pub fn sorted_times(warmup: usize, iterations: usize, mut f: impl FnMut()) -> Vec<Duration> {
    for _ in 0..warmup {
        f();
    }
    let mut times: Vec<Duration> = (0..iterations)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .collect();
    times.sort();
    times
}

/// The `p`th percentile (0–100) of sorted `times`.
pub fn percentile(times: &[Duration], p: usize) -> Duration {
    times[(times.len() * p / 100).min(times.len() - 1)]
}
