#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod engine;
mod error;
mod images;
mod logs;
mod pull;
mod spec;

pub use client::{Containerd, DEFAULT_NAMESPACE, DEFAULT_SOCKET};
pub use engine::{connect, ContainerdEngine, ContainerdExec, ContainerdManager};
pub use logs::{MAX_FILE_BYTES, ROTATED_FILES};
