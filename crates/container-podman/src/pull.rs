//! One image pull attempt: tag or digest always sent, credentials, progress, errors read
//! from every report of the 200 stream (libpod never fails a pull with an HTTP error).
//! Retries, the deadlines and the final check that the image is present are core's.
//!
//! No stall rule here: libpod reports the start of each blob and never bytes, so a
//! silent stream cannot tell a stalled registry from a large blob on a slow link. A
//! stalled pull ends at core's per-attempt deadline (`PullOptions::attempt_timeout`),
//! which drops this stream and so closes the connection to the service (libpod is
//! expected to cancel the pull with its request; `docs/adr/0011-pull-deadlines.md`).
//!
//! The pull policy is `newer`: an image already present is re-checked against the
//! registry's manifest and nothing is downloaded when it is current (Docker's behaviour;
//! libpod's default `always` copies every blob again).

use container_core::raw::PullRequest;
use container_core::{ImageRef, RegistryAuth, Result};
use futures::StreamExt;
use podman_api::opts::{PullOpts, PullPolicy};
use podman_api::Podman;

use crate::convert::pull_progress;
use crate::error::{map_error, text_error};

/// One pull attempt of `reference`; layer events to `progress`. Returns no digest: the
/// reports do not carry it.
pub(crate) async fn pull_once(podman: &Podman, request: PullRequest<'_>) -> Result<Option<String>> {
    let (reference, auth, progress) = (request.image, request.auth, request.progress);
    let local = reference.engine_name();
    let mut builder = PullOpts::builder()
        .reference(&local)
        .policy(PullPolicy::Newer);
    if let Some(auth) = auth {
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
                progress.report(&event);
            }
        }
    }
    Ok(None)
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
