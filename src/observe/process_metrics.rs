//! The `process_*` metrics every Prometheus client library exports
//! (resident memory, open file descriptors, CPU seconds, start time), read
//! from `/proc` at scrape time. prometheus-client has no process collector,
//! and the few lines of `/proc` parsing are cheaper than a crate that pulls
//! in a whole system-information library. On systems without `/proc` the
//! metrics are simply absent.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times in /proc in USER_HZ, which is 100 on every
/// architecture jwtgate is built for (it is part of the user ABI, unlike
/// the kernel's internal HZ).
const USER_HZ: f64 = 100.0;

#[derive(Debug)]
pub(crate) struct ProcessCollector {
    /// Taken when the metrics are created, at start-up: close enough to the
    /// process start for `time() - process_start_time_seconds`, and needs no
    /// boot-time arithmetic.
    start_time: f64,
}

impl ProcessCollector {
    pub(crate) fn new() -> Self {
        ProcessCollector {
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }
}

impl Default for ProcessCollector {
    fn default() -> Self {
        Self::new()
    }
}

/// `utime + stime` of /proc/self/stat, in seconds.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name (field 2) is in parentheses and may contain spaces:
    // count fields after its closing parenthesis.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After ")": state is field 3; utime is field 14, stime field 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// `VmRSS` of /proc/self/status, in bytes.
fn resident_bytes() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024.0)
}

fn open_fds() -> Option<i64> {
    let n = std::fs::read_dir("/proc/self/fd").ok()?.count();
    // The directory handle used to list them is one of them.
    i64::try_from(n.saturating_sub(1)).ok()
}

/// The soft limit of "Max open files" in /proc/self/limits.
fn max_fds() -> Option<i64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if let Some(v) = cpu_seconds() {
            let m = ConstCounter::new(v);
            m.encode(encoder.encode_descriptor(
                "process_cpu_seconds",
                "Total user and system CPU time spent in seconds",
                None,
                m.metric_type(),
            )?)?;
        }
        if let Some(v) = resident_bytes() {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                None,
                m.metric_type(),
            )?)?;
        }
        if let Some(v) = open_fds() {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_open_fds",
                "Number of open file descriptors",
                None,
                m.metric_type(),
            )?)?;
        }
        if let Some(v) = max_fds() {
            let m = ConstGauge::new(v);
            m.encode(encoder.encode_descriptor(
                "process_max_fds",
                "Maximum number of open file descriptors",
                None,
                m.metric_type(),
            )?)?;
        }
        let m = ConstGauge::new(self.start_time);
        m.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch in seconds",
            None,
            m.metric_type(),
        )?)?;
        Ok(())
    }
}
