//! Compares redb and fjall as the durable store of a broker's queued QoS 1 messages.
//!
//! Each run measures, for each store in a fresh directory: durable single-record commits,
//! durable group commits, disk usage under queue churn, and the time to reopen and scan a
//! filled queue after a clean close and after SIGKILL. The program prints one Markdown table
//! of the medians over all runs.

mod crash;
mod stores;
mod workload;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use stores::{BoxError, FjallStore, QueueStore, RedbStore};

pub const GROUP_COMMIT_SIZE: usize = 64;
const MIB: f64 = 1_048_576.0;

const HELP: &str = "\
Usage: store-compare [OPTIONS]

Compares redb and fjall on a broker's durable QoS 1 message queue and prints a Markdown table.

Options:
  --runs N               number of runs; the table shows the median of each value [default: 3]
  --seconds S            length of each timed commit loop, in seconds [default: 3]
  --churn-records N      records inserted then deleted in each churn round [default: 200000]
  --churn-rounds N       number of churn rounds [default: 3]
  --recovery-records N   records present before the recovery measurement [default: 100000]
  --dir PATH             parent directory of the data files; it must not be a tmpfs
                         [default: /tmp]
  -h, --help             print this help
";

struct Options {
    runs: usize,
    seconds: f64,
    churn_records: usize,
    churn_rounds: usize,
    recovery_records: usize,
    parent_dir: PathBuf,
}

fn parse_options() -> Result<Option<Options>, BoxError> {
    let mut options = Options {
        runs: 3,
        seconds: 3.0,
        churn_records: 200_000,
        churn_rounds: 3,
        recovery_records: 100_000,
        parent_dir: PathBuf::from("/tmp"),
    };

    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "-h" || arg == "--help" {
            return Ok(None);
        }
        let value = args
            .next()
            .ok_or_else(|| format!("missing value for {arg}; see --help"))?;
        match arg.as_str() {
            "--runs" => options.runs = parse_value(&arg, &value)?,
            "--seconds" => options.seconds = parse_value(&arg, &value)?,
            "--churn-records" => options.churn_records = parse_value(&arg, &value)?,
            "--churn-rounds" => options.churn_rounds = parse_value(&arg, &value)?,
            "--recovery-records" => options.recovery_records = parse_value(&arg, &value)?,
            "--dir" => options.parent_dir = PathBuf::from(value),
            _ => return Err(format!("unknown option {arg}; see --help").into()),
        }
    }

    let counts = [options.runs, options.churn_records, options.churn_rounds];
    if counts.contains(&0) || options.seconds.is_nan() || options.seconds <= 0.0 {
        return Err(
            "--runs, --seconds, --churn-records and --churn-rounds must be greater than 0".into(),
        );
    }
    Ok(Some(options))
}

fn parse_value<T: std::str::FromStr>(option: &str, value: &str) -> Result<T, BoxError> {
    value
        .parse()
        .map_err(|_| format!("invalid value {value:?} for {option}; see --help").into())
}

/// A directory that is removed with everything in it when dropped.
struct ScratchDir(PathBuf);

impl ScratchDir {
    fn create(parent: &Path) -> Result<Self, BoxError> {
        let path = parent.join(format!("store-compare-{}", std::process::id()));
        std::fs::create_dir_all(&path)?;
        Ok(Self(path))
    }

    /// Creates an empty subdirectory for one scenario of one store.
    fn fresh(&self, name: &str) -> Result<PathBuf, BoxError> {
        let path = self.0.join(name);
        if path.exists() {
            std::fs::remove_dir_all(&path)?;
        }
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(err) = std::fs::remove_dir_all(&self.0) {
            eprintln!("failed to remove {}: {err}", self.0.display());
        }
    }
}

/// One table row: its label and the value of every run.
struct Metric {
    label: String,
    values: Vec<f64>,
    decimals: usize,
}

/// The metrics of one store over all runs, in table order.
struct StoreMetrics {
    metrics: Vec<Metric>,
}

impl StoreMetrics {
    fn new() -> Self {
        Self {
            metrics: Vec::new(),
        }
    }

    /// Appends `value` to the metric `label`, creating the metric on the first run.
    fn record(&mut self, label: &str, value: f64, decimals: usize) {
        match self.metrics.iter_mut().find(|metric| metric.label == label) {
            Some(metric) => metric.values.push(value),
            None => self.metrics.push(Metric {
                label: label.to_string(),
                values: vec![value],
                decimals,
            }),
        }
    }
}

fn run_store<S: QueueStore>(
    options: &Options,
    scratch: &ScratchDir,
    run: usize,
    metrics: &mut StoreMetrics,
) -> Result<(), BoxError> {
    let name = S::NAME;
    let duration = Duration::from_secs_f64(options.seconds);

    let single =
        workload::single_record_commits::<S>(&scratch.fresh(&format!("{name}-single"))?, duration)?;
    eprintln!("run {run} {name}: single-record commits: {single:.0}/s");
    metrics.record("1. fsync per record (commits/s)", single, 0);

    let group = workload::group_commits::<S>(
        &scratch.fresh(&format!("{name}-group"))?,
        duration,
        GROUP_COMMIT_SIZE,
    )?;
    eprintln!("run {run} {name}: group commits of {GROUP_COMMIT_SIZE}: {group:.0} records/s");
    metrics.record("2. group commit of 64 (records/s)", group, 0);

    let churn_dir = scratch.fresh(&format!("{name}-churn"))?;
    let churn = workload::queue_churn::<S>(
        &churn_dir,
        options.churn_records,
        GROUP_COMMIT_SIZE,
        options.churn_rounds,
    )?;
    for (index, usage) in churn.after_round.iter().enumerate() {
        eprintln!(
            "run {run} {name}: churn round {}: {:.1} MiB allocated, {:.1} MiB apparent",
            index + 1,
            usage.allocated_bytes as f64 / MIB,
            usage.apparent_bytes as f64 / MIB
        );
        let label = format!("3. churn: size after round {} (MiB)", index + 1);
        metrics.record(&label, usage.allocated_bytes as f64 / MIB, 2);
    }
    eprintln!(
        "run {run} {name}: churn after close: {:.1} MiB allocated; after manual compaction: {:.1} MiB",
        churn.after_close.allocated_bytes as f64 / MIB,
        churn.after_manual_compaction.allocated_bytes as f64 / MIB
    );
    metrics.record(
        "3. churn: size after close (MiB)",
        churn.after_close.allocated_bytes as f64 / MIB,
        2,
    );
    metrics.record(
        "3. churn: size after manual compaction (MiB)",
        churn.after_manual_compaction.allocated_bytes as f64 / MIB,
        2,
    );
    metrics.record(
        "3. churn: insert, commits of 64 (records/s)",
        churn.insert_rate,
        0,
    );
    metrics.record(
        "3. churn: delete, commits of 64 (records/s)",
        churn.delete_rate,
        0,
    );
    std::fs::remove_dir_all(&churn_dir)?;

    let records = options.recovery_records;
    let clean_dir = scratch.fresh(&format!("{name}-recovery-clean"))?;
    drop(workload::fill::<S>(&clean_dir, records, GROUP_COMMIT_SIZE)?);
    let clean = workload::reopen_and_scan::<S>(&clean_dir, records)?;
    std::fs::remove_dir_all(&clean_dir)?;
    eprintln!(
        "run {run} {name}: recovery after close: open {:.1} ms, scan {:.1} ms",
        clean.open_ms, clean.scan_ms
    );
    metrics.record("4. after close: open (ms)", clean.open_ms, 1);
    metrics.record(
        &format!("4. after close: scan {records} records (ms)"),
        clean.scan_ms,
        1,
    );
    metrics.record(
        "4. after close: open + scan (ms)",
        clean.open_ms + clean.scan_ms,
        1,
    );

    let killed_dir = scratch.fresh(&format!("{name}-recovery-killed"))?;
    crash::fill_and_kill::<S>(&killed_dir, records)?;
    let killed = workload::reopen_and_scan::<S>(&killed_dir, records)?;
    std::fs::remove_dir_all(&killed_dir)?;
    eprintln!(
        "run {run} {name}: recovery after SIGKILL: open {:.1} ms, scan {:.1} ms",
        killed.open_ms, killed.scan_ms
    );
    metrics.record(
        "4. after SIGKILL: open + scan (ms)",
        killed.open_ms + killed.scan_ms,
        1,
    );

    Ok(())
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    if sorted.len().is_multiple_of(2) {
        (sorted[middle - 1] + sorted[middle]) / 2.0
    } else {
        sorted[middle]
    }
}

/// Formats `value` with `decimals` digits after the point and commas between thousands.
fn format_number(value: f64, decimals: usize) -> String {
    let text = format!("{value:.decimals$}");
    let (integer, fraction) = match text.split_once('.') {
        Some((integer, fraction)) => (integer, Some(fraction)),
        None => (text.as_str(), None),
    };

    let digits: Vec<char> = integer.chars().collect();
    let mut grouped = String::new();
    for (index, digit) in digits.iter().enumerate() {
        let from_end = digits.len() - index;
        if index > 0 && from_end.is_multiple_of(3) && digits[index - 1].is_ascii_digit() {
            grouped.push(',');
        }
        grouped.push(*digit);
    }

    match fraction {
        Some(fraction) => format!("{grouped}.{fraction}"),
        None => grouped,
    }
}

fn format_cell(metric: &Metric) -> String {
    let decimals = metric.decimals;
    let middle = format_number(median(&metric.values), decimals);
    if metric.values.len() < 2 {
        return middle;
    }
    let low = metric.values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = metric
        .values
        .iter()
        .copied()
        .fold(f64::NEG_INFINITY, f64::max);
    format!(
        "{middle} ({}–{})",
        format_number(low, decimals),
        format_number(high, decimals)
    )
}

fn print_table(options: &Options, redb: &StoreMetrics, fjall: &StoreMetrics) {
    println!(
        "Median of {} runs, with the lowest and highest value in brackets.\n",
        options.runs
    );
    println!("| measurement | redb | fjall |");
    println!("| --- | ---: | ---: |");
    for (redb_metric, fjall_metric) in redb.metrics.iter().zip(&fjall.metrics) {
        println!(
            "| {} | {} | {} |",
            redb_metric.label,
            format_cell(redb_metric),
            format_cell(fjall_metric)
        );
    }
}

fn run(options: &Options) -> Result<(), BoxError> {
    let scratch = ScratchDir::create(&options.parent_dir)?;
    eprintln!("data files under {}", scratch.0.display());

    let mut redb = StoreMetrics::new();
    let mut fjall = StoreMetrics::new();
    for run in 1..=options.runs {
        // The disk's fsync latency drifts on a shared machine, so alternate which store goes
        // first, so that neither store always runs in the same part of each run.
        if run % 2 == 1 {
            run_store::<RedbStore>(options, &scratch, run, &mut redb)?;
            run_store::<FjallStore>(options, &scratch, run, &mut fjall)?;
        } else {
            run_store::<FjallStore>(options, &scratch, run, &mut fjall)?;
            run_store::<RedbStore>(options, &scratch, run, &mut redb)?;
        }
    }

    print_table(options, &redb, &fjall);
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some(crash::CHILD_ARG) {
        return match crash::run_child(&args[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(err) => {
                eprintln!("error: {err}");
                ExitCode::FAILURE
            }
        };
    }

    let options = match parse_options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            print!("{HELP}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("error: {err}");
            return ExitCode::from(2);
        }
    };

    match run(&options) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}
