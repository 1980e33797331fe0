//! Every gRPC status becomes a core [`Error`] here, in one place (taxonomy in
//! `docs/adr/0001-error-taxonomy.md`). containerd folds many state conflicts into
//! `Unknown` with text: callers check state first where that matters.

use container_core::error::kind_for_engine_text;
use container_core::{Error, ErrorKind};
use containerd_client::tonic::{Code, Status};

/// containerd's and the shim's own texts for a state that forbids the operation.
const CONFLICTS: &[&str] = &[
    "cannot delete a running process",
    "cannot exec in a stopped state",
    "already started",
    "is running",
    "not running",
];

/// Maps a gRPC status to the core taxonomy.
pub(crate) fn map_status(status: Status) -> Error {
    let message = status.message().trim().replace('\n', " ");
    let kind = match status.code() {
        Code::InvalidArgument | Code::OutOfRange => ErrorKind::InvalidInput,
        Code::NotFound => ErrorKind::NotFound,
        Code::AlreadyExists | Code::FailedPrecondition => ErrorKind::Conflict,
        Code::Unauthenticated => ErrorKind::Unauthenticated,
        Code::PermissionDenied => ErrorKind::PermissionDenied,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::ResourceExhausted => ErrorKind::RateLimited,
        Code::Unavailable | Code::Aborted => ErrorKind::Unavailable,
        Code::DeadlineExceeded => ErrorKind::Timeout,
        // tonic reports its own request timeout as Cancelled ("Timeout expired").
        Code::Cancelled if message.contains("Timeout expired") => ErrorKind::Timeout,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::Unknown => kind_for_engine_text(&message, CONFLICTS),
        Code::Internal | Code::DataLoss | Code::Ok => ErrorKind::Internal,
    };
    Error::new(kind, message).with_source(status)
}

/// A registry error from oci-client.
pub(crate) fn map_registry(e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as O;
    let text = e.to_string();
    let kind = match &e {
        O::AuthenticationFailure(_) | O::UnauthorizedError { .. } => ErrorKind::Unauthenticated,
        O::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        O::RequestError(r) if r.is_connect() || r.is_timeout() => ErrorKind::Unavailable,
        O::ServerError { code, .. } => container_core::error::kind_for_http_status(*code)
            .unwrap_or_else(|| kind_for_engine_text(&text, &[])),
        _ => kind_for_engine_text(&text, &[]),
    };
    Error::new(kind, text).with_source(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_code_maps_to_its_row() {
        let rows = [
            (Code::InvalidArgument, "bad", ErrorKind::InvalidInput),
            (
                Code::NotFound,
                "container x: not found",
                ErrorKind::NotFound,
            ),
            (Code::AlreadyExists, "image exists", ErrorKind::Conflict),
            (
                Code::FailedPrecondition,
                "has children",
                ErrorKind::Conflict,
            ),
            (Code::Unimplemented, "no transfer", ErrorKind::Unsupported),
            (Code::ResourceExhausted, "slow", ErrorKind::RateLimited),
            (Code::Unavailable, "gone", ErrorKind::Unavailable),
            (Code::DeadlineExceeded, "late", ErrorKind::Timeout),
            (Code::Cancelled, "Timeout expired", ErrorKind::Timeout),
            (Code::Cancelled, "caller", ErrorKind::Cancelled),
            (
                Code::Unknown,
                "cannot delete a running process",
                ErrorKind::Conflict,
            ),
            (Code::Unknown, "something", ErrorKind::Internal),
            (Code::Internal, "broken", ErrorKind::Internal),
        ];
        for (code, text, kind) in rows {
            let e = map_status(Status::new(code, text));
            assert_eq!(e.kind(), kind, "{code:?} {text}");
        }
        assert!(map_status(Status::new(Code::Unavailable, "x")).is_retryable());
    }
}
