//! How loading and running a model fail.

use super::queue::Busy;

/// Why a model could not be loaded: one message meant for the person starting the server.
#[derive(Debug)]
pub struct LoadError(pub String);

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a run failed.
#[derive(Clone, Debug)]
pub enum RunError {
    /// tract returned an error.
    Failed(String),
    /// tract panicked; the panic was caught and the plan is unharmed (it is immutable).
    Panicked(String),
    /// Too many requests are already waiting for the batcher.
    Busy(Busy),
    /// The request's caller left while it waited for its batch; it was not run.
    CallerLeft,
}
