//! Lease owners: which process holds an outbox row, and whether that process is provably gone.
//!
//! An owner is `host:pid:start`, where `start` is the process's start time in clock ticks
//! since boot (`/proc/<pid>/stat`, field 22), so a pid reused by a later process is not
//! mistaken for the owner. Only owners on this host can be judged; any other owner is
//! assumed alive and its lease runs out as usual.

use std::sync::OnceLock;

/// One process that can hold leases.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner {
    pub host: String,
    pub pid: u32,
    /// The process start time (clock ticks since boot); 0 when unknown.
    pub start: u64,
}

impl Owner {
    /// This process.
    pub fn this() -> &'static Owner {
        static THIS: OnceLock<Owner> = OnceLock::new();
        THIS.get_or_init(|| {
            let pid = std::process::id();
            Owner {
                host: host_name(),
                pid,
                start: start_time(pid).unwrap_or(0),
            }
        })
    }

    /// Read an owner back from its stored text; None when it is not one of ours.
    pub fn parse(text: &str) -> Option<Owner> {
        let mut parts = text.rsplitn(3, ':');
        let start = parts.next()?.parse().ok()?;
        let pid = parts.next()?.parse().ok()?;
        let host = parts.next()?.to_owned();
        Some(Owner { host, pid, start })
    }

    /// True only when this owner ran on this host and its process is gone (or the pid now
    /// belongs to a process that started at another time).
    pub fn provably_dead(&self) -> bool {
        let this = Owner::this();
        if self == this || self.host != this.host || self.pid == 0 {
            return false;
        }
        if !process_exists(self.pid) {
            return true;
        }
        match start_time(self.pid) {
            Some(start) => self.start != 0 && start != self.start,
            None => false,
        }
    }
}

impl std::fmt::Display for Owner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.host, self.pid, self.start)
    }
}

/// kill(pid, 0): ESRCH means no such process; anything else (even EPERM) means it exists.
fn process_exists(pid: u32) -> bool {
    let Ok(pid) = libc::pid_t::try_from(pid) else {
        return false;
    };
    // SAFETY: signal 0 only checks whether the process exists; nothing is sent.
    let result = unsafe { libc::kill(pid, 0) };
    result == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// Field 22 of `/proc/<pid>/stat`: the start time in clock ticks since boot.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count after it.
    let after_name = &stat[stat.rfind(')')? + 1..];
    after_name.split_whitespace().nth(19)?.parse().ok()
}

fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
    let result = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if result != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).replace(':', "_")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_round_trips() {
        let this = Owner::this();
        assert!(this.start > 0, "start time read from /proc");
        assert_eq!(Owner::parse(&this.to_string()).as_ref(), Some(this));
        assert!(!this.provably_dead());
    }

    #[test]
    fn a_reaped_child_is_dead_and_a_reused_pid_is_told_apart() {
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        let gone = Owner {
            pid,
            ..Owner::this().clone()
        };
        assert!(gone.provably_dead());
        let impostor = Owner {
            start: Owner::this().start + 1,
            ..Owner::this().clone()
        };
        assert!(impostor.provably_dead(), "same pid, another start time");
    }

    #[test]
    fn owners_on_other_hosts_are_never_judged() {
        let elsewhere = Owner {
            host: "elsewhere.example".into(),
            pid: 999_999_999,
            start: 1,
        };
        assert!(!elsewhere.provably_dead());
        assert_eq!(Owner::parse("garbage"), None);
    }
}
