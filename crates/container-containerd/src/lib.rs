#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

mod client;
mod error;
mod images;
mod pull;

pub use client::{Containerd, DEFAULT_NAMESPACE, DEFAULT_SOCKET};
