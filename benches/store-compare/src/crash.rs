//! Fills a store in a child process and kills that process with SIGKILL while the store is
//! open, so that the next open has to recover from an unclean shutdown, as after `kill -9`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::stores::{BoxError, FjallStore, QueueStore, RedbStore};
use crate::workload;

/// First argument that starts the program as the child that fills a store.
pub const CHILD_ARG: &str = "--internal-fill-and-wait";

/// Line the child prints once every record is committed.
const READY_LINE: &str = "filled";

/// How long the child waits to be killed before it exits by itself.
const CHILD_MAX_WAIT: Duration = Duration::from_secs(120);

/// Runs the child side: `args` are the store name, the directory and the record count.
/// Fills the store, prints the ready line, then waits with the store open.
pub fn run_child(args: &[String]) -> Result<(), BoxError> {
    let [store, dir, records] = args else {
        return Err(format!("{CHILD_ARG} expects STORE DIR RECORDS").into());
    };
    let records: usize = records.parse()?;
    let dir = Path::new(dir);

    match store.as_str() {
        RedbStore::NAME => fill_and_wait::<RedbStore>(dir, records),
        FjallStore::NAME => fill_and_wait::<FjallStore>(dir, records),
        _ => Err(format!("unknown store {store:?}").into()),
    }
}

fn fill_and_wait<S: QueueStore>(dir: &Path, records: usize) -> Result<(), BoxError> {
    let store = workload::fill::<S>(dir, records, crate::GROUP_COMMIT_SIZE)?;

    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{READY_LINE}")?;
    stdout.flush()?;

    std::thread::sleep(CHILD_MAX_WAIT);
    drop(store);
    Err("the parent process did not kill this child in time".into())
}

/// Fills the store `S` in `dir` with `records` in a child process, then kills the child
/// with SIGKILL once it reports that every commit has returned.
pub fn fill_and_kill<S: QueueStore>(dir: &Path, records: usize) -> Result<(), BoxError> {
    let mut child = Command::new(std::env::current_exe()?)
        .arg(CHILD_ARG)
        .arg(S::NAME)
        .arg(dir)
        .arg(records.to_string())
        .stdout(Stdio::piped())
        .spawn()?;

    // The child prints one line, or exits and closes its stdout, so this read ends.
    let mut line = String::new();
    let stdout = child.stdout.take().ok_or("child stdout is not piped")?;
    BufReader::new(stdout).read_line(&mut line)?;

    // Child::kill sends SIGKILL on Unix.
    child.kill()?;
    let status = child.wait()?;

    if line.trim_end() != READY_LINE {
        return Err(format!("{}: fill child failed ({status})", S::NAME).into());
    }
    Ok(())
}
