//! Clock, payload layout, `/proc` readings and the key/value output of every command.

use std::fs;
use std::sync::OnceLock;
use std::time::Instant;

/// Bytes at the start of each payload: sequence number, send time, publisher index.
pub const HEADER_LEN: usize = 20;

/// Instant that send times in payloads count from, shared by every task of the process.
fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

/// Nanoseconds since the process-wide epoch.
pub fn now_ns() -> u64 {
    epoch().elapsed().as_nanos() as u64
}

/// Converts an `Instant` to nanoseconds since the process-wide epoch.
pub fn instant_ns(at: Instant) -> u64 {
    at.saturating_duration_since(epoch()).as_nanos() as u64
}

/// Writes the header into `payload` (at least [`HEADER_LEN`] bytes) and leaves the rest as it is.
pub fn write_header(payload: &mut [u8], seq: u64, sent_ns: u64, publisher: u32) {
    payload[0..8].copy_from_slice(&seq.to_le_bytes());
    payload[8..16].copy_from_slice(&sent_ns.to_le_bytes());
    payload[16..20].copy_from_slice(&publisher.to_le_bytes());
}

/// Reads the header back: sequence number, send time, publisher index.
pub fn read_header(payload: &[u8]) -> Option<(u64, u64, u32)> {
    if payload.len() < HEADER_LEN {
        return None;
    }
    let seq = u64::from_le_bytes(payload[0..8].try_into().ok()?);
    let sent_ns = u64::from_le_bytes(payload[8..16].try_into().ok()?);
    let publisher = u32::from_le_bytes(payload[16..20].try_into().ok()?);
    Some((seq, sent_ns, publisher))
}

/// Resident set size of process `pid` in KiB (`VmRSS` of `/proc/PID/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// User plus system CPU time of this process, in seconds (fields 14 and 15 of `/proc/self/stat`).
pub fn own_cpu_secs() -> f64 {
    let Ok(stat) = fs::read_to_string("/proc/self/stat") else {
        return 0.0;
    };
    // The command name in brackets may contain spaces: count fields after its closing bracket.
    let Some(after_name) = stat.rfind(')').map(|index| &stat[index + 1..]) else {
        return 0.0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11).and_then(|v| v.parse().ok()).unwrap_or(0)
        + fields.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf has no preconditions. It only reads a system constant.
    let ticks_per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    ticks as f64 / ticks_per_sec as f64
}

/// CPU use of this process over a time window, in percent of one core.
pub struct CpuMeter {
    started: Instant,
    cpu_at_start: f64,
}

impl CpuMeter {
    pub fn start() -> Self {
        CpuMeter { started: Instant::now(), cpu_at_start: own_cpu_secs() }
    }

    pub fn percent(&self) -> f64 {
        let wall = self.started.elapsed().as_secs_f64().max(1e-3);
        (own_cpu_secs() - self.cpu_at_start) * 100.0 / wall
    }
}

/// Results of one command, printed as `key<TAB>value` lines for benches/run.sh to collect.
#[derive(Default)]
pub struct Report {
    values: Vec<(String, f64)>,
}

impl Report {
    pub fn set(&mut self, key: impl Into<String>, value: f64) {
        self.values.push((key.into(), value));
    }

    /// Returns the last value stored under `key`.
    pub fn get(&self, key: &str) -> Option<f64> {
        self.values.iter().rev().find(|(name, _)| name == key).map(|(_, value)| *value)
    }

    pub fn print(&self) {
        for (key, value) in &self.values {
            println!("{key}\t{value:.3}");
        }
    }
}
