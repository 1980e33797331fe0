//! [`EngineManager`] over a scripted fake engine: the contract rules that need no real
//! engine (the conformance suite checks the rest against real ones).

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;

use super::*;
use crate::error::{Error, ErrorKind, Operation};
use crate::exec::ExecSpec;
use crate::labels::Ownership;
use crate::manager::ContainerManager;
use crate::retry::RetryPolicy;
use crate::types::{
    BackendKind, ConnectOptions, ContainerConfig, ContainerInfo, ContainerState, EngineInfo,
    LogOptions, VolumeConfig,
};

/// An engine whose answers the test scripts; every call is recorded by name.
#[derive(Default)]
struct Fake {
    caps: Capabilities,
    calls: Mutex<Vec<&'static str>>,
    /// Answers of `inspect`, in order; `NotFound` once they run out.
    inspect: Mutex<VecDeque<Result<ContainerInfo>>>,
    /// Answers of `remove`, in order; `Removed` once they run out.
    remove: Mutex<VecDeque<Result<Removal>>>,
    /// The id `create` returns.
    created_id: String,
    /// `start` never answers.
    hang_start: bool,
    /// What `wait` says.
    wait: Option<i64>,
    /// Labels of every volume the engine reports.
    volume_labels: Labels,
    /// Errors a call answers with, in order, before it answers as usual.
    fail: Mutex<HashMap<&'static str, VecDeque<Error>>>,
    /// Calls that never answer.
    hang: Vec<&'static str>,
    /// `copy_to` reads the archive 4 KiB at a time with this pause between reads, and
    /// stops taking bytes (hangs) once it has read the given number, if any.
    copy_pace: Option<(Duration, Option<usize>)>,
}

impl Fake {
    fn record(&self, call: &'static str) {
        self.calls.lock().expect("calls").push(call);
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().expect("calls").clone()
    }

    /// Records `call`, then answers with its next scripted error, or hangs, or goes on.
    async fn scripted(&self, call: &'static str) -> Result<()> {
        self.record(call);
        let failed = self
            .fail
            .lock()
            .expect("fail")
            .get_mut(call)
            .and_then(VecDeque::pop_front);
        if let Some(e) = failed {
            return Err(e);
        }
        if self.hang.contains(&call) {
            std::future::pending::<()>().await;
        }
        Ok(())
    }

    /// Scripts `errors` as the first answers of `call`.
    fn failing(self, call: &'static str, errors: impl IntoIterator<Item = Error>) -> Self {
        self.fail
            .lock()
            .expect("fail")
            .insert(call, errors.into_iter().collect());
        self
    }
}

fn missing() -> Error {
    Error::new(ErrorKind::NotFound, "no such container")
}

fn info(id: &str, name: &str, state: ContainerState) -> ContainerInfo {
    ContainerInfo::new(id, name, "img", state)
}

#[async_trait]
impl Engine for Arc<Fake> {
    type Exec = ();

    fn capabilities(&self) -> Capabilities {
        self.caps
    }
    async fn info(&self) -> Result<EngineInfo> {
        self.record("info");
        Ok(EngineInfo::new(
            BackendKind::Docker,
            BackendKind::Docker,
            "1",
            "fake",
        ))
    }
    async fn pull(&self, _request: PullRequest<'_>) -> Result<Option<String>> {
        self.scripted("pull").await?;
        Ok(None)
    }
    async fn image_exists(&self, _image: &ImageRef) -> Result<bool> {
        self.record("image_exists");
        Ok(true)
    }
    async fn remove_image(&self, _image: &ImageRef, _force: bool) -> Result<()> {
        self.record("remove_image");
        Err(missing())
    }
    async fn create(&self, _n: &str, _c: &ContainerConfig, _l: &Labels) -> Result<String> {
        self.scripted("create").await?;
        Ok(self.created_id.clone())
    }
    async fn start(&self, _id: &str) -> Result<()> {
        self.record("start");
        if self.hang_start {
            std::future::pending::<()>().await;
        }
        Ok(())
    }
    async fn stop(&self, _id: &str, _grace: Option<Duration>) -> Result<()> {
        self.record("stop");
        Ok(())
    }
    async fn kill(&self, _id: &str, _signal: Signal) -> Result<()> {
        self.record("kill");
        Ok(())
    }
    async fn remove(&self, _id: &str, _force: bool) -> Result<Removal> {
        self.record("remove");
        let next = self.remove.lock().expect("remove").pop_front();
        next.unwrap_or(Ok(Removal::Removed))
    }
    async fn inspect(&self, _id: &str) -> Result<ContainerInfo> {
        self.record("inspect");
        let next = self.inspect.lock().expect("inspect").pop_front();
        next.unwrap_or_else(|| Err(missing()))
    }
    async fn wait(&self, _id: &str) -> Result<Option<i64>> {
        self.record("wait");
        Ok(self.wait)
    }
    async fn list(&self, _labels: &Labels) -> Result<Vec<ContainerInfo>> {
        self.record("list");
        Ok(Vec::new())
    }
    async fn logs(&self, _id: &str, _options: &LogOptions) -> Result<OutputStream> {
        self.record("logs");
        Err(missing())
    }
    async fn attach_stdin(
        &self,
        _id: &str,
        _source: Box<dyn tokio::io::AsyncRead + Send + Unpin>,
    ) -> Result<tokio::task::AbortHandle> {
        self.record("attach_stdin");
        Err(missing())
    }
    async fn resize_tty(&self, _id: &str, _rows: u16, _cols: u16) -> Result<()> {
        self.record("resize_tty");
        Err(missing())
    }
    async fn exec_create(&self, _container: &str, _spec: &ExecSpec) -> Result<()> {
        self.scripted("exec_create").await
    }
    async fn exec_start(&self, _exec: &(), _spec: &ExecSpec) -> Result<OutputStream> {
        self.scripted("exec_start").await?;
        Ok(Box::pin(futures::stream::empty()))
    }
    async fn exec_state(&self, _exec: &()) -> Result<ExecState> {
        self.record("exec_state");
        Ok(ExecState {
            started: true,
            ..ExecState::default()
        })
    }
    async fn copy_from(&self, _id: &str, _path: &str) -> Result<ByteStream> {
        self.record("copy_from");
        Err(missing())
    }
    async fn copy_to(&self, _id: &str, _dir: &str, mut archive: File) -> Result<()> {
        self.scripted("copy_to").await?;
        if let Some((pace, stall_after)) = self.copy_pace {
            let mut buf = [0u8; 4096];
            let mut taken = 0;
            loop {
                if stall_after.is_some_and(|n| taken >= n) {
                    std::future::pending::<()>().await;
                }
                let n = std::io::Read::read(&mut archive, &mut buf).expect("read");
                if n == 0 {
                    return Ok(());
                }
                taken += n;
                tokio::time::sleep(pace).await;
            }
        }
        Ok(())
    }
    async fn create_volume(&self, name: &str, _labels: &Labels) -> Result<VolumeInfo> {
        self.record("create_volume");
        Ok(VolumeInfo::new(name, self.volume_labels.clone()))
    }
    async fn inspect_volume(&self, name: &str) -> Result<VolumeInfo> {
        self.record("inspect_volume");
        Ok(VolumeInfo::new(name, self.volume_labels.clone()))
    }
    async fn list_volumes(&self, _labels: &Labels) -> Result<Vec<VolumeInfo>> {
        self.record("list_volumes");
        Ok(Vec::new())
    }
    async fn remove_volume(&self, _name: &str, _force: bool) -> Result<()> {
        self.record("remove_volume");
        Ok(())
    }
}

async fn manager(fake: Fake) -> (EngineManager<Arc<Fake>>, Arc<Fake>) {
    let fake = Arc::new(fake);
    let options = ConnectOptions::owned_by("tester")
        .expect("owner")
        .with_call_timeout(Duration::from_secs(1))
        .with_retry(RetryPolicy {
            jitter: false,
            ..RetryPolicy::calls()
        });
    let engine = fake.clone();
    let m = EngineManager::connect(BackendKind::Docker, "fake", options, |_, _| async {
        Ok(engine)
    })
    .await
    .expect("connect");
    fake.calls.lock().expect("calls").clear();
    (m, fake)
}

#[tokio::test]
async fn bad_input_is_refused_before_any_engine_call() {
    let (m, fake) = manager(Fake::default()).await;
    let empty_image = m.create(&ContainerConfig::new("")).await;
    let bad_id = m.start("bad id!").await;
    let empty_cmd = m
        .exec_stream("c1", &ExecSpec::new(Vec::<String>::new()))
        .await;
    let relative = m
        .copy_from("c1", "relative/path", std::path::Path::new("/tmp"))
        .await;
    let bad_volume = m.create_volume(&VolumeConfig::new("a/b")).await;
    for (what, r) in [
        ("create", empty_image.map(drop)),
        ("start", bad_id),
        ("exec", empty_cmd.map(drop)),
        ("copy_from", relative),
        ("create_volume", bad_volume.map(drop)),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
        assert_eq!(e.backend(), Some(BackendKind::Docker), "{what}");
    }
    assert!(fake.calls().is_empty(), "engine called: {:?}", fake.calls());
}

#[tokio::test]
async fn durations_past_a_year_are_invalid_input_never_a_panic() {
    let (m, fake) = manager(Fake::default()).await;
    let max = Duration::MAX;
    let stop = m.stop("c1", Some(max)).await;
    let exec = m
        .exec_stream("c1", &ExecSpec::new(["true"]).timeout(max))
        .await;
    let grace = m
        .exec_stream("c1", &ExecSpec::new(["true"]).kill_grace(max))
        .await;
    let create = m
        .create(&ContainerConfig::new("busybox").stop_grace(max))
        .await;
    let pull = m
        .pull(
            "busybox",
            &crate::types::PullOptions::default().with_attempt_timeout(Some(max)),
        )
        .await;
    for (what, r) in [
        ("stop", stop),
        ("exec timeout", exec.map(drop)),
        ("exec kill grace", grace.map(drop)),
        ("create stop grace", create.map(drop)),
        ("pull", pull),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{what}: {e}");
    }
    assert!(fake.calls().is_empty(), "engine called: {:?}", fake.calls());
    let options = ConnectOptions::owned_by("tester")
        .expect("owner")
        .with_call_timeout(max);
    let connected = EngineManager::connect(BackendKind::Docker, "fake", options, |_, _| async {
        Ok(Arc::new(Fake::default()))
    })
    .await;
    let e = connected.map(drop).expect_err("call timeout");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
}

#[tokio::test]
async fn credentials_for_another_registry_are_never_used() {
    use crate::types::{PullOptions, RegistryAuth};
    let (m, fake) = manager(Fake::default()).await;
    let auth = RegistryAuth::new("user", "pass").with_server("registry.example.com");
    let e = m
        .pull(
            "127.0.0.1:5000/team/app:1",
            &PullOptions::default().with_auth(auth.clone()),
        )
        .await
        .expect_err("another registry");
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(!e.to_string().contains("pass"), "{e}");
    assert!(fake.calls().is_empty(), "engine called: {:?}", fake.calls());
    assert!(auth.is_for("registry.example.com"));
    assert!(RegistryAuth::new("u", "p")
        .with_server("https://index.docker.io/v1/")
        .is_for("docker.io"));
    assert!(RegistryAuth::new("u", "p").is_for("anything.example"));
}

#[tokio::test]
async fn what_the_engine_lacks_is_unsupported_before_any_engine_call() {
    let (m, fake) = manager(Fake::default()).await;
    let init = m.create(&ContainerConfig::new("img:1").init(true)).await;
    let limits = m
        .create(&ContainerConfig::new("img:1").memory(1 << 20))
        .await;
    let keep_id = m.create(&ContainerConfig::new("img:1").keep_id(true)).await;
    let tty = m.exec_stream("c1", &ExecSpec::new(["sh"]).tty(true)).await;
    let copy = m.copy_from("c1", "/x", std::path::Path::new("/tmp")).await;
    let stdin_open = m
        .create(&ContainerConfig::new("img:1").stdin_open(true))
        .await;
    let tty_run = m.create(&ContainerConfig::new("img:1").tty(true)).await;
    let attach = m
        .attach_stdin("c1", crate::StdinStream::new(tokio::io::empty()))
        .await;
    let resize = m.resize_tty("c1", 24, 80).await;
    for (what, r) in [
        ("attach_stdin", resize),
        ("attach_stdin", stdin_open.map(drop)),
        ("attach_stdin", tty_run.map(drop)),
        ("attach_stdin", attach.map(drop)),
        ("init", init.map(drop)),
        ("resource_limits", limits.map(drop)),
        ("userns_keep_id", keep_id.map(drop)),
        ("tty_exec", tty.map(drop)),
        ("copy_files", copy),
    ] {
        let e = r.expect_err(what);
        assert_eq!(e.kind(), ErrorKind::Unsupported, "{what}: {e}");
        assert!(e.message().contains(what), "{what}: {e}");
    }
    assert!(fake.calls().is_empty(), "engine called: {:?}", fake.calls());
}

#[tokio::test]
async fn errors_name_the_container_by_its_name() {
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        created_id: "0123abcd".into(),
        ..Fake::default()
    };
    let (m, _) = manager(fake).await;
    let id = m
        .create(&ContainerConfig::new("img:1").name("build"))
        .await
        .expect("create");
    let e = m.inspect(&id).await.expect_err("missing");
    assert_eq!(e.kind(), ErrorKind::NotFound);
    assert_eq!(e.operation(), Some(Operation::Inspect));
    assert_eq!(e.resource(), Some("build (0123abcd)"));
    assert!(
        e.to_string()
            .contains("at docker.inspect on build (0123abcd)"),
        "{e}"
    );
}

#[tokio::test]
async fn an_empty_id_from_the_engine_is_an_error() {
    let (m, _) = manager(Fake::default()).await;
    let e = m
        .create(&ContainerConfig::new("img:1").name("n"))
        .await
        .expect_err("empty id");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_removal_in_progress_is_waited_for() {
    let fake = Fake {
        remove: Mutex::new(VecDeque::from([Ok(Removal::InProgress)])),
        inspect: Mutex::new(VecDeque::from([
            Ok(info("c1", "n", ContainerState::Removing)),
            Ok(info("c1", "n", ContainerState::Removing)),
        ])),
        ..Fake::default()
    };
    let (m, fake) = manager(fake).await;
    m.remove("c1", true).await.expect("removed");
    assert_eq!(
        fake.calls(),
        vec!["remove", "inspect", "inspect", "inspect"],
        "polled until the engine said NotFound"
    );
}

#[tokio::test(start_paused = true)]
async fn a_wait_waits_for_a_real_exit() {
    // The engine answers at once (as it does for a container never started), the
    // container is still created, then runs, then exits 3: the wait returns 3, never 0.
    let fake = Fake {
        inspect: Mutex::new(VecDeque::from([
            Ok(info("c1", "n", ContainerState::Created)),
            Ok(info("c1", "n", ContainerState::Running)),
            Ok(info("c1", "n", ContainerState::Exited(3))),
        ])),
        ..Fake::default()
    };
    let (m, fake) = manager(fake).await;
    assert_eq!(m.wait("c1").await.expect("exited"), 3);
    let waits = fake.calls().iter().filter(|c| **c == "wait").count();
    assert_eq!(
        waits,
        3,
        "waited again until the real exit: {:?}",
        fake.calls()
    );

    let fake = Fake {
        inspect: Mutex::new(VecDeque::from([Ok(info("c1", "n", ContainerState::Dead))])),
        ..Fake::default()
    };
    let (m, _) = manager(fake).await;
    let e = m.wait("c1").await.expect_err("dead");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_hanging_call_times_out_and_idempotent_ones_are_retried() {
    let fake = Fake {
        hang_start: true,
        ..Fake::default()
    };
    let (m, fake) = manager(fake).await;
    let e = m.start("c1").await.expect_err("hangs");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.is_retryable(), "start is idempotent");
    assert_eq!(
        fake.calls(),
        vec!["start"],
        "start is not retried by the layer"
    );

    let flaky = Fake {
        inspect: Mutex::new(VecDeque::from([
            Err(Error::new(ErrorKind::Unavailable, "reset")),
            Err(Error::new(ErrorKind::Unavailable, "reset")),
            Ok(info("c1", "n", ContainerState::Running)),
        ])),
        ..Fake::default()
    };
    let (m, fake) = manager(flaky).await;
    let i = m.inspect("c1").await.expect("third time");
    assert_eq!(i.state, ContainerState::Running);
    assert_eq!(fake.calls(), vec!["inspect", "inspect", "inspect"]);
}

#[tokio::test]
async fn a_volume_without_our_owner_label_is_never_adopted() {
    let (m, _) = manager(Fake::default()).await;
    let e = m
        .create_volume(&VolumeConfig::new("cache"))
        .await
        .expect_err("foreign");
    assert_eq!(e.kind(), ErrorKind::Conflict, "{e}");

    let ours = Ownership::new("tester").expect("owner");
    let fake = Fake {
        volume_labels: ours.volume_labels(&VolumeConfig::new("cache")),
        ..Fake::default()
    };
    let (m, _) = manager(fake).await;
    m.create_volume(&VolumeConfig::new("cache"))
        .await
        .expect("ours");
}

#[tokio::test]
async fn an_exec_whose_engine_gives_no_exit_code_fails() {
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        ..Fake::default()
    };
    let (m, _) = manager(fake).await;
    let e = m
        .exec("c1", &ExecSpec::new(["true"]))
        .await
        .expect_err("no exit code");
    assert_eq!(e.kind(), ErrorKind::Internal, "{e}");
    assert_eq!(e.operation(), Some(Operation::Exec));
    assert!(e.message().contains("`true`"), "names the exec: {e}");
}

fn reset() -> Error {
    Error::new(ErrorKind::Unavailable, "read: connection reset by peer")
}

/// Go's own deadline text, as Docker and Podman pass it on.
fn engine_deadline() -> Error {
    Error::new(
        ErrorKind::Timeout,
        "Get \"https://registry.example/v2/\": context deadline exceeded",
    )
}

#[tokio::test(start_paused = true)]
async fn an_engine_reported_deadline_is_retried_like_the_client_deadline() {
    // An idempotent inspect whose engine says "context deadline exceeded": retried.
    let fake = Fake {
        inspect: Mutex::new(VecDeque::from([
            Err(engine_deadline()),
            Ok(info("c1", "n", ContainerState::Running)),
        ])),
        ..Fake::default()
    };
    let (m, fake) = manager(fake).await;
    let i = m.inspect("c1").await.expect("retried");
    assert_eq!(i.state, ContainerState::Running);
    assert_eq!(fake.calls(), vec!["inspect", "inspect"]);

    // A pull the engine cut off with its deadline: retried by the pull's policy.
    let (m, fake) = manager(Fake::default().failing("pull", [engine_deadline()])).await;
    let options = crate::types::PullOptions::default().with_retry(RetryPolicy {
        jitter: false,
        ..RetryPolicy::calls()
    });
    m.pull("img:1", &options).await.expect("retried pull");
    let pulls = fake.calls().iter().filter(|c| **c == "pull").count();
    assert_eq!(pulls, 2, "{:?}", fake.calls());

    // Given up on, it is a Timeout that says so, not one the caller retries again.
    let (m, _) = manager(Fake::default().failing("pull", (0..4).map(|_| engine_deadline()))).await;
    let e = m.pull("img:1", &options).await.expect_err("gave up");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retries_exhausted(), "{e}");
    assert!(!e.is_retryable(), "{e}");

    // The same text on an exec, which may have run: not retryable.
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        ..Fake::default()
    }
    .failing("exec_start", [engine_deadline()]);
    let (m, _) = manager(fake).await;
    let e = m
        .exec_stream("c1", &ExecSpec::new(["true"]))
        .await
        .map(drop)
        .expect_err("deadline");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn an_exec_that_may_have_run_is_not_retryable() {
    // exec create and start: the request reached the engine, the exec may exist or run.
    for call in ["exec_create", "exec_start"] {
        let fake = Fake {
            caps: Capabilities::oci_engine(),
            ..Fake::default()
        }
        .failing(call, [reset()]);
        let (m, _) = manager(fake).await;
        let e = m
            .exec_stream("c1", &ExecSpec::new(["true"]))
            .await
            .map(drop)
            .expect_err(call);
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{call}: {e}");
        assert!(!e.is_retryable(), "{call}: {e}");
        assert_eq!(e.operation(), Some(Operation::Exec), "{call}");
    }

    // A connection refused before anything was sent: nothing ran, try again.
    let refused = Error::new(ErrorKind::Unavailable, "connection refused").before_send();
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        ..Fake::default()
    }
    .failing("exec_create", [refused]);
    let (m, _) = manager(fake).await;
    let e = m
        .exec_stream("c1", &ExecSpec::new(["true"]))
        .await
        .map(drop)
        .expect_err("refused");
    assert!(e.is_retryable(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn a_copy_in_that_may_have_run_is_not_retryable() {
    // The archive may have been unpacked, partly or whole.
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        ..Fake::default()
    }
    .failing("copy_to", [reset()]);
    let (m, _) = manager(fake).await;
    let host = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let e = m.copy_to("c1", &host, "/tmp").await.expect_err("copy_to");
    assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
    assert!(!e.is_retryable(), "{e}");
}

#[tokio::test(start_paused = true)]
async fn only_a_named_create_is_retryable_after_a_reset_or_timeout() {
    // An unnamed create makes a new container on every try: neither a reset nor a
    // timeout is retryable. A named create is idempotent by its name: both are.
    for named in [true, false] {
        let config = if named {
            ContainerConfig::new("img:1").name("build")
        } else {
            ContainerConfig::new("img:1")
        };
        let (m, _) = manager(Fake::default().failing("create", [reset()])).await;
        let e = m.create(&config).await.expect_err("reset");
        assert_eq!(e.kind(), ErrorKind::Unavailable, "{e}");
        assert_eq!(e.is_retryable(), named, "named: {named}: {e}");

        let fake = Fake {
            hang: vec!["create"],
            ..Fake::default()
        };
        let (m, _) = manager(fake).await;
        let e = m.create(&config).await.expect_err("hangs");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert_eq!(e.is_retryable(), named, "named: {named}: {e}");
    }
}

#[tokio::test]
async fn wait_keeps_the_engines_exit_code_when_the_container_is_gone_after() {
    // The engine reports the exit, then the container is removed (auto-remove, another
    // caller) before the inspect that follows: the exit code is still the answer.
    let (m, _fake) = manager(Fake {
        wait: Some(5),
        ..Fake::default()
    })
    .await;
    assert_eq!(m.wait("c1").await.expect("the engine's exit code"), 5);
    let (m, _fake) = manager(Fake::default()).await;
    let e = m
        .wait("c1")
        .await
        .expect_err("no exit code and no container");
    assert_eq!(e.kind(), ErrorKind::NotFound);
}

#[tokio::test(start_paused = true)]
async fn a_stuck_pull_attempt_ends_at_its_deadline_and_is_retried() {
    // Both deadlines are on by default: a pull never waits forever.
    let defaults = crate::types::PullOptions::default();
    assert_eq!(defaults.attempt_timeout, Some(Duration::from_secs(30 * 60)));
    assert_eq!(defaults.stall_timeout, Some(Duration::from_secs(60)));
    assert_eq!(defaults.timeout, None);

    // An engine whose pull never answers (no stall rule can see it: Podman's case).
    let (m, fake) = manager(Fake {
        hang: vec!["pull"],
        ..Fake::default()
    })
    .await;
    let options = crate::types::PullOptions::default()
        .with_stall_timeout(None)
        .with_attempt_timeout(Some(Duration::from_secs(10)))
        .with_retry(RetryPolicy {
            max_attempts: 2,
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(1),
            max_elapsed: None,
            jitter: false,
        });
    let started = tokio::time::Instant::now();
    let e = tokio::time::timeout(Duration::from_secs(3600), m.pull("img:1", &options))
        .await
        .expect("the pull hung: no attempt deadline")
        .expect_err("stuck");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(e.retries_exhausted(), "{e}");
    assert_eq!(e.attempts(), 2, "{e}");
    assert_eq!(e.operation(), Some(Operation::Pull));
    // Two attempts of 10 s and the 1 s between them.
    assert_eq!(started.elapsed(), Duration::from_secs(21));
    let pulls = fake.calls().iter().filter(|c| **c == "pull").count();
    assert_eq!(pulls, 2, "{:?}", fake.calls());
}

#[tokio::test(start_paused = true)]
async fn a_copy_in_has_a_progress_deadline_not_a_total_one() {
    // A 64 KiB input: about 17 reads of 4 KiB.
    let src = tempfile::tempdir().expect("tmp");
    let input = src.path().join("input");
    std::fs::write(&input, vec![7u8; 64 << 10]).expect("write");
    let copy = |pace| {
        let input = input.clone();
        async move {
            let (m, _fake) = manager(Fake {
                caps: Capabilities::oci_engine(),
                copy_pace: Some(pace),
                ..Fake::default()
            })
            .await;
            m.copy_to("c1", &input, "/in").await
        }
    };
    // Steady, 500 ms a read: 8 s in all, far past the 1 s call timeout.
    let started = tokio::time::Instant::now();
    copy((Duration::from_millis(500), None))
        .await
        .expect("a steady copy is never cut off");
    assert!(started.elapsed() > Duration::from_secs(5));
    // Stalled after 8 KiB: a Timeout about a second after the last byte moved.
    let started = tokio::time::Instant::now();
    let e = copy((Duration::from_millis(100), Some(8 << 10)))
        .await
        .expect_err("stalled");
    assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
    assert!(!e.is_retryable(), "a copy-in may have run: {e}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// The bad-input table of `docs/security.md` is what the manager says: every row is
/// `InvalidInput` before any engine call, and the table is rendered from the errors
/// themselves. `CONTAINER_RS_BLESS=1 cargo test -p container-core bad_input_table`
/// rewrites the table after a deliberate change.
#[tokio::test]
async fn the_bad_input_table_in_docs_security_is_what_the_manager_says() {
    use crate::types::{Mount, PullOptions, RegistryAuth, Relabel, Ulimit};
    const IMG: &str = "127.0.0.1:5000/team/app:1";
    const SECRET: &str = "hunter2-bare-env-secret";
    let (m, fake) = manager(Fake::default()).await;
    let max = Duration::MAX;
    let with = |f: &dyn Fn(ContainerConfig) -> ContainerConfig| f(ContainerConfig::new(IMG));
    let mut tiny = ContainerConfig::new(IMG);
    tiny.resources.cpus = Some(1e-9);
    let mut bogus = ContainerConfig::new(IMG);
    bogus.resources.ulimits.push(Ulimit::new("bogus", 1, 1));
    let mut bare = ContainerConfig::new(IMG);
    bare.env.push(SECRET.to_string());
    let pull = |reference: &'static str, options: PullOptions| {
        let m = &m;
        async move { m.pull(reference, &options).await }
    };
    let rows: Vec<(&str, Result<()>)> = vec![
        (
            "a stop grace of `Duration::MAX` (any duration above a year: stop grace, exec \
             timeout and kill grace, call and connect timeouts, pull timeouts)",
            m.stop("c1", Some(max)).await,
        ),
        (
            "an exec timeout of `Duration::MAX`",
            m.exec_stream("c1", &ExecSpec::new(["true"]).timeout(max))
                .await
                .map(drop),
        ),
        (
            "a pull attempt timeout of `Duration::MAX`",
            pull(IMG, PullOptions::default().with_attempt_timeout(Some(max))).await,
        ),
        (
            "a label value of 5000 bytes",
            m.create(&with(&|c| c.label("big", "x".repeat(5000))))
                .await
                .map(drop),
        ),
        ("`cpus` of `1e-9`", m.create(&tiny).await.map(drop)),
        ("a ulimit named `bogus`", m.create(&bogus).await.map(drop)),
        (
            "the hostname `-`",
            m.create(&with(&|c| c.hostname("-"))).await.map(drop),
        ),
        (
            "the hostname `a..b`",
            m.create(&with(&|c| c.hostname("a..b"))).await.map(drop),
        ),
        (
            "an env entry without `=` (a bare secret)",
            m.create(&bare).await.map(drop),
        ),
        (
            "credentials for `registry.example.com`, the image on `127.0.0.1:5000`",
            pull(
                IMG,
                PullOptions::default().with_auth(
                    RegistryAuth::new("user", "hunter2-password")
                        .with_server("registry.example.com"),
                ),
            )
            .await,
        ),
        (
            "the image reference `user:hunter2-password@registry.example/x:1`",
            pull(
                "user:hunter2-password@registry.example/x:1",
                PullOptions::default(),
            )
            .await,
        ),
        (
            "a bind of `/etc`",
            m.create(&with(&|c| c.mount(Mount::bind("/etc", "/h"))))
                .await
                .map(drop),
        ),
        (
            "a bind of `/tmp/../proc` (resolved before the check)",
            m.create(&with(&|c| c.mount(Mount::bind("/tmp/../proc", "/h"))))
                .await
                .map(drop),
        ),
        (
            "a private relabel (`Z`) of `/root`",
            m.create(&with(&|c| {
                c.mount(Mount::bind("/root", "/r").relabel(Relabel::Private))
            }))
            .await
            .map(drop),
        ),
    ];
    let mut table = String::from("| input | error (`InvalidInput`) |\n|---|---|\n");
    for (input, r) in rows {
        let e = r.expect_err(input);
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{input}: {e}");
        let message = e.message();
        for secret in [SECRET, "hunter2-password"] {
            assert!(!message.contains(secret), "{input}: {message}");
        }
        table.push_str(&format!("| {input} | {} |\n", message.replace('|', "\\|")));
    }
    assert!(fake.calls().is_empty(), "engine called: {:?}", fake.calls());

    let doc = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/security.md");
    let text = std::fs::read_to_string(&doc).expect("docs/security.md");
    let (begin, end) = ("<!-- bad-input-table -->\n", "<!-- /bad-input-table -->");
    let (head, rest) = text.split_once(begin).expect("the table's opening marker");
    let (_, tail) = rest.split_once(end).expect("the table's closing marker");
    let expected = format!("{head}{begin}{table}{end}{tail}");
    if std::env::var_os("CONTAINER_RS_BLESS").is_some() {
        std::fs::write(&doc, expected).expect("write docs/security.md");
    } else {
        assert!(
            text == expected,
            "docs/security.md's bad-input table is not what the manager says; rerun with \
             CONTAINER_RS_BLESS=1 to rewrite it:\n{table}"
        );
    }
}

#[tokio::test]
async fn start_needs_no_inspect_for_a_container_this_manager_made() {
    let fake = Fake {
        caps: Capabilities::oci_engine(),
        created_id: "0123abcd".into(),
        ..Fake::default()
    };
    let (m, fake) = manager(fake).await;
    let id = m
        .create(&ContainerConfig::new("img:1").name("build"))
        .await
        .expect("create");
    m.start(&id).await.expect("start");
    assert_eq!(
        fake.calls(),
        ["create", "start"],
        "one engine call per step"
    );
    // One it did not make: looked up once, for its account.
    m.start("other").await.expect("start");
    assert_eq!(fake.calls()[2..], ["start", "inspect"]);
}
