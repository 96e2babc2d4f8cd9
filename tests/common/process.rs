//! Running external programs with a time limit.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::LineLog;

/// Exit status and output of a finished program.
pub struct Output {
    pub program: String,
    /// Exit code; `None` when a signal ended the program.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Output {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            formatter,
            "{} exited with {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.program, self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `command` to completion, writing `stdin` to it if given, and kills it and panics
/// when it runs longer than `timeout`.
pub fn run(mut command: Command, stdin: Option<&str>, timeout: Duration) -> Output {
    let program = format!("{command:?}");
    command
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command
        .spawn()
        .unwrap_or_else(|error| panic!("failed to start {program}: {error}"));
    let stdout = LineLog::capture(child.stdout.take().unwrap());
    let stderr = LineLog::capture(child.stderr.take().unwrap());
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        // A program that exits without reading its input closes the pipe. Its exit status
        // then shows the test what happened, so a write error is ignored.
        let _ = pipe.write_all(input.as_bytes());
    }

    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait failed") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{program} did not finish within {timeout:?}; killed it\n--- stdout ---\n{}\n--- stderr ---\n{}",
                stdout.text(),
                stderr.text()
            );
        }
        thread::sleep(Duration::from_millis(10));
    };

    // A grandchild that inherited the pipes could keep them open, so this wait is bounded.
    stdout.wait_closed(Duration::from_secs(2));
    stderr.wait_closed(Duration::from_secs(2));

    Output {
        program,
        code: status.code(),
        stdout: stdout.text(),
        stderr: stderr.text(),
    }
}

/// Panics with an install hint when `program` is not on `PATH`.
pub fn require_program(program: &str, debian_package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(program))))
        .unwrap_or(false);
    assert!(
        found,
        "`{program}` not found on PATH: install the Debian package {debian_package} \
         (`apt-get install {debian_package}`), or run scripts/test, which installs it"
    );
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|metadata| metadata.is_file() && metadata.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}
