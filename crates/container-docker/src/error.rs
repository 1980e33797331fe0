//! Every Docker error becomes a core [`Error`] here, in one place: by HTTP status, and by
//! text for the errors Docker sends inside a 200 stream (pull) or with a coarse status.

use container_core::error::{
    io_before_send, kind_for_engine_text, kind_for_http_status, transport_failure,
};
use container_core::raw::Removal;
use container_core::{Error, ErrorKind, OutputChunk, Result};

/// Maps a bollard error to the core taxonomy (see `docs/adr/0001-error-taxonomy.md`).
/// The retry status is the kind's default; the manager settles it by the operation. A
/// failure to connect at all is marked [`Error::before_send`].
pub(crate) fn map_error(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
    let before_send = match &e {
        B::IOError { err } => io_before_send(err),
        B::SocketNotFoundError(_) => true,
        B::HyperLegacyError { err } if err.is_connect() => true,
        B::HyperResponseError { .. } | B::HyperLegacyError { .. } => {
            transport_failure(&e).is_some_and(|t| t.before_send)
        }
        _ => false,
    };
    let (kind, message) = match &e {
        B::DockerResponseServerError {
            status_code,
            message,
        } => (
            kind_for_status(*status_code, message),
            message.trim().to_string(),
        ),
        B::DockerStreamError { error } => (kind_for_text(error), error.clone()),
        B::RequestTimeoutError => (
            ErrorKind::Timeout,
            "the engine did not answer in time".into(),
        ),
        B::IOError { err } => (
            // A body cut off midway (the engine went away): bollard passes hyper's
            // error on as the text of an I/O error of kind Other.
            transport_failure(err).map_or_else(|| ErrorKind::from_io(err), |t| t.kind),
            "i/o error talking to the engine".into(),
        ),
        B::SocketNotFoundError(path) => (
            ErrorKind::Unavailable,
            format!("no engine socket at {path}"),
        ),
        B::HyperResponseError { .. } | B::HyperLegacyError { .. } => (
            transport_failure(&e).map_or(ErrorKind::Unavailable, |t| t.kind),
            "connection to the engine failed".into(),
        ),
        B::UnsupportedURISchemeError { uri } => (
            ErrorKind::InvalidInput,
            format!("unsupported endpoint scheme in {uri}"),
        ),
        B::CertPathError { .. }
        | B::CertMultipleKeys { .. }
        | B::CertParseError { .. }
        | B::NoHomePathError
        | B::NoNativeCertsError { .. }
        | B::LoadNativeCertsErrors { .. } => (
            ErrorKind::InvalidInput,
            "TLS configuration (DOCKER_CERT_PATH) is not usable".into(),
        ),
        B::URLParseError { .. } | B::InvalidURIError { .. } | B::InvalidURIPartsError { .. } => (
            ErrorKind::InvalidInput,
            "invalid endpoint or request URI".into(),
        ),
        _ => (ErrorKind::Internal, "unexpected engine error".into()),
    };
    let mapped = Error::new(kind, message).with_source(e);
    if before_send {
        mapped.before_send()
    } else {
        mapped
    }
}

/// A container removal's result: "removal already in progress" (409) means another
/// caller is removing it.
pub(crate) fn removal(r: std::result::Result<(), bollard::errors::Error>) -> Result<Removal> {
    match r {
        Ok(()) => Ok(Removal::Removed),
        Err(bollard::errors::Error::DockerResponseServerError {
            status_code: 409,
            message,
        }) if message.contains("already in progress") => Ok(Removal::InProgress),
        Err(e) => Err(map_error(e)),
    }
}

/// Docker's own texts for a state that forbids the operation.
const CONFLICTS: &[&str] = &[
    "is not running",
    "is already in use",
    "is in use",
    "conflict",
    "is paused",
    "is restarting",
];

/// The exit code Docker 20.10 reports for an exec whose binary could not start.
pub(crate) const RUNTIME_FAILED: i64 = 126;

/// What the runtime's own "exec failed" message (first bytes of stdout) says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RuntimeFailure {
    /// The binary could not start: the exit code a shell gives (127, 126).
    Exit(i64),
    /// The container stopped or is stopping: the exec never ran.
    NotRunning,
}

/// Docker 20.10 reports an exec whose binary cannot start as exit 126 with the runtime's
/// message on stdout. Normalise to what a shell (and the Docker CLI) says: 127 for "not
/// found", 126 for "not executable", message on stderr; an exec into a container that is
/// stopping is `Conflict`, as on every backend.
pub(crate) fn runtime_failure(chunk: &OutputChunk) -> Option<RuntimeFailure> {
    let text = String::from_utf8_lossy(&chunk.data).to_ascii_lowercase();
    if !text.starts_with("oci runtime exec failed") {
        return None;
    }
    let has = |p: &str| text.contains(p);
    Some(
        if has("stopped") || has("not running") || has("container does not exist") {
            RuntimeFailure::NotRunning
        } else {
            RuntimeFailure::Exit(
                container_core::error::shell_status_for_runtime_text(&text)
                    .unwrap_or(RUNTIME_FAILED),
            )
        },
    )
}

/// The exit code to report: the engine's, except that the runtime's own "exec failed"
/// exit (126) becomes what a shell says (`runtime`, from [`runtime_failure`]). A process
/// that ran and exited with any other code keeps it, whatever its output said.
pub(crate) fn normalised_exit(engine: Option<i64>, runtime: Option<i64>) -> Option<i64> {
    match (engine, runtime) {
        (Some(RUNTIME_FAILED), Some(shell)) => Some(shell),
        (engine, _) => engine,
    }
}

/// The error of an exec into a container that stopped under it.
pub(crate) fn not_running(chunk: &OutputChunk) -> Error {
    let text = String::from_utf8_lossy(&chunk.data);
    Error::new(
        ErrorKind::Conflict,
        format!("the container is not running: {}", text.trim()),
    )
}

fn kind_for_status(status: u16, message: &str) -> ErrorKind {
    kind_for_http_status(status).unwrap_or_else(|| kind_for_text(message))
}

/// Kind for an error that only comes as text (pull stream errors, coarse 500s).
fn kind_for_text(text: &str) -> ErrorKind {
    kind_for_engine_text(text, CONFLICTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::errors::Error as B;

    fn status(code: u16, msg: &str) -> Error {
        map_error(B::DockerResponseServerError {
            status_code: code,
            message: msg.into(),
        })
    }

    fn stream(msg: &str) -> Error {
        map_error(B::DockerStreamError { error: msg.into() })
    }

    #[test]
    fn statuses_map_with_the_engine_text() {
        let e = status(400, "bind source path does not exist");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(
            status(404, "pull access denied for x").kind(),
            ErrorKind::NotFound
        );
        let name = status(409, "Conflict. The container name \"/x\" is already in use");
        assert_eq!(name.kind(), ErrorKind::Conflict);
        assert!(!name.is_retryable());
        // A 500 is read by its text: Docker's own state texts, then the shared table.
        assert_eq!(
            status(500, "Container abc is paused").kind(),
            ErrorKind::Conflict
        );
        let limited = status(500, "toomanyrequests: slow down");
        assert_eq!(limited.kind(), ErrorKind::RateLimited);
        assert!(limited.is_retryable());
        assert_eq!(status(500, "something broke").kind(), ErrorKind::Internal);
        assert!(status(503, "unavailable").is_retryable());
    }

    #[test]
    fn stream_errors_map_by_text() {
        let missing = stream(
            "pull access denied for nope, repository does not exist or may require 'docker login'",
        );
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(!missing.is_retryable());
        let busy = stream("received unexpected HTTP status: 503 Service Unavailable");
        assert_eq!(busy.kind(), ErrorKind::Unavailable);
        assert!(busy.is_retryable());
        let broken = stream("filesystem layer verification failed");
        assert_eq!(broken.kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_dns_failure_in_a_pull_is_unavailable_and_retryable() {
        let e =
            stream("Get \"https://nope.example/v2/\": dial tcp: lookup nope.example: no such host");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.is_retryable(), "{e}");
        let e = status(
            500,
            "Get \"https://nope.example/v2/\": dial tcp: lookup nope.example on 127.0.0.11:53: no such host",
        );
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert_eq!(status(404, "No such image: x").kind(), ErrorKind::NotFound);
    }

    #[test]
    fn an_engine_deadline_in_a_pull_is_a_timeout_retried_as_the_operation_allows() {
        let text = "Get \"https://registry-1.docker.io/v2/\": context deadline exceeded";
        let e = stream(text);
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(
            e.settle_retryable(true).is_retryable(),
            "pull is idempotent"
        );
        assert!(!stream(text).settle_retryable(false).is_retryable());
    }

    #[test]
    fn transport_errors_are_unavailable_and_retryable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = map_error(B::IOError { err: io });
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(e.is_before_send(), "refused: nothing was sent");
        let e = map_error(B::SocketNotFoundError("/x.sock".into()));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_before_send());
        // A reset may come after the request was sent: the manager decides by the
        // operation whether that is retryable.
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = map_error(B::IOError { err: reset });
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.is_before_send());
        assert!(!e.settle_retryable(false).is_retryable());
        let e = map_error(B::RequestTimeoutError);
        assert_eq!(e.kind(), ErrorKind::Timeout);
        assert!(
            !e.is_retryable(),
            "the caller decides whether the call was idempotent"
        );
        let e = map_error(B::UnsupportedURISchemeError {
            uri: "ftp://x".into(),
        });
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn runtime_messages_normalise_exit_codes() {
        let nf = "OCI runtime exec failed: exec failed: unable to start container process: \
                  exec: \"/nonexistent\": stat /nonexistent: no such file or directory: unknown";
        assert_eq!(
            runtime_failure(&OutputChunk::new(container_core::StreamKind::Stdout, nf)),
            Some(RuntimeFailure::Exit(127))
        );
        let np = "OCI runtime exec failed: exec failed: unable to start container process: \
                  exec: \"/etc/passwd\": permission denied: unknown";
        assert_eq!(
            runtime_failure(&OutputChunk::new(container_core::StreamKind::Stdout, np)),
            Some(RuntimeFailure::Exit(126))
        );
        assert_eq!(
            runtime_failure(&OutputChunk::new(
                container_core::StreamKind::Stdout,
                "hello"
            )),
            None
        );
    }

    #[test]
    fn only_the_runtime_failure_exit_is_rewritten() {
        assert_eq!(normalised_exit(Some(126), Some(127)), Some(127));
        assert_eq!(
            normalised_exit(Some(0), Some(127)),
            Some(0),
            "a process that printed the runtime's words and exited 0 keeps its 0"
        );
        assert_eq!(normalised_exit(Some(3), None), Some(3));
        assert_eq!(
            normalised_exit(None, Some(127)),
            None,
            "no exit code is not made up"
        );
    }

    #[test]
    fn an_exec_into_a_stopping_container_is_a_conflict() {
        let text =
            "OCI runtime exec failed: exec failed: cannot exec in a stopped container: unknown";
        let chunk = OutputChunk::new(container_core::StreamKind::Stdout, text);
        assert_eq!(runtime_failure(&chunk), Some(RuntimeFailure::NotRunning));
        assert_eq!(not_running(&chunk).kind(), ErrorKind::Conflict);
    }

    #[test]
    fn removal_in_progress_is_not_an_error() {
        let busy = B::DockerResponseServerError {
            status_code: 409,
            message: "removal of container x is already in progress".into(),
        };
        assert_eq!(
            removal(Err(busy)).expect("in progress"),
            Removal::InProgress
        );
        let running = B::DockerResponseServerError {
            status_code: 409,
            message: "You cannot remove a running container x".into(),
        };
        let e = removal(Err(running)).expect_err("running");
        assert_eq!(e.kind(), ErrorKind::Conflict);
    }

    #[test]
    fn display_says_the_engine_message_once() {
        let e = status(404, "No such container: x").context(
            container_core::BackendKind::Docker,
            container_core::Operation::Inspect,
            "x",
        );
        assert_eq!(
            e.to_string(),
            "not found at docker.inspect on x: No such container: x"
        );
    }

    #[test]
    fn display_is_one_line() {
        let e = stream("line one\nline two").context(
            container_core::BackendKind::Docker,
            container_core::Operation::Pull,
            "img",
        );
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
