//! `uninstall`: stops and removes the systemd service and the Docker Compose stack, and with
//! `--purge` deletes the data directory and the config directory.
//!
//! The plan is printed first and confirmed on the terminal (or by `--yes`); `--dry-run`
//! prints it and changes nothing. A step that fails is reported and the others still run.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use clap::Args;

use crate::{settings, Cli};

/// Units that the repository ships: the native binary and the Docker variant.
const UNITS: [&str; 2] = ["lpiotia-mqtt.service", "lpiotia-mqtt-docker.service"];
/// Directory of the unit files that an administrator installs; a unit found here is removed.
const LOCAL_UNIT_DIR: &str = "/etc/systemd/system";
/// Directories of the unit files that packages install; a unit found here is only disabled.
const PACKAGE_UNIT_DIRS: [&str; 3] =
    ["/usr/local/lib/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system"];
/// State directory of the units (StateDirectory=lpiotia-mqtt), and where systemd keeps it
/// for a DynamicUser= service.
const UNIT_STATE_DIRS: [&str; 2] = ["/var/lib/lpiotia-mqtt", "/var/lib/private/lpiotia-mqtt"];
/// Config directory of the units (ConfigurationDirectory=lpiotia-mqtt).
const UNIT_CONFIG_DIR: &str = "/etc/lpiotia-mqtt";

/// Arguments of `lpiotia-mqtt uninstall`.
#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also delete the data directory (CA, keys, password file, store), the config directory
    /// and the Compose stack's volumes.
    #[arg(long)]
    purge: bool,

    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    yes: bool,

    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,

    /// Compose file of the Docker stack.
    #[arg(long, value_name = "PATH", default_value = "docker/compose.yaml")]
    compose_file: PathBuf,

    /// Config directory that --purge deletes (default: the directory of --config, else
    /// /etc/lpiotia-mqtt or ./lpiotia-config, whichever exists).
    #[arg(long, value_name = "DIR")]
    config_dir: Option<PathBuf>,
}

/// One step of the plan.
enum Step {
    /// Runs a program; the description is its command line.
    Run { program: String, args: Vec<String> },
    /// Deletes a file, a symbolic link or a directory tree.
    Delete { path: PathBuf, what: String },
}

impl Step {
    fn run(program: &str, args: &[&str]) -> Step {
        Step::Run { program: program.to_owned(), args: args.iter().map(|arg| (*arg).to_owned()).collect() }
    }

    fn describe(&self) -> String {
        match self {
            Step::Run { program, args } => format!("run     {program} {}", args.join(" ")),
            Step::Delete { path, what } => format!("delete  {} ({what})", path.display()),
        }
    }
}

/// Steps to take, and notes on what stays and why.
#[derive(Default)]
struct Plan {
    steps: Vec<Step>,
    notes: Vec<String>,
}

pub fn run(cli: &Cli, args: &UninstallArgs) -> anyhow::Result<ExitCode> {
    let plan = make_plan(cli, args)?;
    let mut out = std::io::stdout().lock();
    if plan.steps.is_empty() {
        writeln!(out, "Nothing to uninstall: no lpiotia-mqtt systemd unit, no Compose stack and nothing to purge.")?;
    } else {
        writeln!(out, "Plan:")?;
        for step in &plan.steps {
            writeln!(out, "  {}", step.describe())?;
        }
    }
    for note in &plan.notes {
        writeln!(out, "  {note}")?;
    }
    out.flush()?;
    drop(out);

    if args.dry_run {
        println!("Dry run: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }
    if plan.steps.is_empty() {
        return Ok(ExitCode::SUCCESS);
    }
    if !args.yes && !confirm()? {
        println!("Cancelled: nothing was changed.");
        return Ok(ExitCode::SUCCESS);
    }

    let mut failures = 0;
    for step in &plan.steps {
        match execute(step) {
            Ok(()) => println!("done    {}", step.describe()),
            Err(error) => {
                failures += 1;
                eprintln!("error: {}: {error:#}", step.describe());
            }
        }
    }
    if failures > 0 {
        bail!("{failures} of {} steps failed (see above); fix the cause and run uninstall again", plan.steps.len());
    }
    Ok(ExitCode::SUCCESS)
}

fn make_plan(cli: &Cli, args: &UninstallArgs) -> anyhow::Result<Plan> {
    let mut plan = Plan::default();
    let units_found = plan_units(&mut plan);
    plan_compose(args, &mut plan);

    let mut purge_dirs: Vec<(PathBuf, &str)> = Vec::new();
    match settings::load(cli) {
        Ok(settings) => purge_dirs.push((settings.data_dir, "data directory: CA, keys, password file, store")),
        Err(error) => match &cli.data_dir {
            Some(dir) => purge_dirs.push((dir.clone(), "data directory: CA, keys, password file, store")),
            None => plan.notes.push(format!("note    data directory unknown, the settings do not load: {error:#}")),
        },
    }
    if units_found {
        for dir in UNIT_STATE_DIRS {
            purge_dirs.push((PathBuf::from(dir), "state directory of the systemd unit"));
        }
    }
    if let Some(dir) = config_dir(cli, args, units_found) {
        purge_dirs.push((dir, "config directory"));
    }

    let mut seen: Vec<PathBuf> = Vec::new();
    for (dir, what) in purge_dirs {
        // symlink_metadata: /var/lib/lpiotia-mqtt is a symbolic link for a DynamicUser= unit.
        if dir.symlink_metadata().is_err() {
            continue;
        }
        let dir = std::path::absolute(&dir)?;
        if seen.contains(&dir) {
            continue;
        }
        seen.push(dir.clone());
        if args.purge {
            check_deletable(&dir)?;
            plan.steps.push(Step::Delete { path: dir, what: what.to_owned() });
        } else {
            plan.notes.push(format!("keep    {} ({what}; --purge deletes it)", dir.display()));
        }
    }
    Ok(plan)
}

/// Adds the steps that stop and remove the systemd units; returns whether any unit exists.
fn plan_units(plan: &mut Plan) -> bool {
    let mut found = false;
    let mut removed = false;
    for unit in UNITS {
        let local = Path::new(LOCAL_UNIT_DIR).join(unit);
        let drop_ins = Path::new(LOCAL_UNIT_DIR).join(format!("{unit}.d"));
        let packaged = PACKAGE_UNIT_DIRS.iter().map(|dir| Path::new(dir).join(unit)).find(|path| path.exists());
        if !local.exists() && packaged.is_none() {
            continue;
        }
        found = true;
        plan.steps.push(Step::run("systemctl", &["disable", "--now", unit]));
        if local.exists() {
            plan.steps.push(Step::Delete { path: local, what: "unit file".to_owned() });
            removed = true;
        }
        if drop_ins.exists() {
            plan.steps.push(Step::Delete { path: drop_ins, what: "drop-in directory".to_owned() });
            removed = true;
        }
        if let Some(path) = packaged {
            plan.notes.push(format!("keep    {} (installed by a package; remove the package)", path.display()));
        }
    }
    if removed {
        plan.steps.push(Step::run("systemctl", &["daemon-reload"]));
    }
    found
}

fn plan_compose(args: &UninstallArgs, plan: &mut Plan) {
    if !args.compose_file.exists() {
        return;
    }
    if !program_exists("docker") {
        plan.notes.push(format!(
            "note    {} exists but docker is not installed, so there is no Compose stack to stop",
            args.compose_file.display()
        ));
        return;
    }
    let file = args.compose_file.display().to_string();
    let mut compose_args = vec!["compose", "-f", file.as_str(), "down"];
    if args.purge {
        compose_args.push("--volumes");
    }
    plan.steps.push(Step::run("docker", &compose_args));
}

/// Returns the config directory: `--config-dir`, the directory of `--config`, the units'
/// directory when a unit exists, or `./lpiotia-config` (the default of `init`).
fn config_dir(cli: &Cli, args: &UninstallArgs, units_found: bool) -> Option<PathBuf> {
    if let Some(dir) = &args.config_dir {
        return Some(dir.clone());
    }
    if let Some(file) = &cli.config {
        return file
            .parent()
            .map(|dir| if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir.to_path_buf() });
    }
    let unit_dir = Path::new(UNIT_CONFIG_DIR);
    if units_found || unit_dir.is_dir() {
        return Some(unit_dir.to_path_buf());
    }
    Some(PathBuf::from("lpiotia-config"))
}

/// Refuses to delete the root directory, a top-level directory such as /usr, the current
/// directory or the home directory, which a wrong setting could name.
fn check_deletable(path: &Path) -> anyhow::Result<()> {
    let resolved = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
    let depth = resolved.components().filter(|component| matches!(component, std::path::Component::Normal(_))).count();
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let current = std::env::current_dir().ok();
    // A directory with a Cargo.toml or a .git is source code, never broker data or config.
    let is_source_tree = resolved.join("Cargo.toml").exists() || resolved.join(".git").exists();
    if depth < 2 || is_source_tree || Some(&resolved) == home.as_ref() || Some(&resolved) == current.as_ref() {
        bail!(
            "refusing to delete {} (resolves to {}); delete it by hand if that is really meant",
            path.display(),
            resolved.display()
        );
    }
    Ok(())
}

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("standard input is not a terminal, so the plan cannot be confirmed; pass --yes to proceed or --dry-run to only print it");
    }
    print!("Proceed? [y/N] ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("cannot read the answer")?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

fn execute(step: &Step) -> anyhow::Result<()> {
    match step {
        Step::Run { program, args } => {
            let status =
                Command::new(program).args(args).status().with_context(|| format!("cannot start {program}"))?;
            if !status.success() {
                bail!("{program} exited with {status}");
            }
        }
        Step::Delete { path, .. } => {
            let metadata = path.symlink_metadata().with_context(|| format!("cannot read {}", path.display()))?;
            if metadata.is_dir() { std::fs::remove_dir_all(path) } else { std::fs::remove_file(path) }
                .with_context(|| format!("cannot delete {}", path.display()))?;
        }
    }
    Ok(())
}

fn program_exists(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false)
}
