//! Every Podman error becomes a core [`Error`] here, in one place: by HTTP status, and by
//! text for the coarse 500s libpod sends for conflicts and for the errors it reports
//! inside a 200 pull stream.

use container_core::error::{io_before_send, kind_for_engine_text, kind_for_http_status};
use container_core::raw::Removal;
use container_core::{Error, ErrorKind, Result};

/// Maps a podman-api error to the core taxonomy (see `docs/adr/0001-error-taxonomy.md`).
/// The retry status is the kind's default; the manager settles it by the operation. A
/// failure to connect at all is marked [`Error::before_send`].
pub(crate) fn map_error(e: podman_api::Error) -> Error {
    use podman_api::conn::Error as C;
    use podman_api::Error as P;
    let before_send = match &e {
        P::IO(err) | P::Error(C::IO(err)) => io_before_send(err),
        P::Error(C::Hyper(h)) => h.is_connect(),
        _ => false,
    };
    let (kind, message) = match &e {
        P::Fault { code, message } | P::Error(C::Fault { code, message }) => (
            kind_for_status(code.as_u16(), message),
            message.trim().trim_end_matches(':').trim().to_string(),
        ),
        P::ServerError(m) => {
            let text = format!("{m}");
            (kind_for_text(&text), text)
        }
        P::StringError(text) => (kind_for_text(text), text.clone()),
        P::IO(err) | P::Error(C::IO(err)) => (
            // A body cut off midway (the engine went away) is a hyper error wrapped in
            // an I/O error of kind Other: its cause decides.
            container_core::error::transport_failure(err)
                .map_or_else(|| ErrorKind::from_io(err), |t| t.kind),
            "i/o error talking to the engine".into(),
        ),
        P::Error(C::Hyper(h)) => (
            if h.is_timeout() {
                ErrorKind::Timeout
            } else {
                ErrorKind::Unavailable
            },
            "connection to the engine failed".into(),
        ),
        P::Error(C::ConnectionNotUpgraded) => (
            ErrorKind::Unavailable,
            "the engine did not upgrade the connection".into(),
        ),
        P::UnsupportedScheme(s) => (
            ErrorKind::InvalidInput,
            format!("unsupported endpoint scheme {s}"),
        ),
        P::MissingAuthority | P::InvalidUrl(_) | P::InvalidPort(_) | P::InvalidProtocol(_) => {
            (ErrorKind::InvalidInput, "invalid endpoint".into())
        }
        P::Error(C::InvalidUri(_)) => (ErrorKind::InvalidInput, "invalid request URI".into()),
        _ => (ErrorKind::Internal, "unexpected engine error".into()),
    };
    let mapped = Error::new(kind, message.replace('\n', " ")).with_source(e);
    if before_send {
        mapped.before_send()
    } else {
        mapped
    }
}

/// Ok for "already in the target state": libpod answers 304, which podman-api raises
/// as an error.
pub(crate) fn not_modified_ok(r: std::result::Result<(), podman_api::Error>) -> Result<()> {
    match r {
        Err(podman_api::Error::Fault { code, .. }) if code.as_u16() == 304 => Ok(()),
        other => other.map_err(map_error),
    }
}

/// A container removal's result: a removal "in progress" (any status but 404) means
/// another caller is removing it.
pub(crate) fn removal(r: std::result::Result<(), podman_api::Error>) -> Result<Removal> {
    match r.map_err(map_error) {
        Ok(()) => Ok(Removal::Removed),
        Err(e) if e.kind() != ErrorKind::NotFound && e.message().contains("in progress") => {
            Ok(Removal::InProgress)
        }
        Err(e) => Err(e),
    }
}

/// An error that only comes as text: a pull report's `error`, or a panic of the stream
/// decoder. Same table as [`map_error`].
pub(crate) fn text_error(text: &str) -> Error {
    Error::new(kind_for_text(text), text.trim().replace('\n', " "))
}

/// libpod's own texts for a state that forbids the operation (it answers most of them
/// with a 500).
const CONFLICTS: &[&str] = &[
    "already in use",
    "already exists",
    "container state improper",
    "can only create exec sessions on running containers",
    "can only kill running containers",
    "is not running",
    "is running",
    "is being used",
    "in use by",
    "image is in use",
    "conflict",
];

/// Kind for a status code; the text refines the coarse ones (libpod answers 500 for name
/// conflicts, "container state improper", "can only kill running containers", ...).
fn kind_for_status(status: u16, text: &str) -> ErrorKind {
    match status {
        // libpod answers 400 for some missing objects.
        400 if kind_for_text(text) == ErrorKind::NotFound => ErrorKind::NotFound,
        _ => kind_for_http_status(status).unwrap_or_else(|| kind_for_text(text)),
    }
}

/// Kind for an error that only comes as text (pull reports, coarse 500s).
fn kind_for_text(text: &str) -> ErrorKind {
    kind_for_engine_text(text, CONFLICTS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use containers_api::conn::hyper::StatusCode;

    fn status(code: u16, msg: &str) -> Error {
        map_error(podman_api::Error::Fault {
            code: StatusCode::from_u16(code).expect("status"),
            message: msg.into(),
        })
    }

    #[test]
    fn statuses_map_with_the_engine_text() {
        let e = status(400, "invalid reference format");
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
        assert!(std::error::Error::source(&e).is_some());
        // libpod answers 400 for some missing objects.
        assert_eq!(status(400, "no such volume v").kind(), ErrorKind::NotFound);
        assert_eq!(
            status(409, "volume is being used").kind(),
            ErrorKind::Conflict
        );
        assert!(status(503, "unavailable").is_retryable());
    }

    #[test]
    fn coarse_500s_map_by_text() {
        let rows = [
            ("error creating container storage: the container name \"x\" is already in use by abc. You have to remove that container to be able to reuse that name: that name is already in use", ErrorKind::Conflict),
            ("volume with name v already exists: volume already exists", ErrorKind::Conflict),
            ("can only create exec sessions on running containers: container state improper", ErrorKind::Conflict),
            ("cannot remove container abc as it is running - running or paused containers cannot be removed without force: container state improper", ErrorKind::Conflict),
            ("can only kill running containers. abc is in state exited: container state improper", ErrorKind::Conflict),
            ("no such container", ErrorKind::NotFound),
            ("image is in use by a container: image is being used", ErrorKind::Conflict),
            ("dial tcp 127.0.0.1:5000: connect: connection refused", ErrorKind::Unavailable),
            ("toomanyrequests: slow down", ErrorKind::RateLimited),
            ("context deadline exceeded", ErrorKind::Timeout),
            ("runtime exploded", ErrorKind::Internal),
        ];
        for (msg, kind) in rows {
            assert_eq!(status(500, msg).kind(), kind, "{msg}");
        }
    }

    #[test]
    fn pull_report_errors_map_by_text() {
        let missing = text_error("initializing source docker://r/x:1: reading manifest 1 in r/x: name unknown: repository name not known to registry");
        assert_eq!(missing.kind(), ErrorKind::NotFound);
        assert!(!missing.is_retryable());
        let refused = text_error("pinging container registry 127.0.0.1:5999: Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused");
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(refused.is_retryable());
    }

    #[test]
    fn a_dns_failure_in_a_pull_is_unavailable_and_retryable() {
        let text = "initializing source docker://nope.example/x:1: pinging container registry nope.example: Get \"https://nope.example/v2/\": dial tcp: lookup nope.example: no such host";
        let e = text_error(text);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert!(e.is_retryable(), "{e}");
        let e = status(500, text);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert_eq!(status(400, "no such volume v").kind(), ErrorKind::NotFound);
    }

    #[test]
    fn an_engine_deadline_in_a_pull_is_a_timeout_retried_as_the_operation_allows() {
        let text = "initializing source docker://r/x:1: pinging container registry r: Get \"https://r/v2/\": context deadline exceeded";
        let e = text_error(text);
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(
            e.settle_retryable(true).is_retryable(),
            "pull is idempotent"
        );
        assert!(!text_error(text).settle_retryable(false).is_retryable());
    }

    #[test]
    fn transport_errors_are_unavailable_and_retryable() {
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let e = map_error(podman_api::Error::IO(io));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(e.is_retryable());
        assert!(e.is_before_send(), "refused: nothing was sent");
        let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        let e = map_error(podman_api::Error::IO(reset));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert!(!e.is_before_send(), "a reset may come after the request");
        let e = map_error(podman_api::Error::UnsupportedScheme("ftp".into()));
        assert_eq!(e.kind(), ErrorKind::InvalidInput);
    }

    #[test]
    fn not_modified_is_success_and_removal_in_progress_is_not_an_error() {
        let fault = |code: u16, message: &str| podman_api::Error::Fault {
            code: StatusCode::from_u16(code).expect("status"),
            message: message.into(),
        };
        assert!(not_modified_ok(Err(fault(304, ""))).is_ok());
        let e = not_modified_ok(Err(fault(404, "no such container"))).expect_err("404");
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let busy = fault(500, "container x removal already in progress");
        assert_eq!(
            removal(Err(busy)).expect("in progress"),
            Removal::InProgress
        );
        let running = fault(
            500,
            "cannot remove container x as it is running: container state improper",
        );
        assert_eq!(
            removal(Err(running)).expect_err("running").kind(),
            ErrorKind::Conflict
        );
    }

    #[test]
    fn display_is_one_line_and_says_the_message_once() {
        let e = status(404, "no such container: ").context(
            container_core::BackendKind::Podman,
            container_core::Operation::Inspect,
            "x",
        );
        assert_eq!(
            e.to_string(),
            "not found at podman.inspect on x: no such container"
        );
        let e = text_error("line one\nline two");
        assert!(!e.to_string().contains('\n'), "{e}");
    }
}
