#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod archive;
pub mod error;
pub mod exec;
#[cfg(test)]
mod fuzz;
pub mod labels;
pub mod manager;
pub mod oom;
pub mod poll;
pub mod proctree;
pub mod raw;
pub mod reference;
pub mod retry;
pub mod signal;
pub mod ssh;
pub mod types;
pub mod validate;

pub use error::{BoxError, Error, ErrorKind, Operation, Result};
pub use exec::{
    ExecControl, ExecEvent, ExecExit, ExecKiller, ExecOutput, ExecSource, ExecSpec, ExecStream,
    Line, LineEvent, Lines, OutputChunk, StdinFeed, StdinStream, StreamKind,
};
pub use labels::Ownership;
pub use manager::{ContainerManager, LogStream};
pub use reference::ImageRef;
pub use retry::RetryPolicy;
pub use signal::Signal;
pub use types::*;

/// mockall mocks of [`ContainerManager`], for unit tests of code that uses it.
#[cfg(feature = "mock")]
pub mod mock {
    pub use crate::manager::MockContainerManager;
}
