//! Image records: whether one exists, and removing it (its content and snapshots are
//! then collected by containerd's garbage collector).

use container_core::{Error, ErrorKind, ImageRef, Result};
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{DeleteImageRequest, GetImageRequest, ListContainersRequest};
use containerd_client::tonic::Code;

use crate::client::Containerd;
use crate::error::map_status;

impl Containerd {
    /// Whether `image` is present in the namespace.
    pub async fn image_exists(&self, image: &ImageRef) -> Result<bool> {
        let request = GetImageRequest {
            name: image.engine_name(),
        };
        match ImagesClient::new(self.channel.clone())
            .get(self.request(request)?)
            .await
        {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(map_status(s)),
        }
    }

    /// Removes `image`; missing is `NotFound`; used by a container of the namespace is
    /// `Conflict` unless `force` (containerd itself would let it go).
    pub async fn remove_image(&self, image: &ImageRef, force: bool) -> Result<()> {
        let name = image.engine_name();
        if !force {
            let list = ListContainersRequest {
                filters: vec![format!("image=={name}")],
            };
            let users = ContainersClient::new(self.channel.clone())
                .list(self.request(list)?)
                .await
                .map_err(map_status)?
                .into_inner()
                .containers;
            if let Some(user) = users.first() {
                return Err(Error::new(
                    ErrorKind::Conflict,
                    format!("image is in use by container {}", user.id),
                ));
            }
        }
        let mut images = ImagesClient::new(self.channel.clone());
        let target = images
            .get(self.request(GetImageRequest { name: name.clone() })?)
            .await
            .map_err(map_status)?
            .into_inner()
            .image
            .and_then(|i| i.target)
            .map(|t| t.digest);
        // As Docker does: the image goes with its digest reference (`repo@sha256:…`),
        // which a pull by digest made.
        let mut names = vec![name];
        if let Some(digest) = target {
            names.push(format!("{}@{digest}", image.name()));
        }
        for name in names {
            let request = DeleteImageRequest {
                name,
                sync: true,
                target: None,
            };
            match images.delete(self.request(request)?).await {
                Ok(_) => {}
                Err(s) if s.code() == Code::NotFound => {}
                Err(s) => return Err(map_status(s)),
            }
        }
        Ok(())
    }
}
