//! CPU time spent by processes, from `/proc` and `getrusage`: where a bench's cores went.

use std::time::Duration;

/// User plus system CPU time of a running process (from `/proc/<pid>/stat`, in clock ticks).
pub fn of_process(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
    let field = |n: usize| -> u64 {
        // utime and stime are fields 14 and 15 of the line; `after` starts at field 3.
        after
            .split(' ')
            .nth(n - 3)
            .and_then(|f| f.parse().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Duration::from_micros((field(14) + field(15)) * 1_000_000 / ticks)
}

/// User plus system CPU time of every child this process has waited for so far.
pub fn of_waited_children() -> Duration {
    // SAFETY: getrusage only writes the struct we hand it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: usage is valid for writes.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// The cores this machine has.
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The CPU time each process spent on one run, and the run's wall time.
pub struct Split {
    pub source: Duration,
    pub herald: Duration,
    pub sink: Duration,
    pub wall: Duration,
}

impl Split {
    fn total(&self) -> Duration {
        self.source + self.herald + self.sink
    }

    /// How many cores the run kept busy, on average.
    fn cores_busy(&self) -> f64 {
        self.total().as_secs_f64() / self.wall.as_secs_f64()
    }

    /// One line: µs of CPU per message of each process, directly and through Herald, and
    /// the rate the machine's cores would allow through Herald, all of them busy, against
    /// the direct rate.
    pub fn compare(direct: &Split, through: &Split, count: usize) -> String {
        let per = |time: Duration| time.as_secs_f64() * 1e6 / count as f64;
        let cores = cores();
        let ceiling = cores as f64 * count as f64 / through.total().as_secs_f64();
        let direct_rate = count as f64 / direct.wall.as_secs_f64();
        format!(
            "direct {:.0} + {:.0} = {:.0} µs ({:.2} cores)   through herald {:.0} + {:.0} + {:.0} \
             = {:.0} µs ({:.2} cores)   all {cores} cores busy: {ceiling:.0}/s, {:.0}% of direct",
            per(direct.source),
            per(direct.sink),
            per(direct.total()),
            direct.cores_busy(),
            per(through.source),
            per(through.herald),
            per(through.sink),
            per(through.total()),
            through.cores_busy(),
            100.0 * ceiling / direct_rate,
        )
    }
}
