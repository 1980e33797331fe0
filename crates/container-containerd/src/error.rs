//! Every gRPC status becomes a core [`Error`] here, in one place (taxonomy in
//! `docs/adr/0001-error-taxonomy.md`). containerd folds many state conflicts into
//! `Unknown` with text: callers check state first where that matters.

use container_core::error::{kind_for_engine_text, transport_failure};
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

/// Maps a gRPC status to the core taxonomy. The retry status is the kind's default; the
/// manager settles it by the operation. An `Unavailable` that is tonic's failure to
/// connect to the socket (its text, or an I/O cause) is marked [`Error::before_send`].
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
        // tonic's own transport failures (the connection broke: an engine restart, a
        // cut link) come as Unknown, or as Cancelled when the connection closed under a
        // request, with the transport error as the source.
        Code::Unknown | Code::Cancelled if broken_connection(&status) => ErrorKind::Unavailable,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::Unknown => kind_for_engine_text(&message, CONFLICTS),
        Code::Internal | Code::DataLoss | Code::Ok => ErrorKind::Internal,
    };
    let before_send = status.code() == Code::Unavailable
        && transport_failure(&status).is_some_and(|t| t.before_send);
    let mapped = Error::new(kind, message).with_source(status);
    if before_send {
        mapped.before_send()
    } else {
        mapped
    }
}

/// Whether `status` is tonic's report of a broken connection rather than containerd's
/// answer: a transport error in its causes, or an I/O failure of the connection.
fn broken_connection(status: &Status) -> bool {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = next {
        if e.is::<containerd_client::tonic::transport::Error>() {
            return true;
        }
        next = e.source();
    }
    transport_failure(status).is_some()
}

/// A registry error from oci-client. A connection that failed, timed out or broke off
/// midway (a reset mid-blob, hyper's "connection closed before message completed",
/// reqwest's "error decoding response body" over either) is `Unavailable`: the pull is
/// worth another try.
pub(crate) fn map_registry(e: oci_client::errors::OciDistributionError) -> Error {
    use oci_client::errors::OciDistributionError as O;
    let text = e.to_string();
    // oci-client's wrappers are transparent (their source skips the wrapped error):
    // read the wrapped error itself.
    let transport = match &e {
        O::IoError(io) => transport_failure(io),
        O::RequestError(r) => transport_failure(r),
        _ => None,
    };
    let kind = match &e {
        O::AuthenticationFailure(_) | O::UnauthorizedError { .. } => ErrorKind::Unauthenticated,
        O::ImageManifestNotFoundError(_) => ErrorKind::NotFound,
        // A body that broke off (oci-client reads no JSON through reqwest).
        O::RequestError(r) if r.is_connect() || r.is_timeout() || r.is_body() || r.is_decode() => {
            ErrorKind::Unavailable
        }
        O::RequestError(_) | O::IoError(_) if transport.is_some() => {
            transport.map_or(ErrorKind::Unavailable, |t| t.kind)
        }
        O::ServerError { code, .. } => container_core::error::kind_for_http_status(*code)
            .unwrap_or_else(|| kind_for_engine_text(&text, &[])),
        // A 4xx with the spec's error body: oci-client keeps the codes but not the status,
        // and its text holds only the messages, whose wording is each registry's own.
        O::RegistryError { envelope, .. } => {
            envelope_kind(envelope).unwrap_or_else(|| kind_for_engine_text(&text, &[]))
        }
        _ => kind_for_engine_text(&text, &[]),
    };
    Error::new(kind, text).with_source(e)
}

/// The kind the first distribution-spec error code of `envelope` that names one says
/// (`MANIFEST_UNKNOWN`, `UNAUTHORIZED`, ...); `None` when only the text can tell.
fn envelope_kind(envelope: &oci_client::errors::OciEnvelope) -> Option<ErrorKind> {
    use oci_client::errors::OciErrorCode as C;
    envelope.errors.iter().find_map(|e| match e.code {
        C::ManifestUnknown | C::NameUnknown | C::BlobUnknown | C::ManifestBlobUnknown => {
            Some(ErrorKind::NotFound)
        }
        C::NotFound => Some(ErrorKind::NotFound),
        C::Unauthorized => Some(ErrorKind::Unauthenticated),
        C::Denied => Some(ErrorKind::PermissionDenied),
        C::Toomanyrequests => Some(ErrorKind::RateLimited),
        C::Unsupported => Some(ErrorKind::Unsupported),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_client::client::{ClientConfig, ClientProtocol};
    use oci_client::errors::OciDistributionError as O;
    use oci_client::manifest::OciDescriptor;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn a_broken_connection_to_containerd_is_unavailable() {
        // What tonic gives when the connection breaks mid-call (an engine restart): an
        // Unknown status "transport error" whose cause is the broken connection.
        #[derive(Debug)]
        struct Transport(std::io::Error);
        impl std::fmt::Display for Transport {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("transport error")
            }
        }
        impl std::error::Error for Transport {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let broken = Transport(std::io::Error::new(
            std::io::ErrorKind::BrokenPipe,
            "stream closed because of a broken pipe",
        ));
        let status = Status::from_error(Box::new(broken));
        assert_eq!(status.code(), Code::Unknown);
        let e = map_status(status);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        // The shim's own Unknown errors (text, no transport cause) keep their mapping.
        let shim = map_status(Status::new(
            Code::Unknown,
            "cannot delete a running process",
        ));
        assert_ne!(shim.kind(), ErrorKind::Unavailable, "{shim}");
    }

    /// Pulls a blob from a registry on this host that sends the headers and a tenth of
    /// the body, then closes the connection (`reset`: with a TCP reset); the mapped error.
    async fn blob_cut_off(reset: bool) -> Error {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.expect("accept");
            let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
            while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = socket.read(&mut buf).await.expect("read");
                assert!(n > 0, "the client closed before its request ended");
                seen.extend_from_slice(&buf[..n]);
            }
            socket
                .write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
                      Content-Length: 1000\r\n\r\n",
                )
                .await
                .expect("headers");
            socket.write_all(&[7u8; 100]).await.expect("body");
            socket.flush().await.expect("flush");
            // Let the client read what came, then break off mid-blob.
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            if reset {
                socket.set_zero_linger().expect("linger");
            }
            drop(socket);
        });
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = oci_client::Client::new(ClientConfig {
            protocol: ClientProtocol::Http,
            ..ClientConfig::default()
        });
        let reference: oci_client::Reference = format!("{addr}/library/x:1").parse().expect("ref");
        let layer = OciDescriptor {
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip".into(),
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 1000,
            ..OciDescriptor::default()
        };
        let mut out = Vec::new();
        let e = registry
            .pull_blob(&reference, &layer, &mut out)
            .await
            .expect_err("the blob was cut off");
        server.await.expect("server");
        map_registry(e)
    }

    #[tokio::test]
    async fn a_blob_cut_off_midway_is_unavailable_and_retryable() {
        for reset in [false, true] {
            let e = blob_cut_off(reset).await;
            assert_eq!(e.kind(), ErrorKind::Unavailable, "reset: {reset}: {e}");
            assert!(e.is_retryable(), "reset: {reset}: {e}");
        }
    }

    #[test]
    fn transport_io_errors_from_the_registry_are_unavailable() {
        use std::io::ErrorKind as K;
        for kind in [
            K::ConnectionReset,
            K::ConnectionAborted,
            K::BrokenPipe,
            K::UnexpectedEof,
        ] {
            let e = map_registry(O::IoError(std::io::Error::from(kind)));
            assert_eq!(e.kind(), ErrorKind::Unavailable, "{kind:?}: {e}");
            assert!(e.is_retryable(), "{kind:?}");
        }
        // Wrapped, as oci-client's blob streams wrap a body error.
        let wrapped = std::io::Error::other(std::io::Error::from(K::ConnectionReset));
        assert_eq!(
            map_registry(O::IoError(wrapped)).kind(),
            ErrorKind::Unavailable
        );
        // A local failure (the spool file) is not the network.
        let full = std::io::Error::from(K::StorageFull);
        assert_eq!(map_registry(O::IoError(full)).kind(), ErrorKind::Internal);
    }

    #[test]
    fn a_registry_error_body_is_read_by_its_code_before_its_text() {
        // Google's Artifact Registry answers a missing tag with a 404 whose message
        // names neither "not found" nor "unknown" (was `Internal`).
        let envelope = |body: &str| O::RegistryError {
            envelope: serde_json::from_str(body).expect("envelope"),
            url: "http://127.0.0.1:5000/v2/x/manifests/1".into(),
        };
        let rows = [
            (
                r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"Failed to fetch \"1\""}]}"#,
                ErrorKind::NotFound,
            ),
            (
                r#"{"errors":[{"code":"NAME_UNKNOWN","message":"x"}]}"#,
                ErrorKind::NotFound,
            ),
            (
                r#"{"errors":[{"code":"DENIED","message":"x"}]}"#,
                ErrorKind::PermissionDenied,
            ),
            (
                r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"x"}]}"#,
                ErrorKind::RateLimited,
            ),
            (
                r#"{"errors":[{"code":"SOMETHING","message":"x"},{"code":"UNAUTHORIZED"}]}"#,
                ErrorKind::Unauthenticated,
            ),
            // No code that says more: the text decides, as before.
            (
                r#"{"errors":[{"code":"SOMETHING","message":"manifest unknown"}]}"#,
                ErrorKind::NotFound,
            ),
            (
                r#"{"errors":[{"code":"SOMETHING","message":"x"}]}"#,
                ErrorKind::Internal,
            ),
        ];
        for (body, kind) in rows {
            let e = map_registry(envelope(body));
            assert_eq!(e.kind(), kind, "{body}: {e}");
        }
        let e = map_registry(envelope(rows[0].0));
        assert!(
            !e.settle_retryable(true).is_retryable(),
            "a missing manifest stays missing"
        );
    }

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

    #[test]
    fn only_a_failure_to_connect_is_marked_before_send() {
        // tonic's own status when the socket refuses the connection.
        let refused = map_status(Status::unavailable("Connection refused (os error 111)"));
        assert_eq!(refused.kind(), ErrorKind::Unavailable);
        assert!(refused.is_before_send());
        assert!(refused.settle_retryable(false).is_retryable());
        // The connection broke with the request sent: only an idempotent call retries.
        let broken = map_status(Status::unavailable(
            "error reading from server: broken pipe",
        ));
        assert!(!broken.is_before_send());
        assert!(!broken.settle_retryable(false).is_retryable());
        let deadline = map_status(Status::new(Code::DeadlineExceeded, "late"));
        assert!(!deadline.is_before_send());
    }
}
