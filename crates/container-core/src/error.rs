//! One error type for every backend: a kind, a retry status kept separate from it, and
//! the context a caller needs to act (backend, operation, resource).
//!
//! The design follows `docs/adr/0001-error-taxonomy.md`: the kind says *what* went wrong,
//! [`Error::is_retryable`] says whether trying the same call again can help. They are
//! separate because a `Timeout` is worth retrying for an idempotent inspect but not for an
//! exec that may have run; the manager, which knows the operation, decides it in one
//! place ([`Error::settle_retryable`]).

use std::fmt;

use crate::types::BackendKind;

/// What went wrong, independent of the engine that reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The caller's input is invalid; detected before any engine call where possible.
    InvalidInput,
    /// The container, image, volume, exec or path does not exist.
    NotFound,
    /// The object is in a state that forbids the operation (name in use, running, not
    /// running, in use).
    Conflict,
    /// The registry or engine wants credentials that were not given or were wrong.
    Unauthenticated,
    /// The credentials are valid but do not allow the operation.
    PermissionDenied,
    /// The backend or the engine cannot do this at all.
    Unsupported,
    /// The engine or registry asked the caller to slow down.
    RateLimited,
    /// The engine could not be reached or dropped the connection.
    Unavailable,
    /// A deadline passed before the operation finished.
    Timeout,
    /// The caller cancelled the operation.
    Cancelled,
    /// Anything else the engine reported; a bug here or there.
    Internal,
}

/// Whether an I/O error on the connection to an engine or registry happened before any
/// request was sent: the connection was refused, the socket is missing, the host or
/// network is unreachable. Only such a failure makes a non-idempotent call retryable.
pub fn io_before_send(err: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        err.kind(),
        K::ConnectionRefused
            | K::NotFound
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable
    )
}

impl ErrorKind {
    /// Whether an error of this kind is retryable when nothing more specific is known.
    ///
    /// `Timeout` is not retryable by default: whether it is depends on the operation, and
    /// the manager decides that once for every error ([`Error::settle_retryable`]).
    pub fn default_retryable(self) -> bool {
        matches!(self, ErrorKind::RateLimited | ErrorKind::Unavailable)
    }

    /// The kind for an I/O error on the connection to an engine: refused, reset, EOF or a
    /// missing socket mean the engine is unavailable (retryable).
    pub fn from_io(err: &std::io::Error) -> ErrorKind {
        use std::io::ErrorKind as K;
        match err.kind() {
            K::ConnectionRefused
            | K::ConnectionReset
            | K::ConnectionAborted
            | K::NotConnected
            | K::BrokenPipe
            | K::UnexpectedEof
            | K::NotFound
            | K::AddrNotAvailable
            | K::HostUnreachable
            | K::NetworkUnreachable => ErrorKind::Unavailable,
            K::TimedOut => ErrorKind::Timeout,
            K::PermissionDenied => ErrorKind::PermissionDenied,
            _ => ErrorKind::Internal,
        }
    }

    /// A short, stable, lower-case name, used in Display and in logs.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidInput => "invalid input",
            ErrorKind::NotFound => "not found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::PermissionDenied => "permission denied",
            ErrorKind::Unsupported => "unsupported",
            ErrorKind::RateLimited => "rate limited",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::Timeout => "timeout",
            ErrorKind::Cancelled => "cancelled",
            ErrorKind::Internal => "internal",
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The operation an error happened in; one per [`ContainerManager`](crate::ContainerManager)
/// method, plus connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
#[allow(missing_docs)] // each variant names the trait method of the same name
pub enum Operation {
    Connect,
    Info,
    Pull,
    ImageExists,
    RemoveImage,
    Create,
    Start,
    Stop,
    Kill,
    Remove,
    Inspect,
    Wait,
    List,
    Logs,
    AttachStdin,
    ResizeTty,
    Exec,
    CopyFrom,
    CopyTo,
    CreateVolume,
    InspectVolume,
    ListVolumes,
    RemoveVolume,
    Cleanup,
}

impl Operation {
    /// The snake_case name used in Display, logs and tracing spans.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Connect => "connect",
            Operation::Info => "info",
            Operation::Pull => "pull",
            Operation::ImageExists => "image_exists",
            Operation::RemoveImage => "remove_image",
            Operation::Create => "create",
            Operation::Start => "start",
            Operation::Stop => "stop",
            Operation::Kill => "kill",
            Operation::Remove => "remove",
            Operation::Inspect => "inspect",
            Operation::Wait => "wait",
            Operation::List => "list",
            Operation::Logs => "logs",
            Operation::AttachStdin => "attach_stdin",
            Operation::ResizeTty => "resize_tty",
            Operation::Exec => "exec",
            Operation::CopyFrom => "copy_from",
            Operation::CopyTo => "copy_to",
            Operation::CreateVolume => "create_volume",
            Operation::InspectVolume => "inspect_volume",
            Operation::ListVolumes => "list_volumes",
            Operation::RemoveVolume => "remove_volume",
            Operation::Cleanup => "cleanup",
        }
    }
}

impl Operation {
    /// Whether repeating the operation after an unknown outcome (a timeout, a connection
    /// lost after the request was sent) is safe. Create is idempotent by name (a create
    /// without a name is not: the manager passes that to [`Error::settle_retryable`]);
    /// exec, kill, copy-in and a stdin attach (its input may be half sent) are not.
    pub fn is_idempotent(self) -> bool {
        !matches!(
            self,
            Operation::Exec | Operation::Kill | Operation::CopyTo | Operation::AttachStdin
        )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `text` (an engine's or registry's error message) names a transient network
/// failure: worth another try. The same table for every engine. A failed name lookup
/// (Go's "no such host") is one: the registry could not be reached, which says nothing
/// of whether the image exists.
pub fn is_transient_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "connection refused",
        "connection reset",
        "connection aborted",
        "broken pipe",
        "connection closed before message completed",
        // hyper's, for a response body cut off (the engine went away mid-stream).
        "error reading a body from connection",
        "end of file before message length reached",
        "i/o timeout",
        "tls handshake timeout",
        "unexpected eof",
        "unexpected end of file",
        "502 bad gateway",
        "503 service unavailable",
        "504 gateway",
        "server misbehaving",
        "no route to host",
        "no such host",
        "temporary failure in name resolution",
        "name or service not known",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// Whether a client's own transport error text says the connection was never made (so
/// nothing was sent): refused, or the host name did not resolve.
fn is_connect_text(text: &str) -> bool {
    let t = text.to_ascii_lowercase();
    [
        "connection refused",
        "no such host",
        "temporary failure in name resolution",
        "name or service not known",
        "no route to host",
    ]
    .iter()
    .any(|p| t.contains(p))
}

/// What a client-side transport error says (see [`transport_failure`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportFailure {
    /// `Unavailable`, or `Timeout` for a connection that timed out.
    pub kind: ErrorKind,
    /// The failure came before any request was sent (see [`Error::before_send`]).
    pub before_send: bool,
}

/// The transport failure in a client library's error (an HTTP or gRPC client's error
/// and its causes): an I/O error on the connection (refused, reset, aborted, broken
/// pipe, early EOF, a missing socket, timed out), or a cause whose text names one
/// (hyper's "connection closed before message completed"). `None` when nothing in the
/// chain is one. For the backends' own transport errors, never for an engine's message.
pub fn transport_failure(err: &(dyn std::error::Error + 'static)) -> Option<TransportFailure> {
    let mut by_text = None;
    let mut next = Some(err);
    // Bounded: a cyclic or absurdly deep chain is not walked forever.
    for _ in 0..32 {
        let Some(e) = next else { break };
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            let kind = ErrorKind::from_io(io);
            if matches!(kind, ErrorKind::Unavailable | ErrorKind::Timeout) {
                return Some(TransportFailure {
                    kind,
                    before_send: io_before_send(io),
                });
            }
            // A wrapping I/O error (`io::Error::other(cause)`): its cause is the error.
            if let Some(inner) = io.get_ref() {
                next = Some(inner as &(dyn std::error::Error + 'static));
                continue;
            }
        }
        let text = e.to_string();
        if by_text.is_none() && is_transient_text(&text) {
            by_text = Some(TransportFailure {
                kind: ErrorKind::Unavailable,
                before_send: is_connect_text(&text),
            });
        }
        next = e.source();
    }
    by_text
}

/// What a shell would exit with for a process the OCI runtime could not start, from the
/// runtime's message (the same runc text on every engine, for `start` and for exec): 127
/// when the command does not exist, 126 when it exists but cannot be executed; `None`
/// when `text` is not such a message, or does not say which (callers that know the
/// process never ran pick their own default).
pub fn shell_status_for_runtime_text(text: &str) -> Option<i64> {
    let t = text.to_ascii_lowercase();
    let start_failed = [
        "exec failed",
        "unable to start container process",
        "exec: \"",
    ]
    .iter()
    .any(|p| t.contains(p));
    if !start_failed {
        return None;
    }
    if t.contains("executable file not found") || t.contains("no such file or directory") {
        Some(127)
    } else if t.contains("permission denied")
        || t.contains("not a directory")
        || t.contains("is a directory")
    {
        Some(126)
    } else {
        None
    }
}

/// The kind for error text that engines pass on from registries, the network and the
/// OCI runtime, the same on every engine; `None` when the text names no known cause.
///
/// A backend checks its own engine's state texts first (in its `error.rs`: "container
/// state improper", "is not running", ...), then this table, so the same registry text
/// maps to the same kind on every backend.
pub fn kind_for_common_text(text: &str) -> Option<ErrorKind> {
    let t = text.to_ascii_lowercase();
    let has = |p: &str| t.contains(p);
    let kind = if has("toomanyrequests") || has("too many requests") || has("rate limit") {
        ErrorKind::RateLimited
    } else if has("unauthorized") || has("authentication required") || has("no basic auth") {
        ErrorKind::Unauthenticated
    } else if is_transient_text(text) {
        // Before the not-found texts: a network failure says why the object could not
        // be reached, and its text can hold their words (Go's "no such host").
        ErrorKind::Unavailable
    } else if has("manifest unknown")
        || has("name unknown")
        || has("repository does not exist")
        || has("repository name not known")
        // Docker says "pull access denied" for a repository that does not exist.
        || has("pull access denied")
        || has("no such")
        || has("not found")
        || has("does not exist")
    {
        ErrorKind::NotFound
    } else if has("denied") || has("forbidden") {
        ErrorKind::PermissionDenied
    } else if has("invalid reference format") || has("invalid argument") {
        ErrorKind::InvalidInput
    } else if has("context deadline exceeded") || has("timeout") {
        // Go's deadline text: a Timeout like the client's own deadline, retryable for
        // an idempotent operation (`Error::settle_retryable`).
        ErrorKind::Timeout
    } else {
        return None;
    };
    Some(kind)
}

/// The kind for an error text: `Conflict` when it holds one of the engine's own state
/// texts `conflicts` (lower case), else [`kind_for_common_text`], else `Internal`. Each
/// backend passes its engine's list from its `error.rs`.
pub fn kind_for_engine_text(text: &str, conflicts: &[&str]) -> ErrorKind {
    let t = text.to_ascii_lowercase();
    if conflicts.iter().any(|p| t.contains(p)) {
        return ErrorKind::Conflict;
    }
    kind_for_common_text(text).unwrap_or(ErrorKind::Internal)
}

/// The kind an engine's HTTP status says, per the taxonomy
/// (`docs/adr/0001-error-taxonomy.md`); `None` for 500, whose text says more (see
/// [`kind_for_engine_text`]).
pub fn kind_for_http_status(status: u16) -> Option<ErrorKind> {
    let kind = match status {
        400 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        429 => ErrorKind::RateLimited,
        500 => return None,
        501 => ErrorKind::Unsupported,
        502..=504 => ErrorKind::Unavailable,
        _ => ErrorKind::Internal,
    };
    Some(kind)
}

/// The boxed source error type carried in the chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// The error of every container-rs operation.
///
/// Display is one line: `kind [retryable] at backend.operation on resource: message: source`.
/// No engine crate's error type is exposed; the engine error is reachable only as
/// [`std::error::Error::source`].
pub struct Error {
    kind: ErrorKind,
    retryable: bool,
    before_send: bool,
    retries_exhausted: bool,
    attempts: u32,
    backend: Option<BackendKind>,
    operation: Option<Operation>,
    resource: Option<String>,
    message: String,
    source: Option<BoxError>,
}

/// The result type of container-rs.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`; retryable as the kind's default.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            retryable: kind.default_retryable(),
            before_send: false,
            retries_exhausted: false,
            attempts: 0,
            backend: None,
            operation: None,
            resource: None,
            message: message.into(),
            source: None,
        }
    }

    /// Shorthand for an [`ErrorKind::InvalidInput`] error.
    pub fn invalid_input(message: impl Into<String>) -> Self {
        Error::new(ErrorKind::InvalidInput, message)
    }

    /// Shorthand for an [`ErrorKind::Unsupported`] error naming a capability.
    pub fn unsupported(capability: &str) -> Self {
        Error::new(ErrorKind::Unsupported, format!("unsupported:{capability}"))
    }

    /// The kind of failure.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The exit code a shell would give when this error is the runtime refusing to start
    /// the command (127 not found, 126 not executable), as `docker run` reports it; `None`
    /// for any other error. Read from the message and its causes.
    pub fn shell_status(&self) -> Option<i64> {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(s) = source {
            text.push(' ');
            text.push_str(&s.to_string());
            source = s.source();
        }
        shell_status_for_runtime_text(&text)
    }

    /// Whether calling the same operation again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.retryable && !self.retries_exhausted
    }

    /// True when a retry policy gave up on this (retryable) error.
    pub fn retries_exhausted(&self) -> bool {
        self.retries_exhausted
    }

    /// How many attempts a retry policy made before returning this error (0: no policy).
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The backend that raised the error.
    pub fn backend(&self) -> Option<BackendKind> {
        self.backend
    }

    /// The operation that failed.
    pub fn operation(&self) -> Option<Operation> {
        self.operation
    }

    /// The container id or name, image reference, volume name or path involved.
    pub fn resource(&self) -> Option<&str> {
        self.resource.as_deref()
    }

    /// The human-readable message, without context.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Overrides the retry status (for example a `Timeout` of an idempotent call).
    pub fn set_retryable(mut self, retryable: bool) -> Self {
        self.retryable = retryable;
        self
    }

    /// Marks the error as raised before any request was sent: the connection to the
    /// engine was refused, its socket is missing, its host did not resolve. Only such an
    /// error is retryable for a non-idempotent operation (see
    /// [`settle_retryable`](Self::settle_retryable)). Set by the backends' error mapping,
    /// from their transport errors only.
    pub fn before_send(mut self) -> Self {
        self.before_send = true;
        self
    }

    /// Whether the error was raised before any request was sent
    /// ([`before_send`](Self::before_send)).
    pub fn is_before_send(&self) -> bool {
        self.before_send
    }

    /// The retry rule, the one place it is decided per call (ADR 0001): whether the
    /// operation that failed can be repeated as it is (`idempotent`: pull, inspect, list,
    /// image exists, start, stop, remove, a named create) decides for the outcomes that
    /// leave it unknown.
    ///
    /// - `Timeout`, the client's deadline or one the engine reports ("context deadline
    ///   exceeded"): retryable exactly when `idempotent`.
    /// - `Unavailable`: retryable when `idempotent`, or when nothing was sent
    ///   ([`is_before_send`](Self::is_before_send)); a reset after an exec, a copy-in or
    ///   an unnamed create was sent may have left it done.
    /// - `RateLimited`: as it is (the engine refused the call).
    /// - anything else: never retryable for a non-idempotent call, else as it is.
    ///
    /// An error a retry policy gave up on stays not retryable.
    pub fn settle_retryable(mut self, idempotent: bool) -> Self {
        self.retryable = match self.kind {
            ErrorKind::Timeout => idempotent,
            ErrorKind::Unavailable => idempotent || self.before_send,
            ErrorKind::RateLimited => self.retryable,
            _ => self.retryable && idempotent,
        };
        self
    }

    /// Attaches the underlying cause.
    pub fn with_source(mut self, source: impl Into<BoxError>) -> Self {
        self.source = Some(source.into());
        self
    }

    /// Sets the backend, unless one is already set.
    pub fn with_backend(mut self, backend: BackendKind) -> Self {
        self.backend.get_or_insert(backend);
        self
    }

    /// Sets the operation, unless one is already set.
    pub fn with_operation(mut self, operation: Operation) -> Self {
        self.operation.get_or_insert(operation);
        self
    }

    /// Sets the resource, unless one is already set.
    pub fn with_resource(mut self, resource: impl Into<String>) -> Self {
        if self.resource.is_none() {
            self.resource = Some(resource.into());
        }
        self
    }

    /// Adds backend, operation and resource in one call: the one place backends add context.
    pub fn context(
        self,
        backend: BackendKind,
        operation: Operation,
        resource: impl Into<String>,
    ) -> Self {
        self.with_backend(backend)
            .with_operation(operation)
            .with_resource(resource)
    }

    pub(crate) fn mark_exhausted(mut self, attempts: u32) -> Self {
        self.retries_exhausted = self.retryable;
        self.attempts = attempts;
        self
    }
}

/// Writes `text` on one line: newlines and tabs become spaces, runs of spaces fold.
fn write_one_line(f: &mut fmt::Formatter<'_>, text: &str) -> fmt::Result {
    let mut first = true;
    for word in text.split_whitespace() {
        if !first {
            f.write_str(" ")?;
        }
        f.write_str(word)?;
        first = false;
    }
    Ok(())
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if self.retries_exhausted {
            write!(f, " (retries exhausted after {} attempts)", self.attempts)?;
        } else if self.retryable {
            f.write_str(" (retryable)")?;
        }
        match (self.backend, self.operation) {
            (Some(b), Some(o)) => write!(f, " at {b}.{o}")?,
            (Some(b), None) => write!(f, " at {b}")?,
            (None, Some(o)) => write!(f, " at {o}")?,
            (None, None) => {}
        }
        if let Some(r) = &self.resource {
            f.write_str(" on ")?;
            write_one_line(f, r)?;
        }
        if !self.message.is_empty() {
            f.write_str(": ")?;
            write_one_line(f, &self.message)?;
        }
        if let Some(source) = &self.source {
            let text = source.to_string();
            // Skip a source that only repeats the message (either way round): one line
            // should say each thing once.
            let (t, m) = (text.trim(), self.message.trim());
            if !t.is_empty() && !m.contains(t) && !t.contains(m) {
                f.write_str(": ")?;
                write_one_line(f, &text)?;
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("retryable", &self.retryable)
            .field("before_send", &self.before_send)
            .field("retries_exhausted", &self.retries_exhausted)
            .field("attempts", &self.attempts)
            .field("backend", &self.backend)
            .field("operation", &self.operation)
            .field("resource", &self.resource)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_ref()
            .map(|s| s.as_ref() as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::error::Error as _;

    #[test]
    fn start_failures_of_the_command_map_to_126_and_127() {
        let missing = Error::new(
            ErrorKind::Internal,
            "OCI runtime create failed: exec: \"nope\": executable file not found in $PATH",
        );
        assert_eq!(missing.shell_status(), Some(127));
        let denied = Error::new(
            ErrorKind::Internal,
            "failed to create shim task: OCI runtime create failed: exec: \"/etc\": permission denied",
        );
        assert_eq!(denied.shell_status(), Some(126));
        let other = Error::new(ErrorKind::NotFound, "no such container: x");
        assert_eq!(other.shell_status(), None);
        // From a cause, as Podman and containerd nest it.
        let nested = Error::new(ErrorKind::NotFound, "start failed").with_source(std::io::Error::other(
            "runc create failed: unable to start container process: exec: \"x\": executable file not found in $PATH",
        ));
        assert_eq!(nested.shell_status(), Some(127));
    }

    #[derive(Debug, thiserror::Error)]
    #[error("connection refused\n(os error 111)")]
    struct Io;

    #[test]
    fn retryable_defaults_follow_the_taxonomy() {
        let retryable = [ErrorKind::RateLimited, ErrorKind::Unavailable];
        for kind in [
            ErrorKind::InvalidInput,
            ErrorKind::NotFound,
            ErrorKind::Conflict,
            ErrorKind::Unauthenticated,
            ErrorKind::PermissionDenied,
            ErrorKind::Unsupported,
            ErrorKind::RateLimited,
            ErrorKind::Unavailable,
            ErrorKind::Timeout,
            ErrorKind::Cancelled,
            ErrorKind::Internal,
        ] {
            assert_eq!(
                Error::new(kind, "x").is_retryable(),
                retryable.contains(&kind),
                "{kind}"
            );
        }
        assert!(Error::new(ErrorKind::Timeout, "x")
            .set_retryable(true)
            .is_retryable());
    }

    #[test]
    fn display_is_one_line_with_all_context() {
        let e = Error::new(ErrorKind::Unavailable, "cannot reach\nthe engine")
            .with_source(Io)
            .context(BackendKind::Docker, Operation::Start, "build-1");
        let text = e.to_string();
        assert_eq!(
            text,
            "unavailable (retryable) at docker.start on build-1: cannot reach the engine: \
             connection refused (os error 111)"
        );
        assert!(!text.contains('\n'));
        assert_eq!(e.kind(), ErrorKind::Unavailable);
        assert_eq!(e.backend(), Some(BackendKind::Docker));
        assert_eq!(e.operation(), Some(Operation::Start));
        assert_eq!(e.resource(), Some("build-1"));
        assert!(e.source().is_some_and(|s| s.is::<Io>()));
    }

    #[test]
    fn context_does_not_overwrite_what_is_set() {
        let e = Error::new(ErrorKind::NotFound, "no such container")
            .with_resource("inner")
            .context(BackendKind::Podman, Operation::Inspect, "outer");
        assert_eq!(e.resource(), Some("inner"));
        assert_eq!(
            e.to_string(),
            "not found at podman.inspect on inner: no such container"
        );
    }

    #[test]
    fn connection_failures_are_unavailable() {
        use std::io::ErrorKind as K;
        for k in [
            K::ConnectionRefused,
            K::NotFound,
            K::UnexpectedEof,
            K::BrokenPipe,
        ] {
            assert_eq!(
                ErrorKind::from_io(&std::io::Error::from(k)),
                ErrorKind::Unavailable
            );
        }
        assert_eq!(
            ErrorKind::from_io(&std::io::Error::from(K::TimedOut)),
            ErrorKind::Timeout
        );
    }

    #[test]
    fn http_statuses_follow_the_taxonomy() {
        assert_eq!(kind_for_http_status(404), Some(ErrorKind::NotFound));
        assert_eq!(kind_for_http_status(409), Some(ErrorKind::Conflict));
        assert_eq!(kind_for_http_status(503), Some(ErrorKind::Unavailable));
        assert_eq!(kind_for_http_status(500), None, "500 is read by its text");
        assert_eq!(kind_for_http_status(418), Some(ErrorKind::Internal));
        assert_eq!(
            kind_for_engine_text("X Is Paused", &["is paused"]),
            ErrorKind::Conflict
        );
        assert_eq!(
            kind_for_engine_text("runtime exploded", &[]),
            ErrorKind::Internal
        );
    }

    #[test]
    fn common_texts_map_the_same_for_every_engine() {
        let rows = [
            (
                "toomanyrequests: You have reached your pull rate limit",
                ErrorKind::RateLimited,
            ),
            (
                "unauthorized: authentication required",
                ErrorKind::Unauthenticated,
            ),
            (
                "manifest for r/x:1 not found: manifest unknown",
                ErrorKind::NotFound,
            ),
            (
                "pull access denied for nope, repository does not exist",
                ErrorKind::NotFound,
            ),
            (
                "name unknown: repository name not known to registry",
                ErrorKind::NotFound,
            ),
            (
                "requested access to the resource is denied",
                ErrorKind::PermissionDenied,
            ),
            ("invalid reference format", ErrorKind::InvalidInput),
            (
                "dial tcp 127.0.0.1:5000: connect: connection refused",
                ErrorKind::Unavailable,
            ),
            (
                "received unexpected HTTP status: 503 Service Unavailable",
                ErrorKind::Unavailable,
            ),
            ("context deadline exceeded", ErrorKind::Timeout),
        ];
        for (text, kind) in rows {
            assert_eq!(kind_for_common_text(text), Some(kind), "{text}");
        }
        assert_eq!(
            kind_for_common_text("filesystem layer verification failed"),
            None
        );
        assert!(is_transient_text("read: Connection Reset by peer"));
        assert!(!is_transient_text("manifest unknown"));
    }

    #[test]
    fn a_dns_failure_is_unavailable_not_a_missing_image() {
        for text in [
            "Get \"https://nope.example/v2/\": dial tcp: lookup nope.example: no such host",
            "pinging container registry nope.example: Get \"https://nope.example/v2/\": dial tcp: lookup nope.example on 127.0.0.53:53: no such host",
            "dial tcp: lookup registry: Temporary failure in name resolution",
            "error sending request: dns error: failed to lookup address information: Name or service not known",
        ] {
            assert_eq!(
                kind_for_common_text(text),
                Some(ErrorKind::Unavailable),
                "{text}"
            );
            assert!(is_transient_text(text), "{text}");
        }
        // What engines say of a missing object stays NotFound.
        for text in [
            "No such container: x",
            "no such image: busybox:nope",
            "no such volume v",
        ] {
            assert_eq!(
                kind_for_common_text(text),
                Some(ErrorKind::NotFound),
                "{text}"
            );
        }
    }

    #[test]
    fn retry_status_is_settled_by_the_operation() {
        let settled = |kind, idempotent| Error::new(kind, "x").settle_retryable(idempotent);
        // A deadline, the client's or the engine's: only for an idempotent call.
        assert!(settled(ErrorKind::Timeout, true).is_retryable());
        assert!(!settled(ErrorKind::Timeout, false).is_retryable());
        // A connection lost after the request was sent: only for an idempotent call.
        assert!(settled(ErrorKind::Unavailable, true).is_retryable());
        assert!(!settled(ErrorKind::Unavailable, false).is_retryable());
        // Nothing was sent: safe for any call.
        let refused = Error::new(ErrorKind::Unavailable, "refused").before_send();
        assert!(refused.is_before_send());
        assert!(refused.settle_retryable(false).is_retryable());
        // The engine refused the call: retryable either way.
        assert!(settled(ErrorKind::RateLimited, false).is_retryable());
        // Never for the other kinds, and never once a policy gave up.
        assert!(!settled(ErrorKind::Internal, true).is_retryable());
        assert!(!settled(ErrorKind::NotFound, false).is_retryable());
        let exhausted = Error::new(ErrorKind::Timeout, "x")
            .settle_retryable(true)
            .mark_exhausted(3)
            .settle_retryable(true);
        assert!(!exhausted.is_retryable());
    }

    #[derive(Debug, thiserror::Error)]
    #[error("{text}")]
    struct Chain {
        text: &'static str,
        #[source]
        cause: Option<Box<dyn std::error::Error + Send + Sync>>,
    }

    #[test]
    fn transport_failures_are_found_in_the_cause_chain() {
        use std::io::ErrorKind as K;
        let wrap = |text, cause: Box<dyn std::error::Error + Send + Sync>| Chain {
            text,
            cause: Some(cause),
        };
        // A reset mid-body, as reqwest over hyper reports it.
        let reset = wrap(
            "error decoding response body",
            Box::new(wrap(
                "error reading a body from connection",
                Box::new(std::io::Error::from(K::ConnectionReset)),
            )),
        );
        assert_eq!(
            transport_failure(&reset),
            Some(TransportFailure {
                kind: ErrorKind::Unavailable,
                before_send: false
            })
        );
        // hyper's early close has no I/O cause: its text says it.
        let closed = wrap(
            "error decoding response body",
            Box::new(Chain {
                text: "connection closed before message completed",
                cause: None,
            }),
        );
        assert_eq!(
            transport_failure(&closed).map(|t| t.kind),
            Some(ErrorKind::Unavailable)
        );
        // A refused connection: nothing was sent. Inside a wrapping I/O error too.
        let refused = std::io::Error::other(wrap(
            "client error (Connect)",
            Box::new(std::io::Error::from(K::ConnectionRefused)),
        ));
        assert_eq!(
            transport_failure(&refused),
            Some(TransportFailure {
                kind: ErrorKind::Unavailable,
                before_send: true
            })
        );
        let timed_out = std::io::Error::from(K::TimedOut);
        assert_eq!(
            transport_failure(&timed_out).map(|t| t.kind),
            Some(ErrorKind::Timeout)
        );
        // Not a transport failure: a full disk, a bad document.
        assert_eq!(
            transport_failure(&std::io::Error::from(K::StorageFull)),
            None
        );
        let bad = Chain {
            text: "expected value at line 1 column 1",
            cause: None,
        };
        assert_eq!(transport_failure(&bad), None);
    }

    #[test]
    fn exhausted_errors_are_no_longer_retryable() {
        let e = Error::new(ErrorKind::RateLimited, "slow down").mark_exhausted(4);
        assert!(!e.is_retryable());
        assert!(e.retries_exhausted());
        assert_eq!(e.attempts(), 4);
        assert!(e.to_string().contains("retries exhausted after 4 attempts"));
        let permanent = Error::new(ErrorKind::NotFound, "gone").mark_exhausted(1);
        assert!(!permanent.retries_exhausted());
    }

    #[test]
    fn source_that_contains_the_message_is_not_printed() {
        let e = Error::new(ErrorKind::InvalidInput, "HTTP 400: bad request")
            .with_source(std::io::Error::other("engine said HTTP 400: bad request"));
        assert_eq!(e.to_string(), "invalid input: HTTP 400: bad request");
    }

    #[test]
    fn source_repeated_in_message_is_not_printed_twice() {
        let e = Error::new(
            ErrorKind::Internal,
            "connection refused (os error 111) here",
        )
        .with_source(std::io::Error::other("connection refused (os error 111)"));
        assert_eq!(
            e.to_string(),
            "internal: connection refused (os error 111) here"
        );
    }
}
