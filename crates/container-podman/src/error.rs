//! Every Podman error becomes a core [`Error`] here, in one place: by HTTP status, and by
//! text for the coarse 500s libpod sends for conflicts and for the errors it reports
//! inside a 200 pull stream.

use container_core::raw::Removal;
use container_core::{Error, ErrorKind, Result};

/// Maps a podman-api error to the core taxonomy (see `docs/adr/0001-error-taxonomy.md`).
pub(crate) fn map_error(e: podman_api::Error) -> Error {
    use podman_api::conn::Error as C;
    use podman_api::Error as P;
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
            ErrorKind::from_io(err),
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
    Error::new(kind, message.replace('\n', " ")).with_source(e)
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

/// Kind for a status code; the text refines the coarse ones (libpod answers 500 for name
/// conflicts, "container state improper", "can only kill running containers", ...).
fn kind_for_status(status: u16, text: &str) -> ErrorKind {
    match status {
        400 => match kind_for_text(text) {
            ErrorKind::NotFound => ErrorKind::NotFound,
            _ => ErrorKind::InvalidInput,
        },
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        501 => ErrorKind::Unsupported,
        502..=504 => ErrorKind::Unavailable,
        500 => kind_for_text(text),
        _ => ErrorKind::Internal,
    }
}

fn is_transient_text(t: &str) -> bool {
    [
        "connection refused",
        "connection reset",
        "i/o timeout",
        "tls handshake timeout",
        "unexpected eof",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway",
        "server misbehaving",
        "no route to host",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Kind for an error that only comes as text (pull reports, coarse 500s).
fn kind_for_text(text: &str) -> ErrorKind {
    let t = text.to_ascii_lowercase();
    let has = |p: &str| t.contains(p);
    if has("toomanyrequests") || has("too many requests") || has("rate limit") {
        ErrorKind::RateLimited
    } else if has("unauthorized") || has("authentication required") {
        ErrorKind::Unauthenticated
    } else if has("already in use")
        || has("already exists")
        || has("container state improper")
        || has("can only create exec sessions on running containers")
        || has("can only kill running containers")
        || has("is not running")
        || has("is running")
        || has("is being used")
        || has("in use by")
        || has("image is in use")
        || has("conflict")
    {
        ErrorKind::Conflict
    } else if has("manifest unknown")
        || has("name unknown")
        || has("no such")
        || has("not found")
        || has("does not exist")
        || has("repository name not known")
    {
        ErrorKind::NotFound
    } else if has("denied") || has("forbidden") {
        ErrorKind::PermissionDenied
    } else if has("invalid reference format") || has("invalid argument") {
        ErrorKind::InvalidInput
    } else if is_transient_text(&t) {
        ErrorKind::Unavailable
    } else if has("context deadline exceeded") || has("timeout") {
        ErrorKind::Timeout
    } else {
        ErrorKind::Internal
    }
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
    fn each_status_code_maps_to_its_row() {
        let rows = [
            (
                400,
                "invalid reference format",
                ErrorKind::InvalidInput,
                false,
            ),
            (400, "bad parameter", ErrorKind::InvalidInput, false),
            (401, "unauthorized", ErrorKind::Unauthenticated, false),
            (403, "forbidden", ErrorKind::PermissionDenied, false),
            (404, "no such container", ErrorKind::NotFound, false),
            (409, "volume is being used", ErrorKind::Conflict, false),
            (
                409,
                "container x is not running",
                ErrorKind::Conflict,
                false,
            ),
            (429, "toomanyrequests", ErrorKind::RateLimited, true),
            (501, "not implemented", ErrorKind::Unsupported, false),
            (502, "bad gateway", ErrorKind::Unavailable, true),
            (503, "unavailable", ErrorKind::Unavailable, true),
            (500, "something broke", ErrorKind::Internal, false),
            (418, "teapot", ErrorKind::Internal, false),
        ];
        for (code, msg, kind, retryable) in rows {
            let e = status(code, msg);
            assert_eq!(e.kind(), kind, "{code} {msg}");
            assert_eq!(e.is_retryable(), retryable, "{code} {msg}");
            assert!(std::error::Error::source(&e).is_some());
        }
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
        let rows = [
            ("initializing source docker://127.0.0.1:5000/x:1: reading manifest 1 in 127.0.0.1:5000/x: manifest unknown: manifest unknown", ErrorKind::NotFound, false),
            ("initializing source docker://r/x:1: reading manifest 1 in r/x: name unknown: repository name not known to registry", ErrorKind::NotFound, false),
            ("unauthorized: authentication required", ErrorKind::Unauthenticated, false),
            ("pinging container registry 127.0.0.1:5999: Get \"http://127.0.0.1:5999/v2/\": dial tcp 127.0.0.1:5999: connect: connection refused", ErrorKind::Unavailable, true),
            ("toomanyrequests: You have reached your pull rate limit", ErrorKind::RateLimited, true),
            ("invalid reference format", ErrorKind::InvalidInput, false),
        ];
        for (msg, kind, retryable) in rows {
            let e = text_error(msg);
            assert_eq!(e.kind(), kind, "{msg}");
            assert_eq!(e.is_retryable(), retryable, "{msg}");
        }
    }

    #[test]
    fn transport_errors_are_unavailable_and_retryable() {
        for kind in [
            std::io::ErrorKind::ConnectionRefused,
            std::io::ErrorKind::NotFound,
            std::io::ErrorKind::UnexpectedEof,
            std::io::ErrorKind::BrokenPipe,
        ] {
            let e = map_error(podman_api::Error::IO(std::io::Error::from(kind)));
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{kind:?}");
            assert!(e.is_retryable());
        }
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
