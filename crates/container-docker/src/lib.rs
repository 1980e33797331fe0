#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod convert;
mod engine;
mod error;
mod exec;
mod pull;

pub use engine::{connect, DockerEngine, DockerManager, DEFAULT_ENDPOINT};
pub use exec::DockerExec;
