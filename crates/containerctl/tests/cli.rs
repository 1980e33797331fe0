//! `containerctl` as a user runs it, against the real engine `CONTAINER_BACKEND` names
//! (`cargo xtask ci` runs this once per backend, after `cargo xtask engines up`):
//! exit codes, stream separation, Ctrl-C, a closed stdout, JSON, and a cleanup that
//! leaves other owners' and foreign objects alone. Every test has an owner of its own, so
//! tests running side by side never see each other's objects.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command as StdCommand, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use serde_json::Value;

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";

fn backend() -> String {
    std::env::var("CONTAINER_BACKEND")
        .expect("CONTAINER_BACKEND names the engine to test (cargo xtask ci sets it)")
}

/// An owner no other test (or run) uses.
fn owner(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "cli-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}

fn ctl(owner: &str) -> Command {
    let mut c = Command::cargo_bin("containerctl").expect("the containerctl binary");
    c.env("CONTAINER_BACKEND", backend())
        .args(["--owner", owner]);
    c
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The containers `owner` has, as `ps --output json` reports them.
fn ps(owner: &str) -> Vec<Value> {
    let out = ctl(owner)
        .args(["--output", "json", "ps"])
        .output()
        .expect("ps");
    assert!(out.status.success(), "ps: {}", text(&out.stderr));
    match serde_json::from_slice(&out.stdout).expect("ps --output json is JSON") {
        Value::Array(rows) => rows,
        other => panic!("ps --output json is not a list: {other}"),
    }
}

fn names(rows: &[Value]) -> Vec<String> {
    rows.iter()
        .filter_map(|r| r["name"].as_str().map(str::to_string))
        .collect()
}

/// Removes what a test left, whatever happened.
struct Cleanup(String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = ctl(&self.0).arg("cleanup").output();
    }
}

#[test]
fn run_streams_apart_passes_the_exit_code_and_leaves_nothing() {
    let o = owner("run");
    let _c = Cleanup(o.clone());
    let out = ctl(&o)
        .args([
            "run",
            IMAGE,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 3",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "out\n");
    assert!(text(&out.stderr).contains("err\n"), "{}", text(&out.stderr));
    assert!(
        !text(&out.stderr).contains("out"),
        "stdout leaked into stderr"
    );
    assert!(ps(&o).is_empty(), "run left {:?}", names(&ps(&o)));

    // --keep leaves it, stopped with its code.
    let out = ctl(&o)
        .args([
            "run",
            "--keep",
            "--name",
            &format!("{o}-kept"),
            IMAGE,
            "sh",
            "-c",
            "exit 4",
        ])
        .output()
        .expect("run --keep");
    assert_eq!(out.status.code(), Some(4));
    let rows = ps(&o);
    assert_eq!(names(&rows), [format!("{o}-kept")]);
    assert_eq!(rows[0]["state"], "exited");
    assert_eq!(rows[0]["exit_code"], 4);
}

#[test]
fn run_i_passes_stdin_as_it_comes_and_t_gives_a_terminal() {
    let o = owner("run-i");
    // -i: any bytes (ctrl-p ctrl-q and EOT among them), then EOF.
    let input: Vec<u8> = b"a\x10\x11\x04z\n"
        .iter()
        .copied()
        .cycle()
        .take(600)
        .collect();
    let out = ctl(&o)
        .args(["run", "-i", "--rm", IMAGE, "sh", "-c", "wc -c; exit 4"])
        .write_stdin(input)
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run -i");
    assert_eq!(out.status.code(), Some(4), "stderr: {}", text(&out.stderr));
    assert_eq!(text(&out.stdout).trim(), "600");
    assert!(ps(&o).is_empty(), "run -i left {:?}", names(&ps(&o)));

    // -i -t from a pipe: the command has a terminal (which echoes what it reads).
    let out = ctl(&o)
        .args(["run", "-i", "-t", IMAGE, "sh"])
        .write_stdin("test -t 0 && echo tty-$((6*7))\nexit 3\n")
        .timeout(Duration::from_secs(60))
        .output()
        .expect("run -it");
    assert_eq!(out.status.code(), Some(3), "stderr: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("tty-42\r\n"),
        "the terminal's output: {:?}",
        text(&out.stdout)
    );
    assert!(
        text(&out.stderr).contains("stdin is not a terminal"),
        "{}",
        text(&out.stderr)
    );
    assert!(ps(&o).is_empty(), "run -it left {:?}", names(&ps(&o)));
}

#[test]
fn our_own_errors_exit_125_and_uninvocable_commands_126_127() {
    let o = owner("codes");
    let _c = Cleanup(o.clone());
    let out = ctl(&o)
        .args(["run", "Not A Reference!", "true"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("invalid input"),
        "{}",
        text(&out.stderr)
    );

    let out = ctl(&o)
        .args(["run", "--bogus-flag", IMAGE])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(125), "a usage error is ours");

    let out = ctl(&o)
        .args(["run", IMAGE, "no-such-command"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(127), "{}", text(&out.stderr));
    let out = ctl(&o).args(["run", IMAGE, "/etc"]).output().expect("run");
    assert_eq!(out.status.code(), Some(126), "{}", text(&out.stderr));
    assert!(ps(&o).is_empty(), "failed runs left {:?}", names(&ps(&o)));

    let out = Command::cargo_bin("containerctl")
        .expect("bin")
        .args([
            "--backend",
            &backend(),
            "--endpoint",
            "unix:///nonexistent.sock",
            "ps",
        ])
        .output()
        .expect("ps");
    assert_eq!(out.status.code(), Some(125));
    let err = text(&out.stderr);
    assert!(
        err.contains("unavailable") && err.contains("/nonexistent.sock"),
        "{err}"
    );
    assert!(err.contains("hint:"), "{err}");
}

#[test]
fn detached_containers_exec_with_codes_stdin_and_timeouts() {
    let o = owner("exec");
    let _c = Cleanup(o.clone());
    let name = format!("{o}-box");
    let out = ctl(&o)
        .args([
            "run", "-d", "--init", "--name", &name, IMAGE, "sleep", "600",
        ])
        .output()
        .expect("run -d");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    assert!(!id.is_empty());
    let rows = ps(&o);
    assert_eq!(names(&rows), std::slice::from_ref(&name));
    assert_eq!(rows[0]["state"], "running");
    assert_eq!(rows[0]["id"], id.as_str());

    let out = ctl(&o)
        .args([
            "exec",
            &name,
            "--",
            "sh",
            "-c",
            "echo out; echo err >&2; exit 7",
        ])
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(7));
    assert_eq!(text(&out.stdout), "out\n");
    assert_eq!(text(&out.stderr), "err\n");

    let out = ctl(&o)
        .args(["exec", "-i", &name, "--", "tr", "a-z", "A-Z"])
        .write_stdin("hello\n")
        .output()
        .expect("exec -i");
    assert_eq!(text(&out.stdout), "HELLO\n");

    // `exec -i` streams: the answer to the first line comes while stdin is still open.
    let bin = assert_cmd::cargo::cargo_bin("containerctl");
    let mut child = StdCommand::new(bin)
        .env("CONTAINER_BACKEND", backend())
        .args(["--owner", &o, "exec", "-i", &name, "--", "sh", "-c"])
        .arg("while read -r l; do echo \"got $l\"; done")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn exec -i");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(b"first\n").expect("write");
    let (lines, got) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = lines.send(line);
        }
    });
    let first = got.recv_timeout(Duration::from_secs(30));
    assert_eq!(
        first.ok().and_then(Result::ok).as_deref(),
        Some("got first"),
        "exec -i answered the first line while stdin was open"
    );
    drop(input);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 0);

    let started = Instant::now();
    let out = ctl(&o)
        .args(["exec", "--timeout", "1s", &name, "--", "sleep", "100"])
        .output()
        .expect("exec --timeout");
    assert_eq!(out.status.code(), Some(124), "{}", text(&out.stderr));
    assert!(started.elapsed() < Duration::from_secs(20));

    let out = ctl(&o)
        .args(["exec", &name, "no-such-command"])
        .output()
        .expect("exec");
    assert_eq!(out.status.code(), Some(127));

    // Detached again with the same config: the same container (idempotent by name).
    let again = ctl(&o)
        .args([
            "run", "-d", "--init", "--name", &name, IMAGE, "sleep", "600",
        ])
        .output()
        .expect("run -d again");
    assert_eq!(text(&again.stdout).trim(), id);
    // Attached under its name: refused, and the container is left alone.
    let out = ctl(&o)
        .args(["run", "--name", &name, IMAGE, "true"])
        .output()
        .expect("run attached");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("already exists"),
        "{}",
        text(&out.stderr)
    );

    // Ctrl-C and a closed stdout end the exec's processes, never the container.
    for (how, want) in [("sigint", 130), ("pipe", 141)] {
        let bin = assert_cmd::cargo::cargo_bin("containerctl");
        let mut child = StdCommand::new(bin)
            .env("CONTAINER_BACKEND", backend())
            .args(["--owner", &o, "exec", &name, "--", "sh", "-c"])
            .arg(format!(
                "echo ready; while true; do echo {how}-loop; sleep 0.05; done"
            ))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn exec");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("read");
        assert_eq!(line, "ready\n");
        if how == "sigint" {
            interrupt(&child);
        } else {
            drop(out);
        }
        assert_eq!(
            wait_exit(&mut child, Duration::from_secs(30)),
            want,
            "{how}"
        );
        let left = ctl(&o)
            .args(["exec", &name, "--", "sh", "-c"])
            .arg(format!("ps | grep {how}-loo[p]"))
            .output()
            .expect("ps in the container");
        assert_eq!(
            left.status.code(),
            Some(1),
            "{how}: still running: {}",
            text(&left.stdout)
        );
    }

    // The container survived all of it.
    assert_eq!(ps(&o)[0]["state"], "running");
    ctl(&o).args(["rm", "-f", &name]).assert().success();
    assert!(ps(&o).is_empty());
}

/// Spawns `containerctl run` and waits until the command has printed `ready`.
fn spawn_ready(
    owner: &str,
    extra: &[&str],
    script: &str,
) -> (std::process::Child, BufReader<std::process::ChildStdout>) {
    let bin = assert_cmd::cargo::cargo_bin("containerctl");
    let mut child = StdCommand::new(bin)
        .env("CONTAINER_BACKEND", backend())
        .args(["--owner", owner, "run"])
        .args(extra)
        .args([IMAGE, "sh", "-c", script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn containerctl");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read");
    assert_eq!(line, "ready\n");
    (child, stdout)
}

fn wait_exit(child: &mut std::process::Child, limit: Duration) -> i32 {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return status.code().expect("an exit code, not a signal");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("containerctl still runs after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn interrupt(child: &std::process::Child) {
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT).expect("SIGINT");
}

#[test]
fn ctrl_c_stops_and_removes_the_container_and_a_second_kills_at_once() {
    let o = owner("sigint");
    let _c = Cleanup(o.clone());
    // sh as PID 1 ignores SIGTERM: the stop takes the whole grace, then SIGKILL.
    let (mut child, _out) = spawn_ready(&o, &["--stop-timeout", "2"], "echo ready; sleep 600");
    interrupt(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 130);
    assert!(ps(&o).is_empty(), "Ctrl-C left {:?}", names(&ps(&o)));

    // A long grace, cut short by a second Ctrl-C.
    let (mut child, _out) = spawn_ready(&o, &["--stop-timeout", "60"], "echo ready; sleep 600");
    let started = Instant::now();
    interrupt(&child);
    std::thread::sleep(Duration::from_millis(500));
    interrupt(&child);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 130);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the second Ctrl-C did not kill at once: {:?}",
        started.elapsed()
    );
    assert!(ps(&o).is_empty(), "Ctrl-C left {:?}", names(&ps(&o)));
}

#[test]
fn a_closed_stdout_ends_the_run_and_removes_the_container() {
    let o = owner("pipe");
    let _c = Cleanup(o.clone());
    let (mut child, out) = spawn_ready(
        &o,
        &["--stop-timeout", "1"],
        "echo ready; while true; do echo more; sleep 0.05; done",
    );
    drop(out);
    assert_eq!(wait_exit(&mut child, Duration::from_secs(30)), 141);
    let mut err = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err);
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        ps(&o).is_empty(),
        "a closed stdout left {:?}",
        names(&ps(&o))
    );
}

/// The engine's own CLI, talking to the engine under test (as the conformance suite's
/// `EngineCli`): `docker`, `podman --remote`, or `ctr` in the backend's namespace.
fn engine_cli() -> StdCommand {
    let env_or = |k: &str, d: &str| {
        std::env::var(k)
            .ok()
            .filter(|v| !v.is_empty())
            .unwrap_or_else(|| d.into())
    };
    match backend().as_str() {
        "docker" => StdCommand::new("docker"),
        "podman" => {
            let mut c = StdCommand::new("podman");
            c.args([
                "--remote",
                "--url",
                &env_or("CONTAINER_HOST", "unix:///run/podman/podman.sock"),
            ]);
            c
        }
        "containerd" => {
            let mut c = StdCommand::new("ctr");
            c.args(["-n", &env_or("CONTAINERD_NAMESPACE", "container-rs")]);
            c
        }
        other => panic!("unknown backend {other}"),
    }
}

fn is_containerd() -> bool {
    backend() == "containerd"
}

/// A container made with the engine's own tool, without our labels.
fn foreign_container(name: &str) -> String {
    let mut cli = engine_cli();
    if is_containerd() {
        cli.args(["run", "-d", IMAGE, name, "sleep", "600"]);
    } else {
        cli.args([
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            name,
            IMAGE,
            "sleep",
            "600",
        ]);
    }
    let out = cli.output().expect("the engine's CLI");
    assert!(
        out.status.success(),
        "foreign container: {}",
        text(&out.stderr)
    );
    name.to_string()
}

fn remove_foreign(name: &str) {
    if is_containerd() {
        let _ = engine_cli()
            .args(["task", "kill", "-s", "SIGKILL", name])
            .output();
        std::thread::sleep(Duration::from_millis(500));
        let _ = engine_cli().args(["task", "rm", "-f", name]).output();
        let _ = engine_cli().args(["container", "rm", name]).output();
    } else {
        let _ = engine_cli().args(["rm", "-f", name]).output();
    }
}

fn foreign_exists(name: &str) -> bool {
    let mut cli = engine_cli();
    if is_containerd() {
        cli.args(["container", "info", name]);
    } else {
        cli.args(["inspect", name]);
    }
    cli.output().expect("the engine's CLI").status.success()
}

#[test]
fn cleanup_needs_a_scope_and_takes_only_its_owners_objects() {
    let mine = owner("cleanup-mine");
    let theirs = owner("cleanup-theirs");
    let _c1 = Cleanup(mine.clone());
    let _c2 = Cleanup(theirs.clone());

    let out = Command::cargo_bin("containerctl")
        .expect("bin")
        .env("CONTAINER_BACKEND", backend())
        .arg("cleanup")
        .output()
        .expect("cleanup");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("--owner"),
        "{}",
        text(&out.stderr)
    );

    for (o, n) in [(&mine, "a"), (&theirs, "b")] {
        ctl(o)
            .args([
                "run",
                "-d",
                "--name",
                &format!("{o}-{n}"),
                IMAGE,
                "sleep",
                "600",
            ])
            .assert()
            .success();
    }
    ctl(&mine)
        .args(["volume", "create", &format!("{mine}-vol")])
        .assert()
        .success();
    let foreign = foreign_container(&format!("{mine}-foreign"));

    // A dry run says what would go and removes nothing.
    let out = ctl(&mine)
        .args(["cleanup", "--dry-run"])
        .output()
        .expect("dry run");
    assert!(out.status.success());
    let said = text(&out.stdout);
    assert!(
        said.contains(&format!("would remove container {mine}-a")),
        "{said}"
    );
    assert!(
        said.contains(&format!("would remove volume {mine}-vol")),
        "{said}"
    );
    assert!(
        !said.contains(&theirs) && !said.contains("foreign"),
        "{said}"
    );
    assert_eq!(names(&ps(&mine)), [format!("{mine}-a")]);

    // --older-than spares what is younger.
    let out = ctl(&mine)
        .args(["cleanup", "--older-than", "1h"])
        .output()
        .expect("cleanup");
    assert!(out.status.success());
    assert_eq!(names(&ps(&mine)), [format!("{mine}-a")]);

    let out = ctl(&mine)
        .args(["--output", "json", "cleanup"])
        .output()
        .expect("cleanup");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["failed"], 0);
    let removed: Vec<&str> = report["objects"]
        .as_array()
        .expect("objects")
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert!(
        removed.contains(&format!("{mine}-a").as_str()),
        "{removed:?}"
    );
    assert!(
        removed.contains(&format!("{mine}-vol").as_str()),
        "{removed:?}"
    );
    assert!(ps(&mine).is_empty());
    // Another owner's container and the foreign one are still there.
    assert_eq!(names(&ps(&theirs)), [format!("{theirs}-b")]);
    assert!(
        foreign_exists(&foreign),
        "cleanup removed a foreign container"
    );
    // rm refuses the foreign container too.
    let out = ctl(&mine)
        .args(["rm", "-f", &foreign])
        .output()
        .expect("rm");
    assert_eq!(out.status.code(), Some(125));
    assert!(foreign_exists(&foreign));
    remove_foreign(&foreign);
}

#[test]
fn volumes_and_info_as_json() {
    let o = owner("volume");
    let _c = Cleanup(o.clone());
    let name = format!("{o}-data");
    ctl(&o).args(["volume", "create", &name]).assert().success();
    let out = ctl(&o)
        .args(["--output", "json", "volume", "ls"])
        .output()
        .expect("volume ls");
    let rows: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(rows[0]["name"], name.as_str());
    assert_eq!(rows[0]["owner"], o.as_str());
    let out = ctl(&o)
        .args(["--output", "json", "volume", "inspect", &name])
        .output()
        .expect("inspect");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["name"], name.as_str());
    ctl(&o).args(["volume", "rm", &name]).assert().success();

    // Another owner's volume of the same name is a conflict, never adopted.
    let other = owner("volume-other");
    let _c2 = Cleanup(other.clone());
    let shared = format!("{o}-shared");
    ctl(&other)
        .args(["volume", "create", &shared])
        .assert()
        .success();
    let out = ctl(&o)
        .args(["volume", "create", &shared])
        .output()
        .expect("create");
    assert_eq!(out.status.code(), Some(125));
    assert!(
        text(&out.stderr).contains("conflict"),
        "{}",
        text(&out.stderr)
    );
    let out = ctl(&other)
        .args(["--output", "json", "volume", "inspect", &shared])
        .output()
        .expect("inspect");
    let v: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(v["owner"], other.as_str(), "the volume changed hands");

    let out = ctl(&o)
        .args(["--output", "json", "info"])
        .output()
        .expect("info");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let info: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(info["backend"], backend().as_str());
    assert!(info["version"].as_str().is_some_and(|v| !v.is_empty()));
    assert!(info["capabilities"].is_object());
}

#[test]
fn logs_stop_and_pull_as_a_user_sees_them() {
    let o = owner("logs");
    let _c = Cleanup(o.clone());
    let name = format!("{o}-talker");
    ctl(&o)
        .args(["run", "-d", "--name", &name, IMAGE, "sh", "-c"])
        .arg("echo hello; echo oops >&2; exec sleep 600")
        .assert()
        .success();
    // The output is there once the process has written it.
    let deadline = Instant::now() + Duration::from_secs(10);
    let out = loop {
        let out = ctl(&o).args(["logs", &name]).output().expect("logs");
        if text(&out.stdout).contains("hello") || Instant::now() > deadline {
            break out;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hello\n");
    assert_eq!(text(&out.stderr), "oops\n");

    ctl(&o).args(["stop", "-t", "1", &name]).assert().success();
    let rows = ps(&o);
    assert_eq!(rows[0]["state"], "exited", "{rows:?}");
    // Following a stopped container's logs ends by itself.
    let started = Instant::now();
    let out = ctl(&o)
        .args(["logs", "-f", &name])
        .output()
        .expect("logs -f");
    assert_eq!(text(&out.stdout), "hello\n");
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "logs -f of a stopped container hung"
    );

    // Not a terminal here: one plain line per layer phase, and a last line.
    let out = ctl(&o).args(["pull", IMAGE]).output().expect("pull");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let said = text(&out.stderr);
    assert!(said.contains(IMAGE), "{said}");
    assert!(
        !said.contains('\u{1b}'),
        "terminal escapes without a terminal: {said:?}"
    );
}

#[test]
fn a_detached_container_keeps_writing_after_containerctl_exits() {
    let o = owner("detached-output");
    let _c = Cleanup(o.clone());
    let name = format!("{o}-chatty");
    // Far more than a pipe holds: with nobody copying the output, the process would block.
    let script =
        "i=0; while [ $i -lt 20000 ]; do echo line-$i-of-a-chatty-container-xxxxxxxxxxxxxxxx; \
                  i=$((i+1)); done; touch /tmp/wrote; exec sleep 600";
    let out = ctl(&o)
        .args(["run", "-d", "--name", &name, IMAGE, "sh", "-c", script])
        .output()
        .expect("run -d");
    assert!(out.status.success(), "{}", text(&out.stderr));
    let id = text(&out.stdout).trim().to_string();
    // Asked through the engine's own CLI: no program of this library runs meanwhile.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut n = 0;
    loop {
        n += 1;
        let mut check = engine_cli();
        if is_containerd() {
            check.args(["tasks", "exec", "--exec-id", &format!("check-{n}"), &id]);
        } else {
            check.args(["exec", &name]);
        }
        let done = check
            .args(["test", "-f", "/tmp/wrote"])
            .output()
            .expect("the engine's CLI")
            .status
            .success();
        if done {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the container's output stalled once containerctl exited"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let out = ctl(&o).args(["logs", &name]).output().expect("logs");
    let logged = text(&out.stdout);
    assert_eq!(logged.lines().count(), 20000);
    assert!(logged.ends_with("line-19999-of-a-chatty-container-xxxxxxxxxxxxxxxx\n"));
    ctl(&o).args(["rm", "-f", &name]).assert().success();
}
