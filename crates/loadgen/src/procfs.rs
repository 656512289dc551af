//! CPU time and resident memory of a process, read from `/proc` (no libc,
//! the workspace forbids `unsafe`). CPU time comes in clock ticks of
//! `USER_HZ`, which Linux fixes at 100 for `/proc`: 10 ms resolution, plenty
//! over runs of seconds.

use anyhow::Context;

const USER_HZ: f64 = 100.0;

/// CPU time and RSS of a process at one instant.
#[derive(Debug, Default, Clone, Copy, serde::Serialize)]
pub(crate) struct Sample {
    /// user + system CPU seconds since the process started.
    pub(crate) cpu_s: f64,
    pub(crate) rss_kib: u64,
}

/// Samples several processes, summed (a cluster's).
pub(crate) fn sample_all(pids: &[u32]) -> anyhow::Result<Sample> {
    let mut total = Sample::default();
    for pid in pids {
        let s = sample(Some(*pid))?;
        total.cpu_s += s.cpu_s;
        total.rss_kib += s.rss_kib;
    }
    Ok(total)
}

/// Samples `pid`, or this process when `None`.
pub(crate) fn sample(pid: Option<u32>) -> anyhow::Result<Sample> {
    let dir = pid.map_or_else(|| "/proc/self".to_owned(), |p| format!("/proc/{p}"));
    let stat = std::fs::read_to_string(format!("{dir}/stat")).with_context(|| dir.clone())?;
    let status = std::fs::read_to_string(format!("{dir}/status")).with_context(|| dir.clone())?;
    Ok(Sample { cpu_s: parse_cpu(&stat)?, rss_kib: parse_rss(&status)? })
}

/// utime + stime (fields 14 and 15) of `/proc/PID/stat`.
fn parse_cpu(stat: &str) -> anyhow::Result<f64> {
    // The command name may hold spaces and parentheses: fields are counted
    // from the last ')'.
    let after = stat.rsplit_once(')').context("stat without ')'")?.1;
    let mut fields = after.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next().context("utime")?.parse()?;
    let stime: u64 = fields.next().context("stime")?.parse()?;
    Ok((utime + stime) as f64 / USER_HZ)
}

fn parse_rss(status: &str) -> anyhow::Result<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).context("no VmRSS")?;
    line.split_ascii_whitespace().nth(1).context("VmRSS value")?.parse().context("VmRSS value")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_and_status() {
        let stat = "1234 (my (odd) name) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0";
        assert!((parse_cpu(stat).unwrap() - 3.0).abs() < 1e-9);
        assert_eq!(parse_rss("Name:\tx\nVmRSS:\t   1536 kB\n").unwrap(), 1536);
    }

    #[test]
    fn samples_itself() {
        let s = sample(None).unwrap();
        assert!(s.rss_kib > 0);
    }
}
