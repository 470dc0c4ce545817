//! Error type of the testbed crate.

use std::process::ExitStatus;

/// Errors from creating namespaces, running commands in them, or writing test files.
#[derive(Debug, thiserror::Error)]
pub enum TestbedError {
    /// The program could not be started (or talked to) at all.
    #[error("could not run `{command}`: {source}")]
    Spawn {
        /// The full command line.
        command: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The program ran but exited unsuccessfully.
    #[error("`{command}` failed ({status}); stderr:\n{stderr}")]
    Failed {
        /// The full command line.
        command: String,
        /// How the program exited.
        status: ExitStatus,
        /// Everything the program wrote to stderr.
        stderr: String,
    },
    /// A file or directory of the test could not be written.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
}
