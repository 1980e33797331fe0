//! Registry credentials from Docker's `config.json`, against a registry that demands them:
//! a second local registry (Debian's `docker-registry`, htpasswd auth, loopback only) over
//! the storage of the one `cargo xtask engines up` starts. Run by `cargo xtask ci`.

use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use container_containerd::Containerd;
use container_core::raw::Progress;
use container_core::{ErrorKind, ImageRef, RegistryAuth};

const ADDR: &str = "127.0.0.1:5001";
const IMAGE: &str = "127.0.0.1:5001/container-rs/busybox:1";
const NAMESPACE: &str = "container-rs-auth-test";
const STORAGE: &str = "/var/lib/container-rs-engines/registry/storage";
const USER: &str = "container-rs";
/// A test fixture, not a secret: the registry listens on loopback for this test only.
const PASSWORD: &str = "registry-test-password";
/// bcrypt (cost 4) of `PASSWORD`, as htpasswd files hold it.
const PASSWORD_HASH: &str = "$2b$04$ggS97v5vWmVUwWlOqDCkc.ENt8Ti32bU6O/OSSLNRNzRdbAAcsAqO";

/// The registry process; killed when dropped.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(dir: &std::path::Path) -> Registry {
    let htpasswd = dir.join("htpasswd");
    std::fs::write(&htpasswd, format!("{USER}:{PASSWORD_HASH}\n")).expect("htpasswd");
    let config = dir.join("config.yml");
    std::fs::write(
        &config,
        format!(
            "version: 0.1\nlog:\n  level: warn\n  accesslog:\n    disabled: true\n\
             storage:\n  filesystem:\n    rootdirectory: \"{STORAGE}\"\n\
             http:\n  addr: \"{ADDR}\"\n  secret: container-rs-auth-test\n\
             auth:\n  htpasswd:\n    realm: container-rs-test\n    path: \"{}\"\n",
            htpasswd.display()
        ),
    )
    .expect("registry config");
    let child = Command::new("docker-registry")
        .arg("serve")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("docker-registry (cargo xtask engines up installs it)");
    let registry = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(ADDR).is_err() {
        assert!(Instant::now() < deadline, "the auth registry did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    registry
}

fn docker_config(dir: &std::path::Path, auth: Option<&str>) {
    let mut file = std::fs::File::create(dir.join("config.json")).expect("config.json");
    let body = match auth {
        Some(auth) => format!(r#"{{"auths":{{"{ADDR}":{{"auth":"{auth}"}}}}}}"#),
        None => "{}".to_string(),
    };
    file.write_all(body.as_bytes()).expect("write config.json");
}

#[tokio::test]
async fn pulls_with_credentials_from_docker_config_json() {
    let work = tempfile::tempdir().expect("tmp");
    let _registry = start_registry(work.path());
    let config_dir = work.path().join("docker");
    std::fs::create_dir(&config_dir).expect("docker config dir");
    // The only test in this binary: nothing else reads the environment meanwhile.
    std::env::set_var("DOCKER_CONFIG", &config_dir);

    let c = Containerd::connect(None, Some(NAMESPACE), Duration::from_secs(5))
        .await
        .expect("containerd answers (cargo xtask engines up)");
    let image = ImageRef::parse(IMAGE).expect("ref");
    let _ = c.remove_image(&image, true).await;
    let none = |_: &container_core::PullProgress| {};
    let none = Progress::new(&none);

    // No credentials anywhere: the registry refuses.
    docker_config(&config_dir, None);
    let e = c
        .pull(&image, None, none)
        .await
        .expect_err("anonymous pull");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
    assert!(!e.is_retryable());

    // Wrong credentials in config.json: refused too (they are really sent).
    let wrong = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:nope"));
    docker_config(&config_dir, Some(&wrong));
    let e = c
        .pull(&image, None, none)
        .await
        .expect_err("wrong password");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");

    // The right ones: the pull goes through.
    let right = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
    docker_config(&config_dir, Some(&right));
    let digest = c
        .pull(&image, None, none)
        .await
        .expect("pull with config.json");
    assert!(digest.is_some_and(|d| d.starts_with("sha256:")));
    assert!(c.image_exists(&image).await.expect("exists"));
    c.remove_image(&image, true).await.expect("remove");

    // Explicit RegistryAuth wins over config.json.
    let explicit = RegistryAuth::new(USER, "nope");
    let e = c
        .pull(&image, Some(&explicit), none)
        .await
        .expect_err("explicit wrong password");
    assert_eq!(e.kind(), ErrorKind::Unauthenticated, "{e}");
}
