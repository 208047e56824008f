//! CPU time and memory of watched processes, from `/proc` (Linux).
//!
//! CPU is `utime + stime` of `/proc/PID/stat` (every thread of the process, in clock ticks,
//! converted with `getconf CLK_TCK`, 100 when that fails), read before and after the load.
//! Memory is the peak of `VmRSS` sampled every [`SAMPLE_EVERY`] during the load, plus `VmHWM`
//! (the kernel's own high-water mark over the process' life) at the end.

use std::time::Duration;

/// How often `VmRSS` is sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn clock_ticks() -> u64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .filter(|&t| t > 0)
        .unwrap_or(100)
}

/// `utime + stime` of a process in clock ticks; `pid` 0 means this process.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let path = if pid == 0 {
        "/proc/self/stat".to_owned()
    } else {
        format!("/proc/{pid}/stat")
    };
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let after = &stat[stat.rfind(')')? + 1..];
    let mut fields = after.split_whitespace();
    // After ')': field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// A `/proc/PID/status` value in KiB (`VmRSS`, `VmHWM`).
pub fn status_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status
        .lines()
        .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process() {
        let pid = std::process::id();
        // Burn a little CPU so the counter is not trivially zero on a fresh process.
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert_ne!(std::hint::black_box(x), 1);
        assert!(cpu_ticks(0).unwrap() > 0);
        assert!(cpu_ticks(pid).is_some());
        assert!(status_kib(pid, "VmRSS").unwrap() > 0);
        assert!(status_kib(pid, "VmHWM").unwrap() >= status_kib(pid, "VmRSS").unwrap() / 2);
        assert!(status_kib(pid, "VmNope").is_none());
        assert!(clock_ticks() > 0);
    }
}
