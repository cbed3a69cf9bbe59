//! The command line: flags and `ONNX_SERVE_*` variables to settings (`args`), where the
//! model comes from (`source`), and the commands: serve (the default), `inspect`,
//! `predict` and `healthcheck`.
//!
//! Exit codes: 0 after a clean shutdown; 1 when serving failed (the listener died, or the
//! drain deadline passed) or a one-shot command's answer is an error; 2 when it could not
//! start (bad flags, a model tract cannot load, an address it cannot bind).

mod args;
mod embedded;
mod healthcheck;
mod inspect;
mod model_path;
mod predict;
mod serve;
mod source;

pub use args::{Cli, Command, ServeArgs, parse_duration, parse_size};

use crate::ops::logging;
use clap::Parser;
use log::error;
use std::process::ExitCode;

const CANNOT_START: u8 = 2;

/// Parses the command line, runs the command, and returns its exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let code = match cli.command {
        Some(Command::Inspect) => inspect::run(&cli),
        Some(Command::Predict) => predict::run(&cli),
        Some(Command::Healthcheck { ref path, timeout }) => healthcheck::run(&cli, path, timeout),
        None => serve::run(&cli),
    };
    // Log lines are written by a thread of their own: let it finish before exiting.
    logging::flush();
    code
}

fn init_logging(cli: &Cli) {
    logging::init(cli.serve.log_format);
    // A panic is logged as one line, never a raw trace on stderr; the request that hit it
    // gets a 500 and the server goes on (http/wrap.rs).
    std::panic::set_hook(Box::new(|info| {
        error!("{info}");
        logging::flush();
    }));
}

/// Logs the message and returns the "could not start" exit code.
fn cannot_start(message: impl std::fmt::Display) -> ExitCode {
    error!("{message}");
    ExitCode::from(CANNOT_START)
}
