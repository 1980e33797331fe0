#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod convert;
mod engine;
mod error;
mod exec;
mod frames;
mod pull;
mod stream;

pub use engine::{connect, PodmanEngine, PodmanManager, DEFAULT_ENDPOINT};
pub use exec::PodmanExec;
