//! Clients for the control plane's own components (scheduler, controllers, hollow nodes): a
//! `kube::Client` built from a kubeconfig, exactly as an out-of-process component would build
//! one, so every component talks to the API server over HTTPS with its own identity.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Why a client could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot read kubeconfig {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("invalid kubeconfig: {0}")]
    Kubeconfig(String),
    #[error("cannot build a client from the kubeconfig: {0}")]
    Build(String),
}

/// A client from kubeconfig text (its current context).
pub async fn from_kubeconfig_text(text: &str) -> Result<kube::Client, ClientError> {
    let kubeconfig =
        Kubeconfig::from_yaml(text).map_err(|e| ClientError::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|e| ClientError::Kubeconfig(e.to_string()))?;
    kube::Client::try_from(config).map_err(|e| ClientError::Build(e.to_string()))
}

/// A client from a kubeconfig file.
pub async fn from_kubeconfig_file(path: &Path) -> Result<kube::Client, ClientError> {
    let text = std::fs::read_to_string(path).map_err(|e| ClientError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    from_kubeconfig_text(&text).await
}
