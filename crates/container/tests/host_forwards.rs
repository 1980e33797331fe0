//! The caller's ssh agent and proxy variables reach the container (issue 15, item 3),
//! on every backend compiled in: a real `ssh-agent` holding a fresh key, listed by
//! `ssh-add -l` inside the Debian build image through the forwarded socket; the proxy
//! variables of this process in the container's env, the config's own winning.
//!
//! Its own test binary: it sets `SSH_AUTH_SOCK` and proxy variables for the process
//! (`no_proxy` keeps the loopback registry direct for the containerd backend's puller).
//! Needs the engines and images of `cargo xtask engines up`.
#![cfg(all(feature = "docker", feature = "podman", feature = "containerd"))]

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use container::{
    BackendKind, CleanupScope, ConnectOptions, ContainerConfig, ExecSpec, PullOptions,
};

const IMAGE: &str = "127.0.0.1:5000/container-rs/debian:12";

/// An `ssh-agent` in the foreground, killed when dropped.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ssh_agent_and_proxies_reach_the_container() {
    let dir = tempfile::tempdir().expect("tmp");
    let socket = dir.path().join("agent.sock");
    let _agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&socket)
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("ssh-agent (openssh-client)"),
    );
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no agent socket"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let key = dir.path().join("key");
    let keygen = Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            "container-rs-forward-test",
            "-f",
        ])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(keygen.success());
    let add = Command::new("ssh-add")
        .arg(&key)
        .env("SSH_AUTH_SOCK", &socket)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("ssh-add");
    assert!(add.success());
    std::env::set_var("SSH_AUTH_SOCK", &socket);
    std::env::set_var("http_proxy", "http://127.0.0.1:9");
    std::env::set_var("no_proxy", "127.0.0.1,localhost");
    std::env::set_var("NO_PROXY", "127.0.0.1,localhost");
    std::env::set_var("CONTAINERD_NAMESPACE", "container-rs-forward-test");

    for kind in [
        BackendKind::Docker,
        BackendKind::Podman,
        BackendKind::Containerd,
    ] {
        let options = ConnectOptions::owned_by("container-rs-forward-test").expect("owner");
        let m = container::connect_with(kind, options)
            .await
            .unwrap_or_else(|e| panic!("{kind}: engine up? (cargo xtask engines up): {e}"));
        m.pull(IMAGE, &PullOptions::default())
            .await
            .unwrap_or_else(|e| panic!("{kind}: pull: {e}"));
        let config = ContainerConfig::new(IMAGE)
            .name(format!("crs-forward-{kind}"))
            .cmd(["sleep", "infinity"])
            .env("NO_PROXY", "config.example")
            .ssh_agent(true)
            .host_proxies(true);
        let id = m.create(&config).await.expect("create");
        m.start(&id).await.expect("start");
        let out = m
            .exec(&id, &ExecSpec::new(["ssh-add", "-l"]))
            .await
            .expect("exec");
        assert_eq!(out.exit_code, 0, "{kind}: ssh-add -l: {out:?}");
        assert!(
            out.stdout_lossy().contains("container-rs-forward-test"),
            "{kind}: the agent's key is listed: {out:?}"
        );
        let env = m
            .exec(
                &id,
                &ExecSpec::shell("echo \"$http_proxy|$no_proxy|$NO_PROXY|$SSH_AUTH_SOCK\""),
            )
            .await
            .expect("exec");
        assert_eq!(
            env.stdout_lossy(),
            format!(
                "http://127.0.0.1:9|127.0.0.1,localhost|config.example|{}\n",
                container::SSH_AGENT_TARGET
            ),
            "{kind}: the proxies, the config's own NO_PROXY winning"
        );
        m.cleanup(CleanupScope::Session).await.expect("cleanup");
    }
}
