//! The one case list: every case of `docs/conformance` (the contract in
//! `conformance.md`), numbered as there, registered for every backend.

use std::fmt;
use std::future::Future;
use std::pin::Pin;

use container::Capabilities;

use crate::ctx::Ctx;
use crate::failure::Failure;

pub mod concurrency;
pub mod connection;
pub mod errors;
pub mod exec;
pub mod features;
pub mod files;
pub mod host_safety;
pub mod idempotency;
pub mod image;
pub mod kill;
pub mod lifecycle;
pub mod mounts;
pub mod ownership;
pub mod real_images;
pub mod steps;
pub mod streaming;
pub mod timeouts;
pub mod volumes;

/// What a case returns.
pub type CaseFuture<'a> = Pin<Box<dyn Future<Output = Result<(), Failure>> + Send + 'a>>;

/// A case, or the negative check of a `[feature]` case.
pub type CaseFn = for<'a> fn(&'a Ctx) -> CaseFuture<'a>;

/// The sections of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)] // the contract's section headings
pub enum Section {
    Image,
    Lifecycle,
    Idempotency,
    Exec,
    Streaming,
    Timeouts,
    Mounts,
    Volumes,
    Ownership,
    Errors,
    Concurrency,
    Files,
    Features,
    Kill,
    Steps,
    Connection,
    HostSafety,
    RealImages,
}

impl Section {
    /// The module name, used as the trial name prefix.
    pub fn as_str(self) -> &'static str {
        match self {
            Section::Image => "image",
            Section::Lifecycle => "lifecycle",
            Section::Idempotency => "idempotency",
            Section::Exec => "exec",
            Section::Streaming => "streaming",
            Section::Timeouts => "timeouts",
            Section::Mounts => "mounts",
            Section::Volumes => "volumes",
            Section::Ownership => "ownership",
            Section::Errors => "errors",
            Section::Concurrency => "concurrency",
            Section::Files => "files",
            Section::Features => "features",
            Section::Kill => "kill",
            Section::Steps => "steps",
            Section::Connection => "connection",
            Section::HostSafety => "host_safety",
            Section::RealImages => "real_images",
        }
    }
}

/// The capability a `[feature]` case needs, and the check that runs when it is missing.
#[derive(Clone, Copy)]
pub struct Feature {
    /// The field of [`Capabilities`] (`init`, `resource_limits`, ...).
    pub capability: &'static str,
    /// Reads that field.
    pub supported: fn(&Capabilities) -> bool,
    /// Runs every time: without the capability it asserts the operation returns
    /// `Unsupported`; with it, that the operation is not refused as unsupported.
    pub check: CaseFn,
}

impl fmt::Debug for Feature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Feature")
            .field("capability", &self.capability)
            .finish_non_exhaustive()
    }
}

/// One case of the contract.
#[derive(Clone, Copy)]
pub struct Case {
    /// Its number in the contract.
    pub number: u32,
    /// Short snake_case name.
    pub name: &'static str,
    /// Its section.
    pub section: Section,
    /// The case.
    pub run: CaseFn,
    /// For `[feature]` cases: the capability it needs.
    pub feature: Option<Feature>,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("number", &self.number)
            .field("name", &self.name)
            .field("section", &self.section)
            .field("feature", &self.feature)
            .finish_non_exhaustive()
    }
}

impl Case {
    /// The trial name: `<section>::c<NN>_<name>`.
    pub fn trial_name(&self) -> String {
        format!(
            "{}::c{:02}_{}",
            self.section.as_str(),
            self.number,
            self.name
        )
    }
}

macro_rules! case {
    ($n:literal, $section:ident, $name:literal, $f:path) => {
        Case {
            number: $n,
            name: $name,
            section: Section::$section,
            run: {
                fn run(ctx: &Ctx) -> CaseFuture<'_> {
                    Box::pin($f(ctx))
                }
                run
            },
            feature: None,
        }
    };
    ($n:literal, $section:ident, $name:literal, $f:path, feature($cap:ident, $check:path)) => {
        Case {
            number: $n,
            name: $name,
            section: Section::$section,
            run: {
                fn run(ctx: &Ctx) -> CaseFuture<'_> {
                    Box::pin($f(ctx))
                }
                run
            },
            feature: Some(Feature {
                capability: stringify!($cap),
                supported: {
                    fn supported(c: &Capabilities) -> bool {
                        c.$cap
                    }
                    supported
                },
                check: {
                    fn check(ctx: &Ctx) -> CaseFuture<'_> {
                        Box::pin($check(ctx))
                    }
                    check
                },
            }),
        }
    };
}

/// Every case, in contract order.
pub static CASES: &[Case] = &[
    case!(1, Image, "pull_by_tag", image::case_01_pull_by_tag),
    case!(
        2,
        Image,
        "pull_by_digest_and_bare_name",
        image::case_02_pull_by_digest
    ),
    case!(
        3,
        Image,
        "pull_missing_repository",
        image::case_03_pull_missing_repository
    ),
    case!(
        4,
        Image,
        "malformed_reference",
        image::case_04_malformed_reference
    ),
    case!(5, Image, "pull_progress", image::case_05_pull_progress),
    case!(
        6,
        Image,
        "pull_deadline_and_cancel",
        image::case_06_pull_deadline
    ),
    case!(7, Image, "remove_image", image::case_07_remove_image),
    case!(
        8,
        Lifecycle,
        "create_and_labels",
        lifecycle::case_08_create_and_labels
    ),
    case!(9, Lifecycle, "start", lifecycle::case_09_start),
    case!(10, Lifecycle, "exit_code", lifecycle::case_10_exit_code),
    case!(
        11,
        Lifecycle,
        "stop_grace_kill",
        lifecycle::case_11_stop_grace_kill
    ),
    case!(
        12,
        Lifecycle,
        "stop_trapped_term",
        lifecycle::case_12_stop_trapped_term
    ),
    case!(13, Lifecycle, "stop_signal", lifecycle::case_13_stop_signal),
    case!(14, Lifecycle, "restart", lifecycle::case_14_restart),
    case!(
        15,
        Lifecycle,
        "remove_stopped",
        lifecycle::case_15_remove_stopped
    ),
    case!(
        16,
        Lifecycle,
        "remove_running",
        lifecycle::case_16_remove_running
    ),
    case!(17, Lifecycle, "logs_follow", lifecycle::case_17_logs_follow),
    case!(
        18,
        Idempotency,
        "start_stop_twice",
        idempotency::case_18_start_stop_twice
    ),
    case!(
        19,
        Idempotency,
        "missing_container",
        idempotency::case_19_missing_container
    ),
    case!(
        20,
        Idempotency,
        "create_twice_same",
        idempotency::case_20_create_twice_same
    ),
    case!(
        21,
        Idempotency,
        "create_twice_different",
        idempotency::case_21_create_twice_different
    ),
    case!(
        22,
        Idempotency,
        "remove_then_create",
        idempotency::case_22_remove_then_create
    ),
    case!(
        23,
        Idempotency,
        "volume_twice",
        idempotency::case_23_volume_twice
    ),
    case!(24, Exec, "echo", exec::case_24_echo),
    case!(25, Exec, "nonzero_exit", exec::case_25_nonzero_exit),
    case!(26, Exec, "stderr_separate", exec::case_26_stderr_separate),
    case!(
        27,
        Exec,
        "not_found_not_executable",
        exec::case_27_not_found
    ),
    case!(28, Exec, "env_workdir_user", exec::case_28_env_workdir_user),
    case!(
        29,
        Exec,
        "stopped_or_missing",
        exec::case_29_stopped_or_missing
    ),
    case!(30, Exec, "stdin", exec::case_30_stdin),
    case!(31, Exec, "output_cap", exec::case_31_output_cap),
    case!(
        32,
        Streaming,
        "first_chunk_early",
        streaming::case_32_first_chunk_early
    ),
    case!(
        33,
        Streaming,
        "order_and_tags",
        streaming::case_33_order_and_tags
    ),
    case!(
        34,
        Streaming,
        "binary_64mib",
        streaming::case_34_binary_64mib
    ),
    case!(
        35,
        Streaming,
        "backpressure",
        streaming::case_35_backpressure
    ),
    case!(36, Streaming, "drop_midway", streaming::case_36_drop_midway),
    case!(37, Timeouts, "exec_timeout", timeouts::case_37_exec_timeout),
    case!(
        38,
        Timeouts,
        "drop_exec_future",
        timeouts::case_38_drop_exec_future
    ),
    case!(
        39,
        Timeouts,
        "unreachable_engine",
        timeouts::case_39_unreachable_engine
    ),
    case!(40, Mounts, "bind_rw", mounts::case_40_bind_rw),
    case!(41, Mounts, "bind_ro", mounts::case_41_bind_ro),
    case!(42, Mounts, "bind_symlink", mounts::case_42_bind_symlink),
    case!(43, Mounts, "bind_bad_paths", mounts::case_43_bind_bad_paths),
    case!(44, Mounts, "bind_ownership", mounts::case_44_bind_ownership),
    case!(45, Mounts, "tmpfs", mounts::case_45_tmpfs),
    case!(
        46,
        Mounts,
        "duplicate_target",
        mounts::case_46_duplicate_target
    ),
    case!(
        47,
        Volumes,
        "labels_and_filter",
        volumes::case_47_labels_and_filter
    ),
    case!(48, Volumes, "shared_data", volumes::case_48_shared_data),
    case!(49, Volumes, "in_use", volumes::case_49_in_use),
    case!(
        50,
        Ownership,
        "labels_everywhere",
        ownership::case_50_labels_everywhere
    ),
    case!(
        51,
        Ownership,
        "list_by_session",
        ownership::case_51_list_by_session
    ),
    case!(
        52,
        Ownership,
        "cleanup_session",
        ownership::case_52_cleanup_session
    ),
    case!(
        53,
        Ownership,
        "foreign_survives",
        ownership::case_53_foreign_survives
    ),
    case!(
        54,
        Errors,
        "invalid_input_no_engine_call",
        errors::case_54_invalid_input
    ),
    case!(55, Errors, "error_context", errors::case_55_error_context),
    case!(
        56,
        Errors,
        "non_utf8_output",
        errors::case_56_non_utf8_output
    ),
    case!(
        57,
        Concurrency,
        "parallel_create",
        concurrency::case_57_parallel_create
    ),
    case!(
        58,
        Concurrency,
        "parallel_exec",
        concurrency::case_58_parallel_exec
    ),
    case!(
        59,
        Concurrency,
        "parallel_remove",
        concurrency::case_59_parallel_remove
    ),
    case!(
        60,
        Concurrency,
        "stop_races_exec",
        concurrency::case_60_stop_races_exec
    ),
    case!(61, Files, "copy_from", files::case_61_copy_from),
    case!(62, Files, "copy_to", files::case_62_copy_to),
    case!(
        63,
        Files,
        "copy_missing_and_stopped",
        files::case_63_copy_missing_and_stopped
    ),
    case!(
        64,
        Features,
        "init",
        features::case_64_init,
        feature(init, features::check_64_init)
    ),
    case!(
        65,
        Features,
        "resource_limits",
        features::case_65_resource_limits,
        feature(resource_limits, features::check_65_resource_limits)
    ),
    case!(
        66,
        Features,
        "userns_keep_id",
        features::case_66_userns_keep_id,
        feature(userns_keep_id, features::check_66_userns_keep_id)
    ),
    case!(
        67,
        Features,
        "tty_exec",
        features::case_67_tty_exec,
        feature(tty_exec, features::check_67_tty_exec)
    ),
    case!(
        68,
        Kill,
        "build_container_survives_exec_timeouts",
        kill::case_68_build_container_survives_exec_timeouts
    ),
    case!(
        69,
        Kill,
        "other_containers_untouched",
        kill::case_69_other_containers_untouched
    ),
    case!(
        70,
        Kill,
        "exec_children_killed",
        kill::case_70_exec_children_killed
    ),
    case!(
        71,
        Steps,
        "background_child_holds_output",
        steps::case_71_background_child_holds_output
    ),
    case!(
        72,
        Steps,
        "redirected_output_runs_to_end",
        steps::case_72_redirected_output_runs_to_end
    ),
    case!(
        73,
        Steps,
        "deadline_holds_unread",
        steps::case_73_deadline_holds_unread
    ),
    case!(
        74,
        Steps,
        "drop_in_grace_still_kills",
        steps::case_74_drop_in_grace_still_kills
    ),
    case!(
        75,
        Steps,
        "daemonized_children_end_with_step",
        steps::case_75_daemonized_children_end_with_step
    ),
    case!(
        76,
        Features,
        "oom_flag_cleared_on_restart",
        features::case_76_oom_flag_cleared_on_restart,
        feature(resource_limits, features::check_65_resource_limits)
    ),
    case!(
        77,
        Connection,
        "connection_cut_mid_exec",
        connection::case_77_connection_cut_mid_exec
    ),
    case!(
        78,
        Connection,
        "unanswered_request_retried_only_when_idempotent",
        connection::case_78_unanswered_request_retried_only_when_idempotent
    ),
    case!(
        79,
        HostSafety,
        "hostile_copy_from",
        host_safety::case_79_hostile_copy_from
    ),
    case!(
        80,
        HostSafety,
        "copy_destination_symlink",
        host_safety::case_80_copy_destination_symlink
    ),
    case!(
        81,
        HostSafety,
        "sensitive_bind_sources",
        host_safety::case_81_sensitive_bind_sources
    ),
    case!(
        82,
        HostSafety,
        "foreign_container_on_our_volume",
        host_safety::case_82_foreign_container_on_our_volume
    ),
    case!(
        83,
        HostSafety,
        "copied_labels_other_mounts",
        host_safety::case_83_copied_labels_other_mounts
    ),
    case!(
        84,
        RealImages,
        "image_without_env",
        real_images::case_84_image_without_env
    ),
    case!(
        85,
        RealImages,
        "account_on_debian",
        real_images::case_85_account_on_debian
    ),
    case!(
        86,
        RealImages,
        "make_and_copy_out",
        real_images::case_86_make_and_copy_out
    ),
    case!(
        87,
        RealImages,
        "multiprocessing_timeout",
        real_images::case_87_multiprocessing_timeout
    ),
    case!(
        88,
        RealImages,
        "engine_host_resources",
        real_images::case_88_engine_host_resources
    ),
    case!(
        89,
        RealImages,
        "stdin_stream",
        real_images::case_89_stdin_stream
    ),
    case!(
        90,
        Concurrency,
        "parallel_pulls_of_one_image",
        concurrency::case_90_parallel_pulls
    ),
    case!(
        91,
        Features,
        "attach_stdin",
        features::case_91_attach_stdin,
        feature(attach_stdin, features::check_91_attach_stdin)
    ),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_every_case_once_in_order() {
        let numbers: Vec<u32> = CASES.iter().map(|c| c.number).collect();
        assert_eq!(numbers, (1..=91).collect::<Vec<_>>());
        let features: Vec<u32> = CASES
            .iter()
            .filter(|c| c.feature.is_some())
            .map(|c| c.number)
            .collect();
        assert_eq!(features, vec![64, 65, 66, 67, 76, 91]);
        let mut names: Vec<String> = CASES.iter().map(Case::trial_name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), CASES.len());
    }
}
