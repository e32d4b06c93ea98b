//! Process figures from Linux `/proc`: CPU time, resident memory, bytes
//! written to storage, and the open-files limit.

use std::io;

/// Clock ticks per second of `/proc/PID/stat` times.
pub fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions; it only reads a constant.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// utime + stime, in ticks, from the text of `/proc/PID/stat`.
pub fn parse_stat_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) is in parentheses and may contain spaces
    // and parentheses: the fields after it start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ')' come state (field 3) ... utime (14) and stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// Busy ticks of the whole machine (all CPUs: user, nice, system, irq,
/// softirq, steal), from the text of `/proc/stat`.
pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal ...
    let get = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(get(0) + get(1) + get(2) + get(5) + get(6) + get(7))
}

/// CPU seconds the whole machine has spent busy so far (all CPUs).
pub fn machine_busy_seconds() -> io::Result<f64> {
    let stat = std::fs::read_to_string("/proc/stat")?;
    let ticks = parse_machine_busy_ticks(&stat).ok_or_else(|| invalid("busy time", 0))?;
    Ok(ticks as f64 / clock_ticks() as f64)
}

/// VmRSS in bytes, from the text of `/proc/PID/status`.
pub fn parse_status_rss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line
        .trim_start_matches("VmRSS:")
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib * 1024)
}

/// `write_bytes` from the text of `/proc/PID/io`: bytes the process caused
/// to be sent to the storage layer (counted when it dirties a page cache
/// page, or at the write for direct I/O).
pub fn parse_io_write_bytes(io: &str) -> Option<u64> {
    io.lines()
        .find_map(|l| l.strip_prefix("write_bytes:"))?
        .trim()
        .parse()
        .ok()
}

fn invalid(what: &str, pid: u32) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("cannot read {what} of process {pid}"),
    )
}

/// CPU seconds (user + system) process `pid` has used so far.
pub fn cpu_seconds(pid: u32) -> io::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let ticks = parse_stat_ticks(&stat).ok_or_else(|| invalid("CPU time", pid))?;
    Ok(ticks as f64 / clock_ticks() as f64)
}

/// Resident memory of process `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_status_rss(&status).ok_or_else(|| invalid("VmRSS", pid))
}

/// Open file descriptors of process `pid` (entries of `/proc/PID/fd`,
/// readable by the same user or root only).
pub fn open_files(pid: u32) -> io::Result<u64> {
    Ok(std::fs::read_dir(format!("/proc/{pid}/fd"))?.count() as u64)
}

/// Bytes process `pid` has caused to be written to storage so far
/// (`/proc/PID/io` is readable by the same user or root only).
pub fn write_bytes(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/io"))?;
    parse_io_write_bytes(&text).ok_or_else(|| invalid("write_bytes", pid))
}

/// Total CPU seconds of several processes.
pub fn total_cpu_seconds(pids: &[u32]) -> io::Result<f64> {
    pids.iter().map(|&p| cpu_seconds(p)).sum()
}

/// Total resident memory of several processes, in bytes.
pub fn total_rss_bytes(pids: &[u32]) -> io::Result<u64> {
    pids.iter().map(|&p| rss_bytes(p)).sum()
}

/// Total bytes several processes have caused to be written to storage.
pub fn total_write_bytes(pids: &[u32]) -> io::Result<u64> {
    pids.iter().map(|&p| write_bytes(p)).sum()
}

/// This process's soft RLIMIT_NOFILE: how many files it may have open.
pub fn nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(lim.rlim_cur)
}

/// Raises this process's soft RLIMIT_NOFILE to its hard limit (children
/// inherit it); returns the new soft limit.
pub fn raise_nofile_limit() -> io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
    }
    Ok(lim.rlim_cur)
}

/// The 1, 5 and 15 minute load averages, as `/proc/loadavg` shows them.
pub fn load_average() -> Option<String> {
    let s = std::fs::read_to_string("/proc/loadavg").ok()?;
    let f: Vec<&str> = s.split_ascii_whitespace().take(3).collect();
    (f.len() == 3).then(|| f.join(" "))
}

/// The number of CPUs and the CPU model name, for reports.
pub fn machine_facts() -> (usize, String) {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    (cpus, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let stat = "4242 (always (on) line) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 9 0 123 456789 1234 18446744073709551615";
        assert_eq!(parse_stat_ticks(stat), Some(325));
        assert_eq!(parse_stat_ticks("garbage"), None);
        assert_eq!(parse_stat_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn parses_machine_busy_time() {
        let stat = "cpu  100 5 50 1000 7 3 2 1 0 0\ncpu0 50 2 25 500 3 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(161));
        assert_eq!(parse_machine_busy_ticks("intr 1 2"), None);
        assert!(machine_busy_seconds().expect("/proc/stat") > 0.0);
    }

    #[test]
    fn parses_status_rss() {
        let status = "Name:\tx\nVmPeak:\t  9000 kB\nVmRSS:\t    1234 kB\nThreads:\t2\n";
        assert_eq!(parse_status_rss(status), Some(1234 * 1024));
        assert_eq!(parse_status_rss("Name:\tx\n"), None);
    }

    #[test]
    fn parses_io_write_bytes() {
        let io = "rchar: 6976\nwchar: 12\nsyscr: 10\nsyscw: 1\nread_bytes: 4096\nwrite_bytes: 81920\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_write_bytes(io), Some(81_920));
        assert_eq!(parse_io_write_bytes("rchar: 1\n"), None);
        assert_eq!(parse_io_write_bytes("write_bytes: x\n"), None);
    }

    #[test]
    fn reads_own_process() {
        let pid = std::process::id();
        assert!(cpu_seconds(pid).expect("cpu") >= 0.0);
        write_bytes(pid).expect("write_bytes");
        assert!(rss_bytes(pid).expect("rss") > 0);
        assert!(raise_nofile_limit().expect("rlimit") > 0);
    }
}
