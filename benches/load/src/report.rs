//! Markdown summary of a results file written by benches/run.sh.
//!
//! Each line of the file is `round<TAB>broker<TAB>scenario<TAB>key<TAB>value`. For every row of
//! [`ROWS`] and every broker other than the baseline that has values, the summary gives the
//! median over rounds, the baseline's median, their ratio and whether the target is met.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io;
use std::path::Path;

/// Broker every ratio is computed against.
pub const BASELINE: &str = "mosquitto";

/// Condition a row must meet.
#[derive(Clone, Copy)]
enum Target {
    None,
    /// ours / baseline at least this.
    RatioAtLeast(f64),
    /// ours / baseline at most this.
    RatioAtMost(f64),
    /// Our own value at most this.
    AtMost(f64),
    /// Our own value at least this.
    AtLeast(f64),
}

struct Row {
    scenario: &'static str,
    key: &'static str,
    label: &'static str,
    target: Target,
}

const fn row(scenario: &'static str, key: &'static str, label: &'static str, target: Target) -> Row {
    Row { scenario, key, label, target }
}

const ROWS: &[Row] = &[
    row("fanin-q0", "delivered_rate", "fan-in QoS 0, full speed: delivered msg/s", Target::RatioAtLeast(2.0)),
    row("fanin-q0", "lost_pct", "fan-in QoS 0, full speed: loss %", Target::None),
    row("fanin-q0", "cpu_us_per_msg", "fan-in QoS 0, full speed: broker CPU µs per delivered message", Target::None),
    row("fanin-q1", "delivered_rate", "fan-in QoS 1, full speed: delivered msg/s", Target::None),
    row("fanin-q1", "lost_pct", "fan-in QoS 1, full speed: loss %", Target::None),
    row("fanin-q1", "cpu_us_per_msg", "fan-in QoS 1, full speed: broker CPU µs per delivered message", Target::None),
    row("sweep-q1", "sustained_rate", "fan-in QoS 1: max rate, no loss, p99 < 50 ms", Target::RatioAtLeast(1.5)),
    row("sweep-q0", "sustained_rate", "fan-in QoS 0: max rate, no loss, p99 < 50 ms", Target::None),
    row("fanout-q0", "delivered_rate", "fan-out 1→50 QoS 0: delivered msg/s", Target::RatioAtLeast(2.0)),
    row("fanout-q0", "cpu_us_per_msg", "fan-out 1→50 QoS 0: broker CPU µs per delivered message", Target::None),
    row("fanout-q1", "delivered_rate", "fan-out 1→50 QoS 1: delivered msg/s", Target::RatioAtLeast(2.0)),
    row("fanout-q1", "lost_pct", "fan-out 1→50 QoS 1: loss %", Target::None),
    row("fanout-q1", "cpu_us_per_msg", "fan-out 1→50 QoS 1: broker CPU µs per delivered message", Target::None),
    row("latency-q0", "p50_ms", "latency QoS 0, 2000 msg/s: p50 ms", Target::RatioAtMost(1.0)),
    row("latency-q0", "p99_ms", "latency QoS 0, 2000 msg/s: p99 ms", Target::RatioAtMost(1.0)),
    row("latency-q0", "p999_ms", "latency QoS 0, 2000 msg/s: p99.9 ms", Target::None),
    row("latency-q1", "p50_ms", "latency QoS 1, 2000 msg/s: p50 ms", Target::RatioAtMost(1.0)),
    row("latency-q1", "p99_ms", "latency QoS 1, 2000 msg/s: p99 ms", Target::RatioAtMost(1.0)),
    row("latency-q1", "p999_ms", "latency QoS 1, 2000 msg/s: p99.9 ms", Target::None),
    row("conn-5000", "bytes_per_conn", "5000 idle connections: bytes per connection", Target::AtMost(1024.0)),
    row("conn-5000", "connects_per_sec", "5000 idle connections: connects/s", Target::RatioAtLeast(1.0)),
    row("conn-20000", "connected", "20000 idle connections: connections held", Target::None),
    row("conn-20000", "bytes_per_conn", "20000 idle connections: bytes per connection", Target::AtMost(1024.0)),
    row("conn-20000", "connects_per_sec", "20000 idle connections: connects/s", Target::RatioAtLeast(1.0)),
    row("conn-argon2", "connects_per_sec", "connects/s, our default argon2id password file", Target::RatioAtLeast(1.0)),
    row("tls", "handshakes_per_sec", "TLS handshakes/s with password, 100 in parallel", Target::RatioAtLeast(1.0)),
    row("tls", "failed", "TLS sessions failed", Target::AtMost(0.0)),
    row("overload", "rss_growth_mib", "overload: broker RSS growth MiB", Target::AtMost(100.0)),
    row("overload", "broker_dropped", "overload: drops reported by the broker", Target::None),
    row("overload", "lost", "overload: messages lost, fast subscriber", Target::AtMost(0.0)),
    row("overload", "slow_lost", "overload: messages lost, slow subscriber", Target::None),
    row("overload", "drop_count_gap", "overload: lost minus reported drops", Target::AtMost(0.0)),
    row("overload", "slow_delivered_rate", "overload: slow subscriber msg/s", Target::AtLeast(1.0)),
    row("overload", "fast_pace_pct", "overload: fast subscriber, % of publish rate", Target::AtLeast(95.0)),
    row("overload", "p99_ms", "overload: fast subscriber p99 ms", Target::None),
    row("durable-q1", "delivered_rate", "fan-in QoS 1 to a persistent session: msg/s", Target::None),
    row("durable-q1", "cpu_us_per_msg", "fan-in QoS 1 to a persistent session: broker CPU µs per message", Target::None),
    row("durable-q1", "rss_growth_mib", "fan-in QoS 1 to a persistent session: broker RSS growth MiB", Target::None),
    row("durable-q1", "lost_pct", "fan-in QoS 1 to a persistent session: loss %", Target::None),
];

/// round → value, per (broker, scenario, key).
type Results = BTreeMap<(String, String, String), Vec<f64>>;

fn load(path: &Path) -> io::Result<(Results, usize)> {
    let text = fs::read_to_string(path)?;
    // (round, broker, scenario) → key → value, to derive values within one run.
    let mut runs: BTreeMap<(String, String, String), BTreeMap<String, f64>> = BTreeMap::new();
    for line in text.lines() {
        let fields: Vec<&str> = line.split('\t').collect();
        let [round, broker, scenario, key, value] = fields[..] else { continue };
        let Ok(value) = value.parse::<f64>() else { continue };
        runs.entry((round.into(), broker.into(), scenario.into())).or_default().insert(key.into(), value);
    }
    let mut results = Results::new();
    let mut rounds = BTreeSet::new();
    for ((round, broker, scenario), mut values) in runs {
        derive(&mut values);
        rounds.insert(round);
        for (key, value) in values {
            results.entry((broker.clone(), scenario.clone(), key)).or_default().push(value);
        }
    }
    Ok((results, rounds.len()))
}

/// Adds `cpu_us_per_msg`: broker CPU time per delivered message, over the whole run (connect,
/// publish, drain). Unlike rates, it hardly depends on how much of its core the broker got.
fn derive(values: &mut BTreeMap<String, f64>) {
    let delivered = values.get("received").copied().unwrap_or(0.0) + values.get("slow_received").copied().unwrap_or(0.0);
    if let (Some(cpu_secs), true) = (values.get("broker_cpu_secs").copied(), delivered > 0.0) {
        values.insert("cpu_us_per_msg".into(), cpu_secs * 1e6 / delivered);
    }
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len() % 2 == 1 {
        sorted[middle]
    } else {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    }
}

fn format_value(value: f64) -> String {
    if value.abs() >= 100.0 {
        format!("{value:.0}")
    } else if value.abs() >= 1.0 {
        format!("{value:.2}")
    } else {
        format!("{value:.3}")
    }
}

fn verdict(target: Target, ours: f64, ratio: Option<f64>) -> (String, &'static str) {
    let check = |met: bool| if met { "yes" } else { "**no**" };
    match target {
        Target::None => (String::new(), ""),
        Target::RatioAtLeast(limit) => (format!("ratio ≥ {limit}"), ratio.map_or("n/a", |r| check(r >= limit))),
        Target::RatioAtMost(limit) => (format!("ratio ≤ {limit}"), ratio.map_or("n/a", |r| check(r <= limit))),
        Target::AtMost(limit) => (format!("≤ {}", format_value(limit)), check(ours <= limit)),
        Target::AtLeast(limit) => (format!("≥ {}", format_value(limit)), check(ours >= limit)),
    }
}

/// Prints the summary table, and with `all` every key of every scenario as well.
pub fn print(path: &Path, all: bool) -> io::Result<()> {
    let (results, rounds) = load(path)?;
    let brokers: BTreeSet<String> = results.keys().map(|(broker, _, _)| broker.clone()).filter(|b| b != BASELINE).collect();
    println!("Medians of {rounds} round(s); ratio = broker / {BASELINE}.\n");
    println!("| scenario and metric | broker | value | {BASELINE} | ratio | target | met |");
    println!("|---|---|---:|---:|---:|---|---|");
    for row in ROWS {
        let baseline = results.get(&(BASELINE.to_string(), row.scenario.to_string(), row.key.to_string())).map(|v| median(v));
        for broker in &brokers {
            let Some(values) = results.get(&(broker.clone(), row.scenario.to_string(), row.key.to_string())) else { continue };
            let ours = median(values);
            let ratio = baseline.filter(|b| *b != 0.0).map(|b| ours / b);
            let (target, met) = verdict(row.target, ours, ratio);
            println!(
                "| {} | {broker} | {} | {} | {} | {target} | {met} |",
                row.label,
                format_value(ours),
                baseline.map_or("-".into(), format_value),
                ratio.map_or("-".into(), |r| format!("{r:.2}")),
            );
        }
    }
    print_generator_check(&results);
    if all {
        println!("\nAll values (medians):\n");
        println!("| scenario | key | broker | median | values |");
        println!("|---|---|---|---:|---|");
        for ((broker, scenario, key), values) in &results {
            let listed: Vec<String> = values.iter().map(|v| format_value(*v)).collect();
            println!("| {scenario} | {key} | {broker} | {} | {} |", format_value(median(values)), listed.join(", "));
        }
    }
    Ok(())
}

/// Broker name of the generator's runs against its own sink.
const SINK: &str = "sink";

/// Prints the rates the generator reached against the sink, and its highest CPU use against a broker.
fn print_generator_check(results: &Results) {
    let sink_rows: Vec<_> = results.iter().filter(|((broker, _, _), _)| broker == SINK).collect();
    if sink_rows.is_empty() {
        return;
    }
    println!("\nGenerator against the sink (no routing, no queues), one run each:\n");
    println!("| scenario | published msg/s | delivered msg/s | generator CPU % |");
    println!("|---|---:|---:|---:|");
    let scenarios: BTreeSet<&String> = sink_rows.iter().map(|((_, scenario, _), _)| scenario).collect();
    for scenario in scenarios {
        let value = |key: &str| {
            results.get(&(SINK.to_string(), scenario.clone(), key.to_string())).map_or("-".to_string(), |v| format_value(median(v)))
        };
        println!("| {scenario} | {} | {} | {} |", value("pub_rate"), value("delivered_rate"), value("gen_cpu_pct"));
    }
    let busiest = results
        .iter()
        .filter(|((broker, _, key), _)| broker != SINK && key == "gen_cpu_pct")
        .flat_map(|((broker, scenario, _), values)| values.iter().map(move |v| (*v, broker, scenario)))
        .max_by(|a, b| a.0.total_cmp(&b.0));
    if let Some((cpu, broker, scenario)) = busiest {
        println!("\nHighest generator CPU use against a broker: {cpu:.0} % of its core ({scenario}, {broker}).");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_and_even() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn ratio_target_verdicts() {
        assert_eq!(verdict(Target::RatioAtLeast(1.5), 0.0, Some(1.6)).1, "yes");
        assert_eq!(verdict(Target::RatioAtLeast(1.5), 0.0, Some(1.4)).1, "**no**");
        assert_eq!(verdict(Target::RatioAtMost(1.0), 0.0, Some(1.2)).1, "**no**");
        assert_eq!(verdict(Target::AtMost(1024.0), 900.0, None).1, "yes");
    }
}
