#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod convert;
mod error;
mod exec;
mod manager;
mod pull;

pub use manager::{PodmanManager, DEFAULT_ENDPOINT};
