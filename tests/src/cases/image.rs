//! Cases 1-7: pull, image_exists, remove_image. Every case that removes or pulls the user
//! image holds `ctx.image_lock()`; no other case uses that image.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use container::{ContainerConfig, ErrorKind, LayerPhase, PullOptions, PullProgress, RetryPolicy};

use crate::ctx::{Ctx, SLACK};
use crate::failure::{expect_kind, Failure};
use crate::support::{registry_request, split_image, MANIFEST_ACCEPT};
use crate::{ensure, ensure_eq};

type Events = Arc<Mutex<Vec<PullProgress>>>;

/// Pull options that record every progress event.
fn recording() -> (PullOptions, Events) {
    let events: Events = Arc::default();
    let sink = events.clone();
    let options = PullOptions::default().with_progress(move |p: &PullProgress| {
        sink.lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(p.clone());
    });
    (options, events)
}

fn taken(events: &Events) -> Vec<PullProgress> {
    events
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone()
}

/// Layer events that mean bytes were fetched or unpacked.
fn layer_work(events: &[PullProgress]) -> usize {
    events
        .iter()
        .filter(|e| {
            matches!(
                e,
                PullProgress::Layer {
                    phase: LayerPhase::Downloading | LayerPhase::Verifying | LayerPhase::Extracting,
                    ..
                }
            )
        })
        .count()
}

/// Case 1: Pull by tag: afterwards `image_exists`; pulling again is Ok and downloads nothing.
pub async fn case_01_pull_by_tag(ctx: &Ctx) -> Result<(), Failure> {
    let _image = ctx.image_lock().lock().await;
    let m = ctx.manager();
    let image = ctx.user_image();

    m.remove_image(image, true).await?;
    ensure!(
        !m.image_exists(image).await?,
        "{image} still exists after remove_image(force)"
    );

    let (first, first_events) = recording();
    m.pull(image, &first).await?;
    ensure!(m.image_exists(image).await?, "{image} missing after pull");
    let first_events = taken(&first_events);
    // The user image has a payload layer of its own (besides the base layer it shares
    // with the main image), so its first pull must fetch or unpack something.
    ensure!(
        layer_work(&first_events) > 0,
        "the first pull of an absent image downloaded or extracted nothing: {first_events:?}"
    );

    let (second, second_events) = recording();
    let started = Instant::now();
    m.pull(image, &second).await?;
    let took = started.elapsed();
    let second_events = taken(&second_events);
    ensure_eq!(
        layer_work(&second_events),
        0,
        "pulling a present image again downloaded or extracted layers ({took:?}): \
         {second_events:?}"
    );
    ensure!(
        m.image_exists(image).await?,
        "{image} missing after the second pull"
    );
    // The progress says so: the first pull fetched, the second found the image current.
    let already = |events: &[PullProgress]| {
        events
            .iter()
            .any(|e| matches!(e, PullProgress::AlreadyPresent { .. }))
    };
    ensure!(
        !already(&first_events),
        "the first pull of an absent image reported it already present: {first_events:?}"
    );
    ensure!(
        already(&second_events),
        "the second pull did not report the image already present: {second_events:?}"
    );
    Ok(())
}

/// Case 2: Pull by digest works; a bare name means `:latest` (never "all tags").
pub async fn case_02_pull_by_digest(ctx: &Ctx) -> Result<(), Failure> {
    let _image = ctx.image_lock().lock().await;
    let m = ctx.manager();
    let image = ctx.user_image();
    let (host, repo) = split_image(image)?;
    let tag = image
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.contains('/'))
        .ok_or_else(|| Failure::new(format!("{image} has no tag")))?;

    let head = registry_request(
        image,
        "HEAD",
        &format!("/v2/{repo}/manifests/{tag}"),
        MANIFEST_ACCEPT,
    )
    .await?;
    ensure_eq!(head.status, 200, "registry HEAD of {image}'s manifest");
    let digest = head
        .header("docker-content-digest")
        .ok_or_else(|| Failure::new("the registry sent no Docker-Content-Digest"))?
        .to_string();
    ensure!(digest.starts_with("sha256:"), "odd digest {digest}");
    let by_digest = format!("{host}/{repo}@{digest}");

    m.remove_image(image, true).await?;
    m.remove_image(&by_digest, true).await?;
    ensure!(
        !m.image_exists(&by_digest).await?,
        "{by_digest} still exists after remove_image(force)"
    );
    m.pull(&by_digest, &PullOptions::default()).await?;
    ensure!(
        m.image_exists(&by_digest).await?,
        "{by_digest} missing after pulling it by digest"
    );

    // The bare name: `:latest`, whatever other tags the repository has.
    let tags = registry_request(
        image,
        "GET",
        &format!("/v2/{repo}/tags/list"),
        "application/json",
    )
    .await?;
    ensure_eq!(tags.status, 200, "registry tag list of {repo}");
    let tags: serde_json::Value = serde_json::from_slice(&tags.body)
        .map_err(|e| Failure::new(format!("tag list is not JSON: {e}")))?;
    let has_latest = tags["tags"]
        .as_array()
        .is_some_and(|t| t.iter().any(|v| v == "latest"));
    let bare = format!("{host}/{repo}");
    let no_retry = PullOptions::default().with_retry(RetryPolicy::none());
    if has_latest {
        m.pull(&bare, &no_retry).await?;
        ensure!(
            m.image_exists(&format!("{bare}:latest")).await?,
            "pulling the bare name {bare} did not give {bare}:latest"
        );
    } else {
        expect_kind(
            m.pull(&bare, &no_retry).await,
            ErrorKind::NotFound,
            &format!("pull of the bare name {bare} (the repository has no `latest` tag)"),
        )?;
        ensure!(
            !m.image_exists(image).await?,
            "pulling the bare name {bare} fetched {image}: it pulled every tag instead of :latest"
        );
    }
    m.pull(image, &PullOptions::default()).await?;
    Ok(())
}

/// Case 3: A repository that does not exist → `NotFound`, not retryable, no retries spent.
pub async fn case_03_pull_missing_repository(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let (host, _) = split_image(ctx.image())?;
    let missing = format!(
        "{host}/container-rs/does-not-exist-{}:1",
        uuid::Uuid::new_v4().simple()
    );
    let started = Instant::now();
    let e = expect_kind(
        m.pull(&missing, &PullOptions::default()).await,
        ErrorKind::NotFound,
        "pull of a repository that does not exist",
    )?;
    let took = started.elapsed();
    ensure!(!e.is_retryable(), "NotFound marked retryable: {e}");
    ensure!(
        !e.retries_exhausted() && e.attempts() <= 1,
        "retries were spent on a NotFound: {} attempts, exhausted {}",
        e.attempts(),
        e.retries_exhausted()
    );
    ensure!(took < SLACK, "a failed pull took {took:?}");
    ensure!(
        !m.image_exists(&missing).await?,
        "{missing} exists after a failed pull"
    );
    Ok(())
}

/// Case 4: Malformed references → `InvalidInput` before any engine call (checked with a
/// byte-counting proxy in front of the engine).
pub async fn case_04_malformed_reference(ctx: &Ctx) -> Result<(), Failure> {
    let (m, proxy) = crate::support::counted_manager(ctx).await?;
    // Same session as the run: the run's own manager removes anything that slipped through.
    let mut t = ctx.tracker();
    let bad = [
        "",
        " 127.0.0.1:5000/container-rs/busybox:1",
        "127.0.0.1:5000/container-rs/BusyBox:1",
        "127.0.0.1:5000/container-rs/busybox:bad tag",
        "127.0.0.1:5000/container-rs/busybox@sha256:xyz",
        "127.0.0.1:5000/container-rs/busybox:",
        "127.0.0.1:5000//busybox:1",
        "::",
    ];
    let before = proxy.quiet_bytes_to_engine().await;
    for r in bad {
        expect_kind(
            m.pull(r, &PullOptions::default()).await,
            ErrorKind::InvalidInput,
            &format!("pull({r:?})"),
        )?;
        expect_kind(
            m.image_exists(r).await,
            ErrorKind::InvalidInput,
            &format!("image_exists({r:?})"),
        )?;
        expect_kind(
            m.remove_image(r, false).await,
            ErrorKind::InvalidInput,
            &format!("remove_image({r:?})"),
        )?;
        let name = ctx.name(4);
        t.container(name.clone());
        let config = ContainerConfig::new(r).name(name).cmd(["true"]);
        expect_kind(
            m.create(&config).await,
            ErrorKind::InvalidInput,
            &format!("create with image {r:?}"),
        )?;
    }
    let after = proxy.quiet_bytes_to_engine().await;
    ensure_eq!(
        after - before,
        0,
        "bytes sent to the engine while refusing malformed references"
    );
    Ok(())
}

/// Case 5: Pull progress events arrive for layers and end with a completed event.
pub async fn case_05_pull_progress(ctx: &Ctx) -> Result<(), Failure> {
    let _image = ctx.image_lock().lock().await;
    let m = ctx.manager();
    let image = ctx.user_image();
    m.remove_image(image, true).await?;
    let (options, events) = recording();
    m.pull(image, &options).await?;
    let events = taken(&events);
    let layers = events
        .iter()
        .filter(|e| matches!(e, PullProgress::Layer { .. }))
        .count();
    ensure!(layers > 0, "no layer progress events: {events:?}");
    ensure!(
        layer_work(&events) > 0,
        "no download or extract progress for the image's own layer: {events:?}"
    );
    let completed = events
        .iter()
        .filter(|e| matches!(e, PullProgress::Completed { .. }))
        .count();
    ensure_eq!(completed, 1, "completed events in {events:?}");
    ensure!(
        matches!(events.last(), Some(PullProgress::Completed { .. })),
        "the last progress event is not Completed: {:?}",
        events.last()
    );
    ensure!(
        m.image_exists(image).await?,
        "{image} missing after the pull"
    );
    Ok(())
}

/// Case 6: A pull deadline → `Timeout` promptly; a dropped pull (cancellation) leaves the
/// engine usable.
pub async fn case_06_pull_deadline(ctx: &Ctx) -> Result<(), Failure> {
    let _image = ctx.image_lock().lock().await;
    let m = ctx.manager();
    let image = ctx.user_image();
    m.remove_image(image, true).await?;

    let deadline = Duration::from_millis(1);
    let options = PullOptions::default().with_timeout(deadline);
    let started = Instant::now();
    expect_kind(
        m.pull(image, &options).await,
        ErrorKind::Timeout,
        "pull with a 1 ms deadline",
    )?;
    let took = started.elapsed();
    ensure!(
        took < deadline + SLACK,
        "the 1 ms pull deadline fired after {took:?}"
    );

    // Cancellation: the caller drops the pull future.
    m.remove_image(image, true).await?;
    let dropped = tokio::time::timeout(
        Duration::from_millis(20),
        m.pull(image, &PullOptions::default()),
    )
    .await;
    if let Ok(result) = dropped {
        // Finished within 20 ms: nothing was cancelled, but it must still have worked.
        result?;
    }

    // The engine stays usable: info, a full pull, a container from the image.
    m.info().await?;
    m.pull(image, &PullOptions::default()).await?;
    ensure!(
        m.image_exists(image).await?,
        "{image} missing after a pull following a cancelled one"
    );
    let mut t = ctx.tracker();
    let name = ctx.name(6);
    t.container(name.clone());
    let id = m
        .create(&ContainerConfig::new(image).name(name).cmd(["true"]))
        .await?;
    m.start(&id).await?;
    let code = tokio::time::timeout(Duration::from_secs(30), m.wait(&id))
        .await
        .map_err(|_| Failure::new("wait hung for 30 s"))??;
    ensure_eq!(code, 0, "exit code of `true` after the cancelled pull");
    // Gone before the image lock is released: the next image case removes the image,
    // which a container still using it would block (the tracker removes in the background).
    m.remove(&id, true).await?;
    Ok(())
}

/// Case 7: Removing a missing image is Ok; removing an image a container uses → `Conflict`.
pub async fn case_07_remove_image(ctx: &Ctx) -> Result<(), Failure> {
    let m = ctx.manager();
    let (host, _) = split_image(ctx.image())?;
    let missing = format!(
        "{host}/container-rs/never-pulled-{}:1",
        uuid::Uuid::new_v4().simple()
    );
    m.remove_image(&missing, false).await?;

    let _image = ctx.image_lock().lock().await;
    let image = ctx.user_image();
    m.pull(image, &PullOptions::default()).await?;
    let mut t = ctx.tracker();
    let name = ctx.name(7);
    t.container(name.clone());
    let id = m
        .create(&ContainerConfig::new(image).name(name).cmd(["true"]))
        .await?;
    expect_kind(
        m.remove_image(image, false).await,
        ErrorKind::Conflict,
        "remove_image of an image a container uses",
    )?;
    ensure!(
        m.image_exists(image).await?,
        "{image} was removed although a container uses it"
    );
    m.remove(&id, false).await?;
    m.remove_image(image, false).await?;
    ensure!(
        !m.image_exists(image).await?,
        "{image} exists after remove_image"
    );
    m.pull(image, &PullOptions::default()).await?;
    Ok(())
}
