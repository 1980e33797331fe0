//! Every Docker error becomes a core [`Error`] here, in one place: by HTTP status, and by
//! text for the errors Docker sends inside a 200 stream (pull) or with a coarse status.

use container_core::raw::Removal;
use container_core::{Error, ErrorKind, Result};

/// Maps a bollard error to the core taxonomy (see `docs/adr/0001-error-taxonomy.md`).
pub(crate) fn map_error(e: bollard::errors::Error) -> Error {
    use bollard::errors::Error as B;
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
            ErrorKind::from_io(err),
            "i/o error talking to the engine".into(),
        ),
        B::SocketNotFoundError(path) => (
            ErrorKind::Unavailable,
            format!("no engine socket at {path}"),
        ),
        B::HyperResponseError { .. } | B::HyperLegacyError { .. } => (
            ErrorKind::Unavailable,
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
    let retryable = kind.default_retryable()
        // a stream that broke mid-way with a 5xx text is worth another try
        || matches!(&e, B::DockerStreamError { error } if is_transient_text(error));
    Error::new(kind, message)
        .set_retryable(retryable)
        .with_source(e)
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

fn kind_for_status(status: u16, message: &str) -> ErrorKind {
    match status {
        400 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        501 => ErrorKind::Unsupported,
        502..=504 => ErrorKind::Unavailable,
        500 => match kind_for_text(message) {
            // A 500 whose text names no known cause is the engine's own failure.
            ErrorKind::Internal => ErrorKind::Internal,
            known => known,
        },
        _ => ErrorKind::Internal,
    }
}

fn is_transient_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
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

/// Kind for an error that only comes as text (pull stream errors, coarse 500s).
fn kind_for_text(text: &str) -> ErrorKind {
    let t = text.to_ascii_lowercase();
    let has = |p: &str| t.contains(p);
    if has("toomanyrequests") || has("too many requests") || has("rate limit") {
        ErrorKind::RateLimited
    } else if has("unauthorized") || has("authentication required") || has("no basic auth") {
        ErrorKind::Unauthenticated
    } else if has("manifest unknown")
        || has("not found")
        || has("no such")
        || has("repository does not exist")
        || has("pull access denied")
        || has("name unknown")
    {
        // Docker says "pull access denied" for a repository that does not exist.
        ErrorKind::NotFound
    } else if has("denied") || has("forbidden") {
        ErrorKind::PermissionDenied
    } else if has("invalid reference format") || has("invalid argument") {
        ErrorKind::InvalidInput
    } else if has("is not running")
        || has("is already in use")
        || has("is in use")
        || has("conflict")
        || has("is paused")
        || has("is restarting")
    {
        ErrorKind::Conflict
    } else if is_transient_text(text) {
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
    fn each_status_code_maps_to_its_row() {
        let rows = [
            (
                400,
                "bind source path does not exist",
                ErrorKind::InvalidInput,
                false,
            ),
            (401, "unauthorized", ErrorKind::Unauthenticated, false),
            (403, "forbidden", ErrorKind::PermissionDenied, false),
            (404, "No such container: x", ErrorKind::NotFound, false),
            (404, "pull access denied for x", ErrorKind::NotFound, false),
            (
                409,
                "Conflict. The container name \"/x\" is already in use",
                ErrorKind::Conflict,
                false,
            ),
            (
                409,
                "Container abc is not running",
                ErrorKind::Conflict,
                false,
            ),
            (429, "toomanyrequests", ErrorKind::RateLimited, true),
            (501, "not implemented", ErrorKind::Unsupported, false),
            (502, "bad gateway", ErrorKind::Unavailable, true),
            (503, "unavailable", ErrorKind::Unavailable, true),
            (500, "something broke", ErrorKind::Internal, false),
            (
                500,
                "toomanyrequests: slow down",
                ErrorKind::RateLimited,
                true,
            ),
            (
                500,
                "Get \"https://r/v2/\": dial tcp: connection refused",
                ErrorKind::Unavailable,
                true,
            ),
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
    fn stream_errors_map_by_text() {
        let rows = [
            ("toomanyrequests: You have reached your pull rate limit", ErrorKind::RateLimited, true),
            ("manifest for 127.0.0.1:5000/x:1 not found: manifest unknown", ErrorKind::NotFound, false),
            ("pull access denied for nope, repository does not exist or may require 'docker login'", ErrorKind::NotFound, false),
            ("unauthorized: authentication required", ErrorKind::Unauthenticated, false),
            ("Get \"http://127.0.0.1:5000/v2/\": dial tcp 127.0.0.1:5000: connect: connection refused", ErrorKind::Unavailable, true),
            ("received unexpected HTTP status: 503 Service Unavailable", ErrorKind::Unavailable, true),
            ("invalid reference format", ErrorKind::InvalidInput, false),
            ("context deadline exceeded", ErrorKind::Timeout, false),
            ("filesystem layer verification failed", ErrorKind::Internal, false),
        ];
        for (msg, kind, retryable) in rows {
            let e = stream(msg);
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
            let e = map_error(B::IOError {
                err: std::io::Error::from(kind),
            });
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{kind:?}");
            assert!(e.is_retryable());
        }
        let e = map_error(B::SocketNotFoundError("/x.sock".into()));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
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
