//! Why a config cannot be run: [`ConfigError`] names the file and position or the key path,
//! and [`Rejected`] keeps the warnings gathered before it. Every reader (taurus, jmx, quick,
//! criteria) returns these; they live apart from the crate root so that the readers do not
//! import the root that imports them.

use std::path::PathBuf;

/// Why a config cannot be run; each names the file and position, or the key path.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConfigError {
    /// A file could not be read.
    #[error("cannot read {}: {message}", file.display())]
    Read {
        /// The file.
        file: PathBuf,
        /// Why.
        message: String,
    },
    /// A file is not valid YAML/JSON.
    #[error("{}: {message}", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// The parser's message, with line and column.
        message: String,
    },
    /// A value is not acceptable.
    #[error("{path}: {message}")]
    Invalid {
        /// The key path, e.g. `execution.0.hold-for`.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// A `-o` override is malformed.
    #[error("-o {text}: {message}")]
    Override {
        /// The override as given.
        text: String,
        /// What is wrong.
        message: String,
    },
}

/// A config that failed validation, with the warnings gathered before the error (they are
/// often the reason: a misspelt key is ignored with a warning, then a required one is missing).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{error}")]
pub struct Rejected {
    /// What is wrong.
    pub error: ConfigError,
    /// Warnings gathered before it.
    pub warnings: Vec<String>,
}

impl From<ConfigError> for Rejected {
    fn from(error: ConfigError) -> Self {
        Self {
            error,
            warnings: Vec::new(),
        }
    }
}
