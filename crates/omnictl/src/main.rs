//! omnictl: the command-line client for omni.
//!
//! Arguments are parsed into plain structs (`args`), resolved against the
//! environment and config file (`config`), and run by `commands`. Output
//! formats live in `output`. Errors are printed once, with their causes, on
//! stderr; the exit code is then 1. A closed stdout (broken pipe) exits 0;
//! a broken pipe elsewhere (a request cut off) is an error (see `stdout`).

mod args;
mod commands;
mod config;
mod kinds;
mod manifest;
mod output;
mod stdout;
mod yaml;

use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version land here too.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::new(e).context("cannot start the async runtime")),
    };
    let mut out = BufWriter::new(stdout::Stdout(io::stdout()));
    let result = runtime
        .block_on(commands::run(cli, &mut out))
        .and_then(|()| Ok(out.flush()?));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if stdout::is_stdout_closed(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Whatever was printed before the error goes out first.
            let _ = out.flush();
            fail(&e)
        }
    }
}

fn fail(e: &anyhow::Error) -> ExitCode {
    let _ = writeln!(io::stderr(), "error: {}", error_chain(e));
    ExitCode::FAILURE
}

/// The error and its causes on one line, skipping causes a message already
/// includes.
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_is_one_line_without_repeats() {
        let inner = io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused");
        let e = anyhow::Error::new(inner)
            .context("cannot reach omni at http://x")
            .context("cannot reach omni at http://x");
        assert_eq!(
            error_chain(&e),
            "cannot reach omni at http://x: connection refused"
        );
    }
}
