//! Image pull: tag or digest always sent, credentials, progress, errors read from inside
//! the 200 stream, retries for retryable errors only, and the image confirmed at the end.

use std::path::PathBuf;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use container_core::{
    Error, ErrorKind, ImageRef, Operation, PullOptions, PullProgress, RegistryAuth, Result,
};
use futures::StreamExt;

use crate::convert::{pull_digest, pull_progress};
use crate::error::{map_error, BACKEND};

/// Pulls `image` per `options`; see the module docs.
pub(crate) async fn pull(docker: &Docker, image: &str, options: &PullOptions) -> Result<()> {
    let reference = ImageRef::parse(image)
        .map_err(|e| e.context(BACKEND, Operation::Pull, image.to_string()))?;
    let credentials = credentials(&reference, options.auth.as_ref());
    let attempts = options.retry.run(|attempt| {
        let credentials = credentials.clone();
        let reference = &reference;
        async move {
            if attempt > 1 {
                tracing::info!(image = %reference, attempt, "retrying pull");
            }
            pull_once(docker, reference, credentials, options).await
        }
    });
    let result = container_core::retry::with_deadline(options.timeout, "pull", attempts).await;
    result.map_err(|e| e.context(BACKEND, Operation::Pull, image.to_string()))
}

async fn pull_once(
    docker: &Docker,
    reference: &ImageRef,
    credentials: Option<DockerCredentials>,
    options: &PullOptions,
) -> Result<()> {
    options.report(&PullProgress::Resolving {
        reference: reference.to_string(),
    });
    let query = CreateImageOptions {
        from_image: Some(reference.name()),
        // Never empty: an empty tag would pull every tag of the repository.
        tag: Some(reference.tag_or_digest().to_string()),
        ..CreateImageOptions::default()
    };
    let mut digest = reference.digest().map(str::to_string);
    let mut lines = docker.create_image(Some(query), None, credentials);
    while let Some(line) = lines.next().await {
        let info = line.map_err(map_error)?;
        if let Some(detail) = &info.error_detail {
            let text = detail.message.clone().unwrap_or_default();
            return Err(map_error(bollard::errors::Error::DockerStreamError {
                error: text,
            }));
        }
        if let Some(d) = pull_digest(&info) {
            digest = Some(d);
        }
        if let Some(event) = pull_progress(&info) {
            options.report(&event);
        }
    }
    // A stream can end "successfully" without the image (a dropped connection): check.
    let local = image_ref_for_engine(reference);
    match docker.inspect_image(&local).await {
        Ok(_) => {}
        Err(e) => {
            let e = map_error(e);
            return Err(if e.kind() == ErrorKind::NotFound {
                Error::new(
                    ErrorKind::Unavailable,
                    "the pull stream ended but the image is not present",
                )
                .with_source(e)
            } else {
                e
            });
        }
    }
    options.report(&PullProgress::Completed {
        reference: reference.to_string(),
        digest,
    });
    Ok(())
}

/// The name the engine stores the image under: `name@digest` or `name:tag`.
pub(crate) fn image_ref_for_engine(reference: &ImageRef) -> String {
    match reference.digest() {
        Some(d) => format!("{}@{d}", reference.name()),
        None => format!(
            "{}:{}",
            reference.name(),
            reference.tag().unwrap_or("latest")
        ),
    }
}

/// Explicit credentials, or else the user's Docker config file (`$DOCKER_CONFIG/config.json`
/// or `~/.docker/config.json`, `auths.<registry>.auth`). Credential helpers are not run.
fn credentials(reference: &ImageRef, explicit: Option<&RegistryAuth>) -> Option<DockerCredentials> {
    if let Some(a) = explicit {
        return Some(DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(
                a.server
                    .clone()
                    .unwrap_or_else(|| reference.registry().to_string()),
            ),
            ..DockerCredentials::default()
        });
    }
    let path = config_path()?;
    let text = std::fs::read_to_string(path).ok()?;
    credentials_from_config(&text, reference.registry())
}

fn config_path() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return Some(PathBuf::from(dir).join("config.json"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".docker/config.json"))
}

fn credentials_from_config(text: &str, registry: &str) -> Option<DockerCredentials> {
    let config: serde_json::Value = serde_json::from_str(text).ok()?;
    let auths = config.get("auths")?.as_object()?;
    let keys: Vec<String> = if registry == "docker.io" {
        vec![
            "https://index.docker.io/v1/".into(),
            "index.docker.io".into(),
            "docker.io".into(),
        ]
    } else {
        vec![
            registry.into(),
            format!("https://{registry}"),
            format!("http://{registry}"),
        ]
    };
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    let encoded = entry.get("auth")?.as_str()?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    Some(DockerCredentials {
        username: Some(user.to_string()),
        password: Some(pass.to_string()),
        serveraddress: Some(registry.to_string()),
        ..DockerCredentials::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_come_from_the_config_file() {
        let auth = base64::engine::general_purpose::STANDARD.encode("me:s3cret");
        let text = format!(r#"{{"auths":{{"127.0.0.1:5000":{{"auth":"{auth}"}}}}}}"#);
        let c = credentials_from_config(&text, "127.0.0.1:5000").expect("creds");
        assert_eq!(c.username.as_deref(), Some("me"));
        assert_eq!(c.password.as_deref(), Some("s3cret"));
        assert!(credentials_from_config(&text, "other:5000").is_none());
    }

    #[test]
    fn explicit_credentials_win_and_default_to_the_reference_registry() {
        let r = ImageRef::parse("127.0.0.1:5000/a/b:1").expect("ref");
        let a = RegistryAuth {
            username: "u".into(),
            password: "p".into(),
            server: None,
        };
        let c = credentials(&r, Some(&a)).expect("creds");
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
    }

    #[test]
    fn engine_names_keep_tag_or_digest() {
        let r = ImageRef::parse("busybox").expect("ref");
        assert_eq!(image_ref_for_engine(&r), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x@{d}")).expect("ref");
        assert_eq!(image_ref_for_engine(&r), format!("127.0.0.1:5000/x@{d}"));
    }
}
