//! Questions on the terminal for `init`: plain answers on standard input, secrets without
//! echo on /dev/tty (through `rpassword`).

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{bail, Context};

use super::messages::{fill, Messages};

/// Attempts allowed for one question whose answer is invalid or typed differently twice.
const MAX_ATTEMPTS: usize = 3;

/// Asks the questions of one `init` run.
pub struct Prompter {
    text: &'static Messages,
}

impl Prompter {
    /// Returns a prompter, or an error when standard input is not a terminal, because then
    /// every answer must come from a flag with `--yes`.
    pub fn new(text: &'static Messages) -> anyhow::Result<Prompter> {
        if !std::io::stdin().is_terminal() {
            bail!("standard input is not a terminal, so init cannot ask its questions; pass --yes and give the answers as flags (see `lpiotia-mqtt init --help`)");
        }
        Ok(Prompter { text })
    }

    /// Prints a section title.
    pub fn section(&self, title: &str) -> anyhow::Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out)?;
        writeln!(out, "== {title} ==")?;
        Ok(())
    }

    /// Asks `question` with `default` shown in brackets; an empty answer returns `default`.
    /// `check` validates the answer, which is asked again (up to 3 times) when it fails.
    pub fn ask(
        &self,
        question: &str,
        default: &str,
        check: impl Fn(&str) -> anyhow::Result<()>,
    ) -> anyhow::Result<String> {
        for attempt in 1..=MAX_ATTEMPTS {
            {
                let mut out = std::io::stdout().lock();
                write!(out, "{question} [{default}]: ")?;
                out.flush()?;
            }
            let mut line = String::new();
            let read = std::io::stdin().lock().read_line(&mut line).context("cannot read the answer")?;
            if read == 0 {
                bail!("standard input closed before the question was answered: {question}");
            }
            let answer = line.trim();
            let answer = if answer.is_empty() { default } else { answer };
            match check(answer) {
                Ok(()) => return Ok(answer.to_owned()),
                Err(error) if attempt < MAX_ATTEMPTS => {
                    println!("{}", fill(self.text.invalid_answer, &[("error", &format!("{error:#}"))]));
                }
                Err(error) => return Err(error),
            }
        }
        unreachable!("the last attempt returns")
    }

    /// Asks for a new secret twice without echo. An empty first entry returns `None`.
    pub fn new_secret(&self, prompt: &str, again: &str) -> anyhow::Result<Option<String>> {
        for attempt in 1..=MAX_ATTEMPTS {
            let first = rpassword::prompt_password(prompt).context("cannot read from the terminal")?;
            if first.is_empty() {
                return Ok(None);
            }
            let second = rpassword::prompt_password(again).context("cannot read from the terminal")?;
            if first == second {
                return Ok(Some(first));
            }
            if attempt < MAX_ATTEMPTS {
                println!("{}", self.text.entries_differ);
            }
        }
        bail!("the two entries differed {MAX_ATTEMPTS} times; run init again")
    }

    /// Asks once for a secret without echo; it may be empty.
    pub fn secret(&self, prompt: &str) -> anyhow::Result<String> {
        rpassword::prompt_password(prompt).context("cannot read from the terminal")
    }

    /// Asks for an existing secret until `accept` returns true (up to 3 times). An empty
    /// entry returns `None`.
    pub fn existing_secret(
        &self,
        prompt: &str,
        rejected: &str,
        accept: impl Fn(&str) -> bool,
    ) -> anyhow::Result<Option<String>> {
        for attempt in 1..=MAX_ATTEMPTS {
            let secret = self.secret(prompt)?;
            if secret.is_empty() {
                return Ok(None);
            }
            if accept(&secret) {
                return Ok(Some(secret));
            }
            if attempt < MAX_ATTEMPTS {
                println!("{rejected}");
            }
        }
        bail!("wrong secret entered {MAX_ATTEMPTS} times; run init again")
    }
}
