//! The container-rs conformance suite: every case (1-67) of the behaviour contract
//! (`conformance.md`), written once against `&dyn ContainerManager` and run unchanged
//! against each backend's real engine.
//!
//! Each backend has a `harness = false` test binary that calls [`run`] with a name and a
//! [`Factory`] that builds its manager; a backend outside this workspace runs the suite
//! against itself the same way (`docs/conformance.md`, "Running the suite on your own
//! backend"):
//!
//! ```text
//! cargo test -p container-conformance --features docker --test docker
//! cargo test -p container-conformance --features docker --test docker -- c34 --test-threads 1
//! ```
//!
//! libtest's arguments (filters, `--exact`, `--skip`, `--list`, `--test-threads`,
//! `--include-ignored`) work as usual. Results go to `<target>/conformance/<backend>.json`
//! (`<backend>.partial.json` when a filter, `--skip` or `--ignored` selects trials); see
//! [`results_path`]. Timing assertions add [`SLACK`] (3 s) for a loaded 2-core machine.
//!
//! Rules (from the contract): real engines only; each case makes its own objects under
//! unique names in the run's session and removes them; after all trials the harness lists
//! what still carries the session's labels and FAILS the run if anything is left; every
//! case is registered every time (`[feature]` cases a backend lacks are ignored with the
//! reason `unsupported:<capability>`, and a companion check asserts `Unsupported`); an
//! unreachable engine, a wrong engine, or a run where no case executed is a failed run.

pub mod cases;
pub mod ctx;
pub mod failure;
pub mod faults;
mod harness;
pub mod support;

pub use cases::{Case, Section, CASES};
pub use container::BackendKind;
pub use ctx::{factory, Ctx, EngineCli, Factory, Tracker, SLACK};
pub use failure::Failure;
pub use harness::{results_path, run, run_selected, run_with_census, Census, CASE_TIMEOUT};
