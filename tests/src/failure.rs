//! How a case fails: a message with the place it failed, built by the `ensure!` macros or by
//! `?` on a library error.

use std::fmt;
use std::panic::Location;

use container::{Error, ErrorKind};

/// Why a case failed: one readable message that starts with `file:line`.
#[derive(Debug)]
pub struct Failure {
    message: String,
}

impl Failure {
    /// A failure with `message`, located at the caller.
    #[track_caller]
    pub fn new(message: impl Into<String>) -> Self {
        let loc = Location::caller();
        Failure::at(loc.file(), loc.line(), message)
    }

    /// A failure with `message` at `file:line` (used by the macros).
    pub fn at(file: &str, line: u32, message: impl Into<String>) -> Self {
        let file = file.rsplit("src/").next().unwrap_or(file);
        Failure {
            message: format!("{file}:{line}: {}", message.into()),
        }
    }

    /// The message, with its location.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The same failure with `context` in front of the message.
    pub fn context(self, context: impl fmt::Display) -> Self {
        Failure {
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// `?` on a library call that was expected to succeed: the error (kind, context and
/// source chain) becomes the failure, located at the `?`.
impl From<Error> for Failure {
    #[track_caller]
    fn from(e: Error) -> Self {
        Failure::new(format!("unexpected error: {}", describe(&e)))
    }
}

impl From<std::io::Error> for Failure {
    #[track_caller]
    fn from(e: std::io::Error) -> Self {
        Failure::new(format!("host I/O error: {e}"))
    }
}

/// The error's Display line, its kind and its source chain.
pub fn describe(e: &Error) -> String {
    use std::error::Error as _;
    let mut text = format!("{e} [kind {:?}]", e.kind());
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(&format!(" <- {s}"));
        source = s.source();
    }
    text
}

/// Asserts that `result` is an error of `kind`; returns the error for further checks.
#[track_caller]
pub fn expect_kind<T: fmt::Debug>(
    result: Result<T, Error>,
    kind: ErrorKind,
    what: &str,
) -> Result<Error, Failure> {
    match result {
        Ok(v) => Err(Failure::new(format!(
            "{what}: expected a {kind:?} error, got Ok({v:?})"
        ))),
        Err(e) if e.kind() == kind => Ok(e),
        Err(e) => Err(Failure::new(format!(
            "{what}: expected a {kind:?} error, got {}",
            describe(&e)
        ))),
    }
}

/// Fails the case with a formatted message unless `cond` holds.
#[macro_export]
macro_rules! ensure {
    ($cond:expr, $($arg:tt)+) => {
        if !$cond {
            return Err($crate::Failure::at(file!(), line!(), format!($($arg)+)));
        }
    };
}

/// Fails the case unless `left == right`, showing both.
#[macro_export]
macro_rules! ensure_eq {
    ($left:expr, $right:expr, $($arg:tt)+) => {
        match (&$left, &$right) {
            (left, right) => {
                if left != right {
                    return Err($crate::Failure::at(
                        file!(),
                        line!(),
                        format!("{}: {:?} != {:?}", format!($($arg)+), left, right),
                    ));
                }
            }
        }
    };
}

/// Fails the case with a formatted message.
#[macro_export]
macro_rules! fail {
    ($($arg:tt)+) => {
        return Err($crate::Failure::at(file!(), line!(), format!($($arg)+)))
    };
}
