//! Cluster secrets every master must hold alike: the cluster CA (which signs serving and client
//! certificates) and the service-account token key. The first master to start stores its own
//! in the store; every later one, on any master, adopts the stored ones, so every master's
//! `admin.kubeconfig` and every service-account token work against every master.
//!
//! They live under `/skiff/pki/`, outside `/registry/`, so no API request or watch ever serves
//! them; whoever can read the store can read them, as with Secrets in etcd. Adoption is a
//! create-if-absent transaction, so two masters starting at once agree on one winner.

use std::path::Path;
use std::time::Duration;

use serde_json::json;

use crate::pki::{self, PkiError};
use crate::storage::{Backend, BackendError, Swap};

const CA_KEY: &[u8] = b"/skiff/pki/ca";
const SERVICE_ACCOUNT_KEY: &[u8] = b"/skiff/pki/service-account-key";

/// Why the secrets could not be shared.
#[derive(Debug, thiserror::Error)]
pub enum SharedError {
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error("cannot share the cluster CA through the store: {0}")]
    Store(#[from] BackendError),
    #[error("the store holds a malformed {0}")]
    Malformed(&'static str),
}

/// Retries a store call while the store cannot answer yet, for up to a minute: masters start
/// together and wait for a quorum, and a member joining an existing cluster answers errors
/// until it has caught up with the cluster's membership.
async fn patiently<T, F, Fut>(mut call: F) -> Result<T, BackendError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, BackendError>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        match call().await {
            Err(error) if tokio::time::Instant::now() < deadline => {
                tracing::info!(%error, "waiting for the store to share the cluster CA");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => return other,
        }
    }
}

/// One shared secret: its local files (`(name, contents)`), made with `create` when neither
/// the store nor the disk has them. Returns whether the local files changed.
async fn share(
    backend: &Backend,
    dir: &Path,
    key: &[u8],
    files: &[&str],
    create: impl FnOnce() -> Result<Vec<String>, PkiError>,
) -> Result<bool, SharedError> {
    let what = if key == CA_KEY { "cluster CA" } else { "service-account key" };
    let (stored, _) = patiently(|| backend.get(key)).await?;
    let local: Vec<Option<String>> =
        files.iter().map(|f| pki::read(&dir.join(f))).collect::<Result<_, _>>()?;
    let mut ours = false;
    let wanted: Vec<String> = match stored {
        Some(kv) => decode(&kv.value, files.len()).ok_or(SharedError::Malformed(what))?,
        None => {
            let mine = if local.iter().all(Option::is_some) {
                local.iter().flatten().cloned().collect()
            } else {
                create()?
            };
            let value = serde_json::to_vec(&json!({ "files": mine })).expect("JSON");
            match patiently(|| backend.create(key, value.clone(), 0)).await? {
                Swap::Done { .. } => {
                    tracing::info!("stored this master's {what} for the other masters");
                    ours = true;
                    mine
                }
                // Another master stored its own first: adopt that one.
                Swap::Refused { current: Some(kv) } => {
                    decode(&kv.value, files.len()).ok_or(SharedError::Malformed(what))?
                }
                Swap::Refused { current: None } => return Err(SharedError::Malformed(what)),
            }
        }
    };
    let changed = local.iter().zip(&wanted).any(|(have, want)| have.as_deref() != Some(want));
    if changed {
        for (file, contents) in files.iter().zip(&wanted) {
            pki::write_private(&dir.join(file), contents)?;
        }
        if !ours {
            tracing::info!("adopted the cluster's {what} from the store");
        }
    }
    Ok(changed)
}

fn decode(value: &[u8], count: usize) -> Option<Vec<String>> {
    let parsed: serde_json::Value = serde_json::from_slice(value).ok()?;
    let files: Vec<String> = parsed["files"]
        .as_array()?
        .iter()
        .map(|f| f.as_str().map(str::to_string))
        .collect::<Option<_>>()?;
    (files.len() == count).then_some(files)
}

/// Makes `pki_dir`'s CA and service-account key the cluster's (see the module docs). When the
/// CA changed, the serving certificate is removed so it is issued again from the right CA.
pub async fn ensure(backend: &Backend, pki_dir: &Path) -> Result<(), SharedError> {
    std::fs::create_dir_all(pki_dir).map_err(|e| PkiError::Io {
        action: "create",
        path: pki_dir.display().to_string(),
        reason: e.to_string(),
    })?;
    let ca_changed = share(backend, pki_dir, CA_KEY, &["ca.crt", "ca.key"], || {
        let ca = pki::new_ca()?;
        Ok(vec![ca.cert_pem, ca.key_pem])
    })
    .await?;
    if ca_changed {
        for file in ["apiserver.crt", "apiserver.key", "apiserver.hosts"] {
            let _ = std::fs::remove_file(pki_dir.join(file));
        }
    }
    share(backend, pki_dir, SERVICE_ACCOUNT_KEY, &["sa.key"], || {
        Ok(vec![super::tokens::TokenSigner::new_key_hex()])
    })
    .await?;
    Ok(())
}
