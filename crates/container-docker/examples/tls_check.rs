//! Checks the TLS transport end to end against a real dockerd with mutual TLS:
//! `DOCKER_HOST=tcp://127.0.0.1:2376 DOCKER_TLS_VERIFY=1 DOCKER_CERT_PATH=<dir>`.
//! `cargo xtask conformance --backend docker` runs it against the listener that
//! `cargo xtask engines up` configures. Exits non-zero on any failure.

use container_core::{
    CleanupScope, ConnectOptions, ContainerConfig, ContainerManager, ErrorKind, ExecSpec,
};

const IMAGE: &str = "127.0.0.1:5000/container-rs/busybox:1";

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let host = std::env::var("DOCKER_HOST")?;
    if !host.starts_with("tcp://") || std::env::var_os("DOCKER_CERT_PATH").is_none() {
        return Err("set DOCKER_HOST=tcp://... and DOCKER_CERT_PATH".into());
    }
    let options = ConnectOptions::owned_by("container-rs-tls-check")?;
    let docker = container_docker::connect(options).await?;
    let info = docker.info().await?;
    println!(
        "tls: connected to {} {} at {}",
        info.engine, info.version, info.endpoint
    );

    docker.pull(IMAGE, &Default::default()).await?;
    let name = format!("crs-tls-check-{}", std::process::id());
    let id = docker
        .create(&ContainerConfig::new(IMAGE).name(&name).cmd(["sleep", "60"]))
        .await?;
    let outcome = async {
        docker.start(&id).await?;
        let out = docker
            .exec(&id, &ExecSpec::new(["echo", "-n", "over tls"]))
            .await?;
        if out.stdout != b"over tls" || out.exit_code != 0 {
            return Err(format!("unexpected exec result over TLS: {out:?}").into());
        }
        Ok::<(), Box<dyn std::error::Error>>(())
    }
    .await;
    docker.cleanup(CleanupScope::Session).await?;
    outcome?;
    println!("tls: create/start/exec/cleanup over mutual TLS ok");

    // The same port without TLS must be refused, not silently downgraded.
    let plain = host.replacen("tcp://", "http://", 1);
    match container_docker::connect(ConnectOptions::endpoint(plain.clone())).await {
        Ok(_) => return Err(format!("plain HTTP to the TLS port {plain} was accepted").into()),
        Err(e) => {
            println!("tls: plain HTTP refused as expected: {e}");
            if e.kind() == ErrorKind::Internal {
                return Err(format!("refusal should be a typed error, got {e}").into());
            }
        }
    }
    Ok(())
}
