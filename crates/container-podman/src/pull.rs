//! Image pull: tag or digest always sent, credentials, progress, errors read from every
//! report of the 200 stream (libpod never fails a pull with an HTTP error), retries for
//! retryable errors only, and the image confirmed at the end.
//!
//! The pull policy is `newer`: an image already present is re-checked against the
//! registry's manifest and nothing is downloaded when it is current (Docker's behaviour;
//! libpod's default `always` copies every blob again).

use container_core::{
    Error, ErrorKind, ImageRef, Operation, PullOptions, PullProgress, RegistryAuth, Result,
};
use futures::StreamExt;
use podman_api::opts::{PullOpts, PullPolicy};
use podman_api::Podman;

use crate::convert::pull_progress;
use crate::error::{map_error, text_error, BACKEND};

/// Pulls `image` per `options`; see the module docs.
pub(crate) async fn pull(podman: &Podman, image: &str, options: &PullOptions) -> Result<()> {
    let reference = ImageRef::parse(image)
        .map_err(|e| e.context(BACKEND, Operation::Pull, image.to_string()))?;
    let attempts = options.retry.run(|attempt| {
        let reference = &reference;
        async move {
            if attempt > 1 {
                tracing::info!(image = %reference, attempt, "retrying pull");
            }
            pull_once(podman, reference, options).await
        }
    });
    let result = container_core::retry::with_deadline(options.timeout, "pull", attempts).await;
    result.map_err(|e| e.context(BACKEND, Operation::Pull, image.to_string()))
}

async fn pull_once(podman: &Podman, reference: &ImageRef, options: &PullOptions) -> Result<()> {
    options.report(&PullProgress::Resolving {
        reference: reference.to_string(),
    });
    let local = image_ref_for_engine(reference);
    let mut builder = PullOpts::builder()
        .reference(&local)
        .policy(PullPolicy::Newer);
    if let Some(auth) = options.auth.as_ref() {
        builder.auth(registry_auth(reference, auth));
    }
    let opts = builder.build();
    let images = podman.images();
    let mut reports = images.pull(&opts);
    while let Some(report) = reports.next().await {
        let report = report.map_err(map_error)?;
        if let Some(error) = report.error.as_deref().filter(|e| !e.is_empty()) {
            return Err(text_error(error));
        }
        for line in report.stream.as_deref().unwrap_or_default().lines() {
            if let Some(event) = pull_progress(line) {
                options.report(&event);
            }
        }
    }
    drop(reports);
    // The reports can end "successfully" without the image (a dropped connection): check.
    let present = podman
        .images()
        .get(local.as_str())
        .exists()
        .await
        .map_err(map_error)?;
    if !present {
        return Err(Error::new(
            ErrorKind::Unavailable,
            "the pull stream ended but the image is not present",
        ));
    }
    options.report(&PullProgress::Completed {
        reference: reference.to_string(),
        digest: reference.digest().map(str::to_string),
    });
    Ok(())
}

fn registry_auth(reference: &ImageRef, auth: &RegistryAuth) -> podman_api::opts::RegistryAuth {
    podman_api::opts::RegistryAuth::builder()
        .username(auth.username.clone())
        .password(auth.password.clone())
        .server_address(
            auth.server
                .clone()
                .unwrap_or_else(|| reference.registry().to_string()),
        )
        .build()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn engine_names_keep_tag_or_digest() {
        let r = ImageRef::parse("busybox").expect("ref");
        assert_eq!(image_ref_for_engine(&r), "docker.io/library/busybox:latest");
        let d = format!("sha256:{}", "b".repeat(64));
        let r = ImageRef::parse(&format!("127.0.0.1:5000/x@{d}")).expect("ref");
        assert_eq!(image_ref_for_engine(&r), format!("127.0.0.1:5000/x@{d}"));
    }
}
