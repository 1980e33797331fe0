//! One image pull attempt: tag or digest always sent, credentials, progress, errors read
//! from inside the 200 stream, every message awaited within the stall deadline. Retries,
//! the attempt and overall deadlines and the final check that the image is present are
//! core's.

use std::path::PathBuf;

use base64::Engine as _;
use bollard::auth::DockerCredentials;
use bollard::query_parameters::CreateImageOptions;
use bollard::Docker;
use container_core::raw::PullRequest;
use container_core::{ImageRef, RegistryAuth, Result};

use crate::convert::{pull_digest, pull_progress};
use crate::error::map_error;

/// One pull attempt of `reference`: layer events to `progress`, errors read from inside
/// the 200 stream; returns the manifest digest when the engine tells it.
pub(crate) async fn pull_once(docker: &Docker, request: PullRequest<'_>) -> Result<Option<String>> {
    let (reference, auth, progress) = (request.image, request.auth, request.progress);
    let query = CreateImageOptions {
        from_image: Some(reference.name()),
        // Never empty: an empty tag would pull every tag of the repository.
        tag: Some(reference.tag_or_digest().to_string()),
        ..CreateImageOptions::default()
    };
    let mut digest = None;
    let mut lines = docker.create_image(Some(query), None, credentials(reference, auth));
    // The engine sends byte progress while it downloads and extracts: a silence as long
    // as the stall deadline is a stalled registry (or engine), not a slow one.
    while let Some(line) = progress
        .next("the engine's next pull progress message", &mut lines)
        .await?
    {
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
            progress.report(&event);
        }
    }
    Ok(digest)
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
        let a = RegistryAuth::new("u", "p");
        let c = credentials(&r, Some(&a)).expect("creds");
        assert_eq!(c.serveraddress.as_deref(), Some("127.0.0.1:5000"));
    }
}
