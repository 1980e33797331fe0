//! containerctl's own errors: one readable line with the kind, a hint, exit 125.

use std::process::ExitCode;

use container::{Error, ErrorKind, Labels};

/// Exit code of containerctl's own errors (docker's and podman's convention), so they
/// never pass for the command's exit code.
pub(crate) const OWN_ERROR: u8 = 125;

/// Why containerctl itself failed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library or the engine said no.
    Engine(Error),
    /// The command line asks for something containerctl refuses, with a hint.
    Usage { message: String, hint: &'static str },
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Engine(e)
    }
}

impl Failure {
    /// A refusal of the command line.
    pub(crate) fn usage(message: impl Into<String>, hint: &'static str) -> Self {
        Failure::Usage {
            message: message.into(),
            hint,
        }
    }

    /// Prints the line (and hint) on stderr; the exit code.
    pub(crate) fn report(self) -> ExitCode {
        match self {
            Failure::Engine(e) => {
                // The error's text starts with its kind ("not found on …").
                eprintln!("containerctl: {}", error_text(&e));
                if let Some(hint) = hint(&e) {
                    eprintln!("  hint: {hint}");
                }
            }
            Failure::Usage { message, hint } => {
                eprintln!("containerctl: invalid input: {message}");
                eprintln!("  hint: {hint}");
            }
        }
        ExitCode::from(OWN_ERROR)
    }
}

/// The error and its causes on one line.
fn error_text(e: &Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}

/// What to try next, by kind.
fn hint(e: &Error) -> Option<String> {
    Some(match e.kind() {
        ErrorKind::Unavailable => {
            let start = match e.backend() {
                Some(container::BackendKind::Podman) => {
                    "`podman system service --time=0 unix:///run/podman/podman.sock`"
                }
                Some(container::BackendKind::Containerd) => {
                    "`containerd` (or `systemctl start containerd`)"
                }
                _ => "`dockerd` (or `systemctl start docker`)",
            };
            format!(
                "is the engine running? The socket tried is in the message above; start it with \
                 {start}, or choose another with --backend / --endpoint (or DOCKER_HOST, \
                 CONTAINER_HOST, CONTAINERD_ADDRESS)"
            )
        }
        ErrorKind::Unauthenticated => {
            "the registry wants credentials: log in (`docker login` writes ~/.docker/config.json)"
                .into()
        }
        ErrorKind::PermissionDenied => {
            "run as a user who may use the engine's socket (root, or the docker group)".into()
        }
        ErrorKind::NotFound => "check the name: `containerctl ps`, `containerctl volume ls`".into(),
        ErrorKind::Conflict => {
            "the object is in a state or has a name that prevents this; `containerctl ps` shows it"
                .into()
        }
        ErrorKind::InvalidInput => "see `containerctl <command> --help`".into(),
        ErrorKind::Unsupported => {
            "this backend cannot do it: `containerctl info` lists what it can".into()
        }
        ErrorKind::Timeout | ErrorKind::RateLimited if e.is_retryable() => {
            "trying again may help".into()
        }
        _ if e.is_retryable() => "trying again may help".into(),
        _ => return None,
    })
}

/// Refuses to remove an object that lacks container-rs's owner label.
pub(crate) fn ensure_made_here(what: &str, labels: &Labels) -> Result<(), Failure> {
    if labels.contains_key(container::labels::OWNER_LABEL) {
        Ok(())
    } else {
        Err(Failure::Engine(Error::new(
            ErrorKind::PermissionDenied,
            format!(
                "{what} was not made with container-rs (it has no {} label); containerctl never \
                 removes it",
                container::labels::OWNER_LABEL
            ),
        )))
    }
}
