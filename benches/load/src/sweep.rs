//! Rate sweep: the highest fixed publish rate a broker sustains with no loss and a p99 latency
//! under a bound.
//!
//! Rates grow by `growth` from `start_rate` until a step fails, then bisect between the best
//! passing and the lowest failing rate until they are within 10 % or the step budget is spent.
//! A failing first step halves the rate instead.

use std::io;
use std::time::Duration;

use crate::flow::{self, FlowConfig};
use crate::measure::Report;

/// Bounds of one sweep.
pub struct SweepConfig {
    pub start_rate: f64,
    pub growth: f64,
    pub max_steps: usize,
    /// Largest p99 latency, in milliseconds, of a passing step.
    pub p99_limit_ms: f64,
}

/// Outcome of one step, with the reason when it failed.
fn judge(report: &Report, rate: f64, p99_limit_ms: f64) -> Result<(), String> {
    let value = |key: &str| report.get(key).unwrap_or(f64::NAN);
    if value("errors") > 0.0 {
        return Err(format!("{} client errors", value("errors")));
    }
    if value("lost") > 0.0 {
        return Err(format!("{} messages lost", value("lost")));
    }
    if value("duplicates") > 0.0 {
        return Err(format!("{} duplicates", value("duplicates")));
    }
    // A missing value is NaN, which fails both checks.
    let p99_ms = value("p99_ms");
    if p99_ms.is_nan() || p99_ms >= p99_limit_ms {
        return Err(format!("p99 {p99_ms:.1} ms"));
    }
    let published = value("pub_rate");
    if published.is_nan() || published < 0.95 * rate {
        return Err(format!("published only {:.0} msg/s", value("pub_rate")));
    }
    Ok(())
}

/// Runs the sweep. Each step is a fresh [`flow::run`] of `base` at a fixed rate.
pub async fn run(base: &FlowConfig, sweep: &SweepConfig) -> io::Result<Report> {
    let mut best: Option<(f64, Report)> = None;
    let mut lowest_failure: Option<f64> = None;
    let mut rate = sweep.start_rate.max(1.0);
    let mut steps = 0;
    while steps < sweep.max_steps {
        let mut config = base.clone();
        config.rate = rate;
        config.run_id = format!("{}-r{steps}", base.run_id);
        let report = flow::run(&config).await?;
        steps += 1;
        let verdict = judge(&report, rate, sweep.p99_limit_ms);
        eprintln!(
            "mqtt-load sweep: {rate:.0} msg/s: {} (delivered {:.0} msg/s, p99 {:.2} ms)",
            match &verdict {
                Ok(()) => "pass".to_string(),
                Err(reason) => format!("fail, {reason}"),
            },
            report.get("delivered_rate").unwrap_or(0.0),
            report.get("p99_ms").unwrap_or(f64::NAN),
        );
        if verdict.is_ok() {
            best = Some((rate, report));
        } else {
            lowest_failure = Some(lowest_failure.map_or(rate, |low: f64| low.min(rate)));
        }
        let best_rate = best.as_ref().map(|(r, _)| *r);
        rate = match (best_rate, lowest_failure) {
            (Some(pass), Some(fail)) if fail / pass < 1.1 => break,
            (Some(pass), Some(fail)) => (pass + fail) / 2.0,
            (Some(pass), None) => pass * sweep.growth,
            (None, Some(fail)) => fail / 2.0,
            (None, None) => unreachable!("a step either passes or fails"),
        };
        // Let the broker settle and the sockets of the step close.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut report = Report::default();
    report.set("sustained_rate", best.as_ref().map_or(0.0, |(r, _)| *r));
    report.set("steps", steps as f64);
    if let Some((_, best_report)) = &best {
        for key in ["p50_ms", "p99_ms", "gen_cpu_pct"] {
            report.set(format!("sustained_{key}"), best_report.get(key).unwrap_or(f64::NAN));
        }
    }
    Ok(report)
}
