//! Pulling an image into containerd without any Go tool: the manifest and blobs come
//! from the registry through oci-client, go into the content store with the labels
//! containerd's garbage collector follows, the layers are unpacked through the Diff and
//! Snapshots services, and the image record is created or updated; all under a lease, so
//! a crash midway leaves nothing that is not collected (shared/notes/containerd.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use container_core::raw::Progress;
use container_core::{Error, ErrorKind, ImageRef, LayerPhase, PullProgress, RegistryAuth, Result};
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::{
    AddResourceRequest, ApplyRequest, CreateImageRequest, CreateRequest, DeleteRequest, Image,
    Info, InfoRequest, ListResourcesRequest, Resource, StatusRequest, UpdateImageRequest,
    UpdateRequest, WriteAction, WriteContentRequest,
};
use containerd_client::types::Descriptor;
use futures::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE,
    OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::Reference;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::atomic::Ordering;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use crate::client::Containerd;
use crate::error::{map_registry, map_status};

/// Layers downloaded at once (`ctr`'s default, and the Docker engine's).
const CONCURRENT_DOWNLOADS: usize = 3;

/// The snapshotter images are unpacked into.
pub(crate) const SNAPSHOTTER: &str = "overlayfs";
/// How much of a blob goes to the content store per message.
const WRITE_CHUNK: usize = 1 << 20;
/// How long a pull's lease keeps what it made if the pull dies.
const LEASE_EXPIRY: Duration = Duration::from_secs(3600);

/// One blob of the image: what the manifest says of it.
#[derive(Debug, Clone)]
struct Blob {
    media_type: String,
    digest: String,
    size: i64,
}

/// The layer media types this puller unpacks.
const LAYER_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.oci.image.layer.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
];
/// The image config media types.
const CONFIG_MEDIA_TYPES: &[&str] = &[
    "application/vnd.oci.image.config.v1+json",
    "application/vnd.docker.container.image.v1+json",
];
/// The largest manifest taken (containerd's own limit), and the largest image config.
const MAX_MANIFEST: usize = 4 << 20;
const MAX_CONFIG: i64 = 8 << 20;

impl Blob {
    fn from_json(v: &Value) -> Result<Blob> {
        let field = |k: &str| {
            v[k].as_str()
                .map(str::to_string)
                .ok_or_else(|| bad_manifest(&format!("a descriptor has no {k}")))
        };
        let size = v["size"]
            .as_i64()
            .filter(|s| *s >= 0)
            .ok_or_else(|| bad_manifest("a descriptor has no size, or a negative one"))?;
        Ok(Blob {
            media_type: field("mediaType")?,
            digest: field("digest")?,
            size,
        })
    }

    /// A layer of a media type this puller can unpack (an OCI or Docker tar, plain, gzip
    /// or zstd).
    fn layer(v: &Value) -> Result<Blob> {
        let blob = Blob::from_json(v)?;
        if !LAYER_MEDIA_TYPES.contains(&blob.media_type.as_str()) {
            return Err(bad_manifest(&format!(
                "a layer has the media type {:?}, not an image layer's",
                blob.media_type
            )));
        }
        Ok(blob)
    }

    /// The image config, of an image config's media type and at most [`MAX_CONFIG`].
    fn config(v: &Value) -> Result<Blob> {
        let blob = Blob::from_json(v)?;
        if !CONFIG_MEDIA_TYPES.contains(&blob.media_type.as_str()) {
            return Err(bad_manifest(&format!(
                "the config has the media type {:?}, not an image config's",
                blob.media_type
            )));
        }
        if blob.size > MAX_CONFIG {
            return Err(bad_manifest(&format!(
                "the config is {} bytes, more than {MAX_CONFIG}",
                blob.size
            )));
        }
        Ok(blob)
    }

    fn descriptor(&self) -> Descriptor {
        Descriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            annotations: HashMap::new(),
        }
    }

    fn oci(&self) -> oci_client::manifest::OciDescriptor {
        oci_client::manifest::OciDescriptor {
            media_type: self.media_type.clone(),
            digest: self.digest.clone(),
            size: self.size,
            urls: None,
            annotations: None,
            artifact_type: None,
        }
    }

    /// The short id progress events use.
    fn id(&self) -> String {
        let hex = self.digest.trim_start_matches("sha256:");
        hex[..hex.len().min(12)].to_string()
    }
}

fn bad_manifest(what: &str) -> Error {
    Error::new(
        ErrorKind::Internal,
        format!("the registry's manifest is unusable: {what}"),
    )
}

/// Plain HTTP only for a registry on this host (as Docker allows 127.0.0.0/8).
fn protocol_for(registry: &str) -> ClientProtocol {
    let host = registry.rsplit_once(':').map_or(registry, |(h, _)| h);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = host == "localhost" || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if loopback {
        ClientProtocol::HttpsExcept(vec![registry.to_string()])
    } else {
        ClientProtocol::Https
    }
}

/// The OCI architecture name of this host.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// `sha256:<hex>` of `data`.
fn sha256(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

/// The chain ids of layers with these diff ids (the OCI image spec's ChainID).
pub(crate) fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut chain: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match chain.last() {
            None => d.clone(),
            Some(parent) => sha256(format!("{parent} {d}").as_bytes()),
        };
        chain.push(next);
    }
    chain
}

/// The key Docker's `config.json` files Docker Hub's credentials under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for `registry` from Docker's `config.json` (`$DOCKER_CONFIG` or
/// `~/.docker`), its `auths` or its credential helpers, as `docker pull` would use them
/// (and as nerdctl does): anonymous when none is configured. An identity token (an OAuth
/// refresh token) is not a registry credential oci-client can send: anonymous, with a
/// warning. A credential helper that does not answer within the stall deadline is a
/// `Timeout`.
async fn config_auth(
    registry: &str,
    progress: Progress<'_>,
) -> Result<oci_client::secrets::RegistryAuth> {
    use oci_client::secrets::RegistryAuth as Auth;
    let key = if registry == "docker.io" || registry == "index.docker.io" {
        DOCKER_HUB_KEY.to_string()
    } else {
        registry.to_string()
    };
    // The lookup may run a credential helper (a child process): off the async threads.
    let found = off_thread(progress, "Docker's credential helper", move || {
        docker_credential::get_credential(&key)
    })
    .await?;
    Ok(match found {
        Ok(Ok(docker_credential::DockerCredential::UsernamePassword(user, password))) => {
            tracing::debug!(registry, "registry credentials from Docker's config.json");
            Auth::Basic(user, password)
        }
        Ok(Ok(docker_credential::DockerCredential::IdentityToken(_))) => {
            tracing::warn!(
                registry,
                "Docker's config.json has an identity token for this registry, which this \
                 backend cannot use: pulling anonymously (pass RegistryAuth instead)"
            );
            Auth::Anonymous
        }
        Ok(Err(e)) => {
            tracing::debug!(registry, error = %e, "no registry credentials in Docker's config.json");
            Auth::Anonymous
        }
        Err(e) => {
            tracing::warn!(registry, error = %e, "the credential lookup failed");
            Auth::Anonymous
        }
    })
}

/// `work` on the blocking pool, waited for within the stall deadline (`what` names it
/// in the `Timeout`). On expiry the work is abandoned, not stopped: a blocking thread
/// cannot be cancelled, so a hung credential helper keeps its thread until it exits.
async fn off_thread<T: Send + 'static>(
    progress: Progress<'_>,
    what: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<std::result::Result<T, tokio::task::JoinError>> {
    progress
        .within(what, async { Ok(tokio::task::spawn_blocking(work).await) })
        .await
}

impl Containerd {
    /// Pulls `image` (one attempt; the manager retries), sending layer events to
    /// `progress`; returns the manifest digest. Every wait on the registry (the
    /// manifest, the config, each read of a blob) and on Docker's credential helper is
    /// bounded by `progress`'s stall deadline: `Timeout` when nothing arrives in time.
    pub async fn pull(
        &self,
        image: &ImageRef,
        auth: Option<&RegistryAuth>,
        progress: Progress<'_>,
    ) -> Result<Option<String>> {
        let reference = Reference::try_from(image.to_string())
            .map_err(|e| Error::invalid_input(format!("image reference {image}")).with_source(e))?;
        // The ring provider for TLS (already installed by an earlier pull: fine).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let registry = oci_client::Client::new(ClientConfig {
            protocol: protocol_for(image.registry()),
            ..ClientConfig::default()
        });
        let auth = match auth {
            Some(a) => {
                oci_client::secrets::RegistryAuth::Basic(a.username.clone(), a.password.clone())
            }
            None => config_auth(image.registry(), progress).await?,
        };
        let (manifest_bytes, manifest) = self
            .manifest(&registry, &reference, &auth, progress)
            .await?;
        let manifest_digest = sha256(&manifest_bytes);
        let config = Blob::config(&manifest["config"])?;
        let layers: Vec<Blob> = manifest["layers"]
            .as_array()
            .ok_or_else(|| bad_manifest("no layers"))?
            .iter()
            .map(Blob::layer)
            .collect::<Result<_>>()?;

        let mut config_bytes = Vec::new();
        fetch_blob(&registry, &reference, &config, progress, &mut config_bytes).await?;
        let config_json: Value = serde_json::from_slice(&config_bytes)
            .map_err(|e| bad_manifest("the image config is not JSON").with_source(e))?;
        let diff_ids: Vec<String> = config_json["rootfs"]["diff_ids"]
            .as_array()
            .ok_or_else(|| bad_manifest("the config has no diff ids"))?
            .iter()
            .filter_map(|d| d.as_str().map(str::to_string))
            .collect();
        if diff_ids.len() != layers.len() {
            return Err(bad_manifest("layers and diff ids differ in number"));
        }
        let chain = chain_ids(&diff_ids);

        let lease = self.lease().await?;
        let result = async {
            let lease = lease.id();
            // Layers download (and go into the content store) a few at a time, as
            // `ctr` and the engines do, while each one is unpacked as soon as it and
            // the ones below it are in: a pull of many layers waits for the slowest
            // stage, not the sum of them all.
            let (fetched_tx, mut fetched_rx) = tokio::sync::mpsc::unbounded_channel();
            let (layers, diff_ids, registry, reference) =
                (&layers, &diff_ids, &registry, &reference);
            // After a failure nothing new starts, and what runs is awaited: a write or
            // an unpack cut off here could reach containerd after the lease is gone and
            // leave its content behind.
            let failed = &std::sync::atomic::AtomicBool::new(false);
            let fetch_all = async move {
                // (The futures are made in a loop, not by a closure: a closure here
                // makes rustc lose that the pull's future is Send.)
                let mut pending = Vec::with_capacity(layers.len());
                for (layer, diff_id) in layers.iter().zip(diff_ids) {
                    pending.push(async move {
                        if failed.load(Ordering::Relaxed) {
                            return Ok(false);
                        }
                        self.fetch_layer(
                            registry, reference, image, layer, diff_id, progress, lease,
                        )
                        .await
                        .map(|()| true)
                    });
                }
                let mut fetched = futures::stream::iter(pending).buffered(CONCURRENT_DOWNLOADS);
                let mut first_error = None;
                while let Some(done) = fetched.next().await {
                    match done {
                        Ok(true) if first_error.is_none() => {
                            let _ = fetched_tx.send(());
                        }
                        Ok(_) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            first_error.get_or_insert(e);
                        }
                    }
                }
                first_error.map_or(Ok(()), Err)
            };
            let unpack_all = async {
                for (i, layer) in layers.iter().enumerate() {
                    // None: the fetch failed, and its error is the pull's.
                    if fetched_rx.recv().await.is_none() {
                        break;
                    }
                    let parent = if i == 0 { "" } else { chain[i - 1].as_str() };
                    match self
                        .unpack(layer, &diff_ids[i], &chain[i], parent, lease)
                        .await
                    {
                        Ok(true) => progress.report(&event(layer, LayerPhase::Extracting)),
                        Ok(false) => {}
                        Err(e) => {
                            failed.store(true, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                }
                Ok::<_, Error>(())
            };
            let (fetched, unpacked) = tokio::join!(fetch_all, unpack_all);
            fetched?;
            unpacked?;
            let top = chain.last().cloned().unwrap_or_default();
            let config_labels =
                HashMap::from([(format!("containerd.io/gc.ref.snapshot.{SNAPSHOTTER}"), top)]);
            self.put_bytes(&config, config_bytes, config_labels, lease, progress)
                .await?;
            let mut manifest_labels = HashMap::from([(
                "containerd.io/gc.ref.content.config".to_string(),
                config.digest.clone(),
            )]);
            for (i, layer) in layers.iter().enumerate() {
                manifest_labels.insert(
                    format!("containerd.io/gc.ref.content.l.{i}"),
                    layer.digest.clone(),
                );
            }
            let manifest_blob = Blob {
                media_type: manifest["mediaType"]
                    .as_str()
                    .unwrap_or(OCI_IMAGE_MEDIA_TYPE)
                    .to_string(),
                digest: manifest_digest.clone(),
                size: i64::try_from(manifest_bytes.len()).unwrap_or(i64::MAX),
            };
            self.put_bytes(
                &manifest_blob,
                manifest_bytes.to_vec(),
                manifest_labels,
                lease,
                progress,
            )
            .await?;
            self.record_image(&image.engine_name(), &manifest_blob)
                .await
        }
        .await;
        // What the pull made is referenced by the image now (or collectable): let go.
        lease.release().await;
        result.map(|()| Some(manifest_digest))
    }

    /// The platform manifest of `reference` (an index resolves to this host's
    /// linux/arch entry), its exact bytes checked against their digest.
    async fn manifest(
        &self,
        registry: &oci_client::Client,
        reference: &Reference,
        auth: &oci_client::secrets::RegistryAuth,
        progress: Progress<'_>,
    ) -> Result<(Vec<u8>, Value)> {
        let accepted = [
            OCI_IMAGE_MEDIA_TYPE,
            IMAGE_MANIFEST_MEDIA_TYPE,
            OCI_IMAGE_INDEX_MEDIA_TYPE,
            IMAGE_MANIFEST_LIST_MEDIA_TYPE,
        ];
        let mut reference = reference.clone();
        for _ in 0..2 {
            // A manifest is small: its whole answer is one wait for data.
            let (bytes, digest) = progress
                .within("the registry's manifest", async {
                    registry
                        .pull_manifest_raw(&reference, auth, &accepted)
                        .await
                        .map_err(map_registry)
                })
                .await?;
            if bytes.len() > MAX_MANIFEST {
                return Err(bad_manifest(&format!(
                    "it is {} bytes, more than {MAX_MANIFEST}",
                    bytes.len()
                )));
            }
            if !digest.is_empty() && sha256(&bytes) != digest {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!("the registry sent a manifest that does not match {digest}"),
                ));
            }
            let v: Value = serde_json::from_slice(&bytes)
                .map_err(|e| bad_manifest("not JSON").with_source(e))?;
            let Some(entries) = v["manifests"].as_array() else {
                return Ok((bytes.to_vec(), v));
            };
            let entry = entries
                .iter()
                .find(|m| {
                    m["platform"]["os"] == "linux" && m["platform"]["architecture"] == host_arch()
                })
                .ok_or_else(|| {
                    Error::new(
                        ErrorKind::NotFound,
                        format!("the image has no linux/{} manifest", host_arch()),
                    )
                })?;
            let digest = entry["digest"]
                .as_str()
                .ok_or_else(|| bad_manifest("an index entry has no digest"))?;
            reference = Reference::with_digest(
                reference.registry().to_string(),
                reference.repository().to_string(),
                digest.to_string(),
            );
        }
        Err(bad_manifest("an index points to another index"))
    }

    /// A new lease of this library's, expiring after [`LEASE_EXPIRY`] at the latest; see
    /// [`Lease`].
    pub(crate) async fn lease(&self) -> Result<Lease> {
        let id = format!("container-rs-pull-{}", uuid::Uuid::new_v4().simple());
        let expiry = humantime::format_rfc3339_seconds(SystemTime::now() + LEASE_EXPIRY);
        // The guard first: a create cut off midway may still have made the lease.
        let lease = Lease {
            client: self.clone(),
            id: id.clone(),
            live: true,
        };
        let request = CreateRequest {
            id,
            labels: HashMap::from([("containerd.io/gc.expire".to_string(), expiry.to_string())]),
        };
        LeasesClient::new(self.channel.clone())
            .create(self.request(request)?)
            .await
            .map_err(map_status)?;
        Ok(lease)
    }

    /// The keys of the snapshots `lease` holds (what was prepared under it).
    pub(crate) async fn leased_snapshots(&self, lease: &str) -> Result<Vec<String>> {
        let request = ListResourcesRequest {
            id: lease.to_string(),
        };
        let resources = LeasesClient::new(self.channel.clone())
            .list_resources(self.request(request)?)
            .await
            .map_err(map_status)?
            .into_inner()
            .resources;
        Ok(resources
            .into_iter()
            .filter(|r| r.r#type.starts_with("snapshots/"))
            .map(|r| r.id)
            .collect())
    }

    pub(crate) async fn drop_lease(&self, lease: &str) -> Result<()> {
        let request = DeleteRequest {
            id: lease.to_string(),
            sync: false,
        };
        LeasesClient::new(self.channel.clone())
            .delete(self.request(request)?)
            .await
            .map_err(map_status)?;
        Ok(())
    }

    /// Puts `layer` of `image` into the content store under `lease` (downloaded unless
    /// the store has it), labelled with its uncompressed digest and its source.
    #[allow(clippy::too_many_arguments)]
    async fn fetch_layer(
        &self,
        registry: &oci_client::Client,
        reference: &Reference,
        image: &ImageRef,
        layer: &Blob,
        diff_id: &str,
        progress: Progress<'_>,
        lease: &str,
    ) -> Result<()> {
        let labels = HashMap::from([
            (
                "containerd.io/uncompressed".to_string(),
                diff_id.to_string(),
            ),
            (
                format!("containerd.io/distribution.source.{}", image.registry()),
                image.repository().to_string(),
            ),
        ]);
        self.hold(lease, CONTENT, &layer.digest).await?;
        if self.has_blob(&layer.digest).await? {
            progress.report(&event(layer, LayerPhase::AlreadyExists));
            return self.label_blob(&layer.digest, &labels).await;
        }
        progress.report(&event(layer, LayerPhase::Downloading));
        let file = download(registry, reference, layer, progress).await?;
        self.write_blob(layer, file, labels, lease, progress)
            .await?;
        progress.report(&event(layer, LayerPhase::Complete));
        Ok(())
    }

    async fn has_blob(&self, digest: &str) -> Result<bool> {
        let request = InfoRequest {
            digest: digest.to_string(),
        };
        match ContentClient::new(self.channel.clone())
            .info(self.request(request)?)
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(false),
            Err(s) => Err(map_status(s)),
        }
    }

    /// Sets `labels` on a blob already in the store (a write of an existing blob keeps
    /// its old labels).
    async fn label_blob(&self, digest: &str, labels: &HashMap<String, String>) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let request = UpdateRequest {
            info: Some(Info {
                digest: digest.to_string(),
                labels: labels.clone(),
                ..Info::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: labels.keys().map(|k| format!("labels.{k}")).collect(),
            }),
        };
        ContentClient::new(self.channel.clone())
            .update(self.request(request)?)
            .await
            .map_err(map_status)?;
        Ok(())
    }

    /// Holds `id` (a blob's digest, or a snapshot's name) in `lease`, whether it exists
    /// yet or not. Done before looking for it: a blob or snapshot another pull made and
    /// this one finds is then not collected when that pull's lease ends first (it failed,
    /// or its image was removed) while this pull still builds on it.
    async fn hold(&self, lease: &str, kind: &str, id: &str) -> Result<()> {
        let request = AddResourceRequest {
            id: lease.to_string(),
            resource: Some(Resource {
                id: id.to_string(),
                r#type: kind.to_string(),
            }),
        };
        LeasesClient::new(self.channel.clone())
            .add_resource(self.request(request)?)
            .await
            .map_err(map_status)?;
        Ok(())
    }

    async fn put_bytes(
        &self,
        blob: &Blob,
        data: Vec<u8>,
        labels: HashMap<String, String>,
        lease: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        self.hold(lease, CONTENT, &blob.digest).await?;
        let mut waited = LockWait::new(progress);
        loop {
            if self.has_blob(&blob.digest).await? {
                return self.label_blob(&blob.digest, &labels).await;
            }
            let chunks = futures::stream::iter(vec![Ok::<Vec<u8>, std::io::Error>(data.clone())]);
            match self
                .write_stream(blob, chunks, labels.clone(), lease)
                .await?
            {
                Written::Done => return Ok(()),
                Written::Locked(status) => waited.until_released(self, blob, status).await?,
            }
        }
    }

    async fn write_blob(
        &self,
        blob: &Blob,
        file: tokio::fs::File,
        labels: HashMap<String, String>,
        lease: &str,
        progress: Progress<'_>,
    ) -> Result<()> {
        let mut waited = LockWait::new(progress);
        loop {
            let mut from_start = file.try_clone().await.map_err(|e| {
                Error::new(ErrorKind::Internal, "reopening the downloaded blob failed")
                    .with_source(e)
            })?;
            from_start
                .seek(std::io::SeekFrom::Start(0))
                .await
                .map_err(|e| {
                    Error::new(ErrorKind::Internal, "rewinding the downloaded blob failed")
                        .with_source(e)
                })?;
            let chunks = futures::stream::unfold(from_start, |mut file| async move {
                let mut buf = vec![0u8; WRITE_CHUNK];
                match file.read(&mut buf).await {
                    Ok(0) => None,
                    Ok(n) => {
                        buf.truncate(n);
                        Some((Ok(buf), file))
                    }
                    Err(e) => Some((Err(e), file)),
                }
            });
            match self
                .write_stream(blob, chunks, labels.clone(), lease)
                .await?
            {
                Written::Done => return Ok(()),
                Written::Locked(status) => {
                    waited.until_released(self, blob, status).await?;
                    // The other writer committed it: this download is not needed.
                    if self.has_blob(&blob.digest).await? {
                        return self.label_blob(&blob.digest, &labels).await;
                    }
                }
            }
        }
    }

    /// How far the write of `blob` (ours or another pull's) has got, if one is open.
    async fn ingest_offset(&self, blob: &Blob) -> Result<Option<i64>> {
        let request = StatusRequest {
            r#ref: write_ref(blob),
        };
        match ContentClient::new(self.channel.clone())
            .status(self.request(request)?)
            .await
        {
            Ok(r) => Ok(r.into_inner().status.map(|s| s.offset)),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => Ok(None),
            Err(s) => Err(map_status(s)),
        }
    }

    /// Content.Write: the data in order, then a commit with the expected size, digest
    /// and labels.
    /// `Written::Locked` when another writer (a concurrent pull of the same blob, here or
    /// in another program) holds the blob's write.
    async fn write_stream<S>(
        &self,
        blob: &Blob,
        chunks: S,
        labels: HashMap<String, String>,
        lease: &str,
    ) -> Result<Written>
    where
        S: futures::Stream<Item = std::io::Result<Vec<u8>>> + Send + 'static,
    {
        let write_ref = write_ref(blob);
        let (total, expected) = (blob.size, blob.digest.clone());
        let (failed_tx, mut failed_rx) = tokio::sync::oneshot::channel::<std::io::Error>();
        let mut failed_tx = Some(failed_tx);
        let mut offset = 0i64;
        let data = {
            let (write_ref, expected) = (write_ref.clone(), expected.clone());
            chunks
                .take_while(move |c| {
                    let ok = c.is_ok();
                    if let (Err(e), Some(tx)) = (c, failed_tx.take()) {
                        let _ = tx.send(std::io::Error::new(e.kind(), e.to_string()));
                    }
                    std::future::ready(ok)
                })
                .map(move |chunk| {
                    let data = chunk.unwrap_or_default();
                    let request = WriteContentRequest {
                        action: WriteAction::Write as i32,
                        r#ref: write_ref.clone(),
                        total,
                        expected: expected.clone(),
                        offset,
                        data: data.clone(),
                        labels: HashMap::new(),
                    };
                    offset += i64::try_from(data.len()).unwrap_or(0);
                    request
                })
        };
        let commit = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: write_ref,
            total,
            expected,
            offset: total,
            data: Vec::new(),
            labels,
        };
        let requests = data.chain(futures::stream::iter([commit]));
        let written = ContentClient::new(self.channel.clone())
            .write(self.leased(requests, Some(lease))?)
            .await;
        let mut responses = match written {
            Ok(r) => r.into_inner(),
            Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                return Ok(Written::Done)
            }
            Err(s) if is_locked(&s) => return Ok(Written::Locked(s)),
            Err(s) => return Err(map_status(s)),
        };
        loop {
            match responses.message().await {
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => break,
                Err(s) if is_locked(&s) => return Ok(Written::Locked(s)),
                Err(s) => return Err(map_status(s)),
            }
        }
        if let Ok(e) = failed_rx.try_recv() {
            return Err(
                Error::new(ErrorKind::Internal, "reading the downloaded blob failed")
                    .with_source(e),
            );
        }
        Ok(Written::Done)
    }

    /// Unpacks `layer` into the snapshot `chain` (on `parent`) unless it exists; `true`
    /// when it was unpacked now.
    async fn unpack(
        &self,
        layer: &Blob,
        diff_id: &str,
        chain: &str,
        parent: &str,
        lease: &str,
    ) -> Result<bool> {
        self.hold(lease, &format!("snapshots/{SNAPSHOTTER}"), chain)
            .await?;
        let mut snapshots = SnapshotsClient::new(self.channel.clone());
        let stat = StatSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: chain.to_string(),
        };
        match snapshots.stat(self.request(stat)?).await {
            Ok(_) => return Ok(false),
            Err(s) if s.code() == containerd_client::tonic::Code::NotFound => {}
            Err(s) => return Err(map_status(s)),
        }
        let key = format!(
            "container-rs-extract-{}-{chain}",
            uuid::Uuid::new_v4().simple()
        );
        let prepare = PrepareSnapshotRequest {
            snapshotter: SNAPSHOTTER.to_string(),
            key: key.clone(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        };
        let mounts = snapshots
            .prepare(self.leased(prepare, Some(lease))?)
            .await
            .map_err(map_status)?
            .into_inner()
            .mounts;
        let applied = async {
            let apply = ApplyRequest {
                diff: Some(layer.descriptor()),
                mounts,
                payloads: HashMap::new(),
                sync_fs: false,
            };
            let applied = DiffClient::new(self.channel.clone())
                .apply(self.leased(apply, Some(lease))?)
                .await
                .map_err(map_status)?
                .into_inner()
                .applied;
            let got = applied.map(|d| d.digest).unwrap_or_default();
            if got != diff_id {
                return Err(Error::new(
                    ErrorKind::Internal,
                    format!(
                        "layer {} unpacked to {got}, not its diff id {diff_id}",
                        layer.digest
                    ),
                ));
            }
            let commit = CommitSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                name: chain.to_string(),
                key: key.clone(),
                labels: HashMap::new(),
            };
            match snapshots.commit(self.leased(commit, Some(lease))?).await {
                Ok(_) => Ok(true),
                // A concurrent pull of the same layers committed this chain first: the
                // same content by its id, so this pull has what it needs.
                Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => Ok(false),
                Err(s) => Err(map_status(s)),
            }
        }
        .await;
        if !matches!(applied, Ok(true)) {
            // Failed, or another pull's commit won: this extraction goes.
            let remove = RemoveSnapshotRequest {
                snapshotter: SNAPSHOTTER.to_string(),
                key,
            };
            if let Ok(request) = self.request(remove) {
                let _ = snapshots.remove(request).await;
            }
        }
        applied
    }

    /// Creates the image record `name` for `manifest`, or points the existing one at it.
    async fn record_image(&self, name: &str, manifest: &Blob) -> Result<()> {
        let mut images = ImagesClient::new(self.channel.clone());
        let image = Image {
            name: name.to_string(),
            labels: HashMap::new(),
            target: Some(manifest.descriptor()),
            created_at: None,
            updated_at: None,
        };
        // Create, else point the existing record at this manifest: a record made by a
        // concurrent pull of the same name in between is updated, never a `Conflict`.
        let create = CreateImageRequest {
            image: Some(image.clone()),
            source_date_epoch: None,
        };
        match images.create(self.request(create)?).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == containerd_client::tonic::Code::AlreadyExists => {
                let update = UpdateImageRequest {
                    image: Some(image),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["target".to_string()],
                    }),
                    source_date_epoch: None,
                };
                images
                    .update(self.request(update)?)
                    .await
                    .map_err(map_status)?;
                Ok(())
            }
            Err(s) => Err(map_status(s)),
        }
    }
}

/// Downloads `blob` into a temporary file (bounded memory).
async fn download(
    registry: &oci_client::Client,
    reference: &Reference,
    blob: &Blob,
    progress: Progress<'_>,
) -> Result<tokio::fs::File> {
    let spool = tempfile::tempfile()
        .map_err(|e| Error::new(ErrorKind::Internal, "cannot make a spool file").with_source(e))?;
    let mut file = tokio::fs::File::from_std(spool);
    fetch_blob(registry, reference, blob, progress, &mut file).await?;
    use tokio::io::AsyncSeekExt;
    file.rewind().await.map_err(|e| {
        Error::new(ErrorKind::Internal, "cannot read the spool file").with_source(e)
    })?;
    Ok(file)
}

/// Copies `blob` from the registry into `out`; oci-client checks its digest at the end.
/// The answer, and then every chunk of its body, must come within the stall deadline: a
/// registry that stops sending midway is a `Timeout`, however slow the blob may be.
async fn fetch_blob<W>(
    registry: &oci_client::Client,
    reference: &Reference,
    blob: &Blob,
    progress: Progress<'_>,
    out: &mut W,
) -> Result<()>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::AsyncWriteExt;
    let what = format!("the registry's blob {}", blob.digest);
    let mut body = progress
        .within(&what, async {
            registry
                .pull_blob_stream(reference, &blob.oci())
                .await
                .map_err(map_registry)
        })
        .await?;
    let spool = |e: std::io::Error| {
        Error::new(ErrorKind::Internal, "cannot write the downloaded blob").with_source(e)
    };
    // Never more than the descriptor says: a registry that sends on is cut off.
    let mut received = 0u64;
    let size = u64::try_from(blob.size).unwrap_or(0);
    while let Some(chunk) = progress.next(&what, &mut body).await? {
        let chunk = chunk
            .map_err(|e| map_registry(oci_client::errors::OciDistributionError::IoError(e)))?;
        received += chunk.len() as u64;
        if received > size {
            return Err(Error::new(
                ErrorKind::Internal,
                format!(
                    "the registry sent more than the {size} bytes the manifest gives for {}",
                    blob.digest
                ),
            ));
        }
        out.write_all(&chunk).await.map_err(spool)?;
    }
    out.flush().await.map_err(spool)
}

/// The lease resource type of a blob.
const CONTENT: &str = "content";

/// The write ref of `blob`: the same in every pull, so that two pulls of one blob write
/// it once (containerd locks a ref while a writer has it open).
fn write_ref(blob: &Blob) -> String {
    format!("container-rs-{}", blob.digest)
}

/// What a write to the content store came to.
enum Written {
    /// Committed (by this write, or it was there).
    Done,
    /// Another writer has the ref: containerd's answer.
    Locked(containerd_client::tonic::Status),
}

/// Whether `status` is containerd's "ref … locked for … (since …)": another writer holds
/// the ref. containerd 1.6 sends it as Unknown ("truncate failed: ref … locked …:
/// unavailable"), later ones as Unavailable; only the text says which.
fn is_locked(status: &containerd_client::tonic::Status) -> bool {
    matches!(
        status.code(),
        containerd_client::tonic::Code::Unknown | containerd_client::tonic::Code::Unavailable
    ) && status.message().contains(" locked for ")
}

/// Waiting for another writer's hold on a blob's write to end, as containerd's own
/// `content.OpenWriter` does (with a jittered backoff), bounded by the pull's stall
/// deadline: the wait goes on while that write grows, and is a `Timeout` once it has not
/// grown for the stall deadline.
struct LockWait<'a> {
    delays: backon::ExponentialBackoff,
    progress: Progress<'a>,
    last: Option<(Option<i64>, std::time::Instant)>,
}

impl<'a> LockWait<'a> {
    fn new(progress: Progress<'a>) -> Self {
        use backon::BackoffBuilder;
        let delays = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(10))
            .with_max_delay(Duration::from_secs(1))
            .with_jitter()
            .without_max_times()
            .build();
        Self {
            delays,
            progress,
            last: None,
        }
    }

    /// Returns once the write of `blob` is no longer held (or after one backoff step
    /// while it still grows), or fails when it stalls.
    async fn until_released(
        &mut self,
        client: &Containerd,
        blob: &Blob,
        locked: containerd_client::tonic::Status,
    ) -> Result<()> {
        let delay = self.delays.next().unwrap_or(Duration::from_secs(1));
        tracing::debug!(blob = %blob.digest, ?delay, "the blob's write is held by another writer");
        tokio::time::sleep(delay).await;
        let offset = client.ingest_offset(blob).await?;
        let now = std::time::Instant::now();
        match self.last {
            Some((seen, since)) if seen == offset => {
                if let Some(stall) = self.progress.stall_timeout() {
                    if now.duration_since(since) >= stall {
                        return Err(Error::new(
                            ErrorKind::Timeout,
                            format!(
                                "the write of {} is held by another pull that has not moved \
                                 for {stall:?}",
                                blob.digest
                            ),
                        )
                        .with_source(locked));
                    }
                }
            }
            _ => self.last = Some((offset, now)),
        }
        Ok(())
    }
}

fn event(layer: &Blob, phase: LayerPhase) -> PullProgress {
    let done = matches!(phase, LayerPhase::Complete | LayerPhase::AlreadyExists);
    let size = u64::try_from(layer.size).ok();
    PullProgress::Layer {
        id: layer.id(),
        phase,
        current: if done { size } else { None },
        total: size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptors_are_checked_before_anything_is_fetched() {
        let d = |media: &str, size: i64| serde_json::json!({"mediaType": media, "digest": format!("sha256:{}", "a".repeat(64)), "size": size});
        let tar = "application/vnd.oci.image.layer.v1.tar+gzip";
        let config = "application/vnd.oci.image.config.v1+json";
        assert!(Blob::layer(&d(tar, 10)).is_ok());
        assert!(
            Blob::layer(&d("text/html", 10)).is_err(),
            "a web page is not a layer"
        );
        assert!(Blob::layer(&d(tar, -1)).is_err(), "a negative size");
        assert!(Blob::config(&d(config, 1000)).is_ok());
        assert!(
            Blob::config(&d(tar, 1000)).is_err(),
            "a layer as the config"
        );
        assert!(
            Blob::config(&d(config, 1 << 30)).is_err(),
            "a 1 GiB config would be read into memory"
        );
    }

    #[test]
    fn chain_ids_follow_the_image_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let chain = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(chain[0], a);
        assert_eq!(chain[1], sha256(format!("{a} {b}").as_bytes()));
    }

    #[tokio::test]
    async fn a_credential_helper_that_does_not_answer_is_a_timeout() {
        let quiet = |_: &PullProgress| {};
        let progress =
            Progress::new(&quiet).with_stall_timeout(Some(std::time::Duration::from_millis(200)));
        let started = std::time::Instant::now();
        let hung = off_thread(progress, "Docker's credential helper", || {
            std::thread::sleep(std::time::Duration::from_secs(2));
        })
        .await;
        let waited = started.elapsed();
        let e = hung.expect_err("the helper hung");
        assert_eq!(e.kind(), ErrorKind::Timeout, "{e}");
        assert!(e.to_string().contains("credential helper"), "{e}");
        assert!(waited < std::time::Duration::from_secs(1), "{waited:?}");
        // One that answers in time gives its answer.
        let answered = off_thread(progress, "Docker's credential helper", || 7).await;
        assert_eq!(answered.expect("in time").expect("joined"), 7);
    }

    #[test]
    fn plain_http_only_for_this_host() {
        for local in ["127.0.0.1:5000", "localhost:5000", "[::1]:5000"] {
            assert!(
                matches!(protocol_for(local), ClientProtocol::HttpsExcept(_)),
                "{local}"
            );
        }
        for remote in ["registry.example:5000", "10.0.0.1:5000", "docker.io"] {
            assert!(
                matches!(protocol_for(remote), ClientProtocol::Https),
                "{remote}"
            );
        }
    }
}

/// A lease of this library's (what a pull or a create makes is held by it until the image
/// or container record references it). Dropped before [`release`](Lease::release) (the
/// caller gave up midway), it is deleted in a task of its own: what it held becomes
/// collectable at once instead of being kept until the lease expires.
#[derive(Debug)]
pub(crate) struct Lease {
    client: Containerd,
    id: String,
    live: bool,
}

impl Lease {
    /// The lease's id, to make things under it.
    pub(crate) fn id(&self) -> &str {
        &self.id
    }

    /// Deletes the lease now (and, if this is cut off or fails, once more when dropped).
    pub(crate) async fn release(mut self) {
        match self.client.drop_lease(&self.id).await {
            Ok(()) => self.live = false,
            Err(e) if e.kind() == ErrorKind::NotFound => self.live = false,
            Err(e) => {
                tracing::debug!(error = %e, lease = %self.id, "lease not deleted; trying again")
            }
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.live {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (client, id) = (self.client.clone(), self.id.clone());
        handle.spawn(async move {
            // A create cut off midway may reach containerd after this delete: look again.
            for pause in [0, 200, 1000, 3000].map(Duration::from_millis) {
                tokio::time::sleep(pause).await;
                match client.drop_lease(&id).await {
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, lease = %id, "lease not deleted; it expires")
                    }
                    Ok(()) => {}
                }
                return;
            }
        });
    }
}
