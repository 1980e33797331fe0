//! The connection: one gRPC channel over containerd's unix socket, every request in this
//! library's namespace (and, during a pull, under its lease).

use std::time::Duration;

use container_core::{BackendKind, EngineInfo, Error, ErrorKind, Result};
use containerd_client::services::v1::version_client::VersionClient;
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;

use crate::error::map_status;

/// containerd's socket when neither the caller nor `CONTAINERD_ADDRESS` names one.
pub const DEFAULT_SOCKET: &str = "/run/containerd/containerd.sock";
/// The namespace when neither the caller nor `CONTAINERD_NAMESPACE` names one: this
/// library's own, apart from Docker's (`moby`), Kubernetes' (`k8s.io`) and `ctr`'s
/// (`default`).
pub const DEFAULT_NAMESPACE: &str = "container-rs";
/// Namespaces that belong to other tools: refused.
const FOREIGN_NAMESPACES: &[&str] = &["default", "moby", "k8s.io"];

/// A containerd connection in one namespace.
#[derive(Debug, Clone)]
pub struct Containerd {
    pub(crate) channel: Channel,
    namespace: String,
    socket: String,
}

impl Containerd {
    /// Connects to `socket` (else `CONTAINERD_ADDRESS`, else [`DEFAULT_SOCKET`]) in
    /// `namespace` (else `CONTAINERD_NAMESPACE`, else [`DEFAULT_NAMESPACE`]) and asks
    /// for the version, all within `timeout`. `Unavailable` when nothing answers;
    /// `InvalidInput` for a namespace of another tool.
    pub async fn connect(
        socket: Option<&str>,
        namespace: Option<&str>,
        timeout: Duration,
    ) -> Result<Containerd> {
        let env = |key: &str| std::env::var(key).ok().filter(|v| !v.is_empty());
        let socket = socket
            .map(str::to_string)
            .or_else(|| env("CONTAINERD_ADDRESS"))
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        let socket = socket
            .strip_prefix("unix://")
            .unwrap_or(&socket)
            .to_string();
        let namespace = namespace
            .map(str::to_string)
            .or_else(|| env("CONTAINERD_NAMESPACE"))
            .unwrap_or_else(|| DEFAULT_NAMESPACE.to_string());
        // The namespace names folders under this library's run and data roots: a
        // containerd namespace name (letters, digits, `.`, `_`, `-`, starting with a
        // letter or digit), never `..` or a `/`.
        let namespace_ok = namespace.len() <= 76
            && namespace
                .bytes()
                .next()
                .is_some_and(|b| b.is_ascii_alphanumeric())
            && namespace
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
            && !namespace.contains("..");
        if !namespace_ok {
            return Err(Error::invalid_input(format!(
                "the containerd namespace {namespace:?} is not a namespace name (letters, \
                 digits, '.', '_', '-', starting with a letter or digit)"
            )));
        }
        if FOREIGN_NAMESPACES.contains(&namespace.as_str()) {
            return Err(Error::invalid_input(format!(
                "the containerd namespace {namespace:?} belongs to another tool; use one of \
                 this library's own"
            )));
        }
        let reach = async {
            let channel = containerd_client::connect(&socket).await.map_err(|e| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("no containerd engine answers at {socket}"),
                )
                .with_source(e)
            })?;
            let c = Containerd {
                channel,
                namespace,
                socket: socket.clone(),
            };
            c.info().await?;
            Ok::<_, Error>(c)
        };
        tokio::time::timeout(timeout, reach)
            .await
            .unwrap_or_else(|_| {
                Err(Error::new(
                    ErrorKind::Unavailable,
                    format!("no containerd engine answered at {socket} within {timeout:?}"),
                ))
            })
    }

    /// The namespace every request is made in.
    pub fn namespace(&self) -> &str {
        &self.namespace
    }

    /// Engine identity and version.
    pub async fn info(&self) -> Result<EngineInfo> {
        let mut client = VersionClient::new(self.channel.clone());
        let v = client
            .version(self.request(())?)
            .await
            .map_err(map_status)?
            .into_inner();
        Ok(EngineInfo::new(
            BackendKind::Containerd,
            BackendKind::Containerd,
            v.version,
            format!("unix://{}", self.socket),
        )
        // No API version: containerd's API has none of its own (its services are
        // versioned by package, `v1`), and the revision it reports is a commit, empty in
        // distro builds (Debian's 2.1.9).
        .with_platform(std::env::consts::OS, std::env::consts::ARCH)
        // containerd is reached on its local socket: its host is this one.
        .with_local_resources())
    }

    /// `message` as a request in this namespace.
    pub(crate) fn request<T>(&self, message: T) -> Result<Request<T>> {
        self.leased(message, None)
    }

    /// `message` as a request in this namespace, under `lease` when given (what the
    /// request makes is then kept by the lease until it is deleted).
    pub(crate) fn leased<T>(&self, message: T, lease: Option<&str>) -> Result<Request<T>> {
        let mut request = Request::new(message);
        let md = request.metadata_mut();
        md.insert("containerd-namespace", metadata(&self.namespace)?);
        if let Some(lease) = lease {
            md.insert("containerd-lease", metadata(lease)?);
        }
        Ok(request)
    }
}

fn metadata(value: &str) -> Result<MetadataValue<containerd_client::tonic::metadata::Ascii>> {
    value.parse().map_err(|e| {
        Error::invalid_input(format!("{value:?} cannot be sent as gRPC metadata")).with_source(e)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_namespace_that_is_not_a_name_is_refused_before_connecting() {
        for bad in ["../../x", "a/b", "", ".hidden", "a..b", "name with space"] {
            let e =
                Containerd::connect(Some("/nonexistent.sock"), Some(bad), Duration::from_secs(1))
                    .await
                    .map(drop)
                    .expect_err(bad);
            assert_eq!(e.kind(), ErrorKind::InvalidInput, "{bad:?}: {e}");
        }
        // A good name gets as far as the (missing) socket.
        let e = Containerd::connect(
            Some("/nonexistent.sock"),
            Some("build-1.x_y"),
            Duration::from_secs(1),
        )
        .await
        .map(drop)
        .expect_err("no socket");
        assert_ne!(e.kind(), ErrorKind::InvalidInput, "{e}");
    }
}
