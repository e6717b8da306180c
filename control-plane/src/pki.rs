//! The cluster's certificates: a CA generated on a master's first start (kept in
//! `<data-dir>/pki`), the API server's serving certificate, client certificates (user = CN,
//! groups = O, as Kubernetes reads them), and the admin kubeconfig.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};

/// Why the certificates could not be loaded or made.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("cannot {action} {path}: {reason}")]
    Io { action: &'static str, path: String, reason: String },
    #[error("certificate: {0}")]
    Certificate(String),
}

fn cert_error(error: rcgen::Error) -> PkiError {
    PkiError::Certificate(error.to_string())
}

/// A certificate and its private key, PEM encoded.
#[derive(Clone, Debug)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The cluster CA with the API server's serving certificate.
#[derive(Debug)]
pub struct Pki {
    pub dir: PathBuf,
    pub ca: CertifiedKey,
    pub server: CertifiedKey,
}

/// A file's text, or `None` when it does not exist.
pub(crate) fn read(path: &Path) -> Result<Option<String>, PkiError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(error) => Err(PkiError::Io {
            action: "read",
            path: path.display().to_string(),
            reason: error.to_string(),
        }),
    }
}

/// Writes a file readable by its owner only (keys and credentials).
pub fn write_private(path: &Path, contents: &str) -> Result<(), PkiError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |action, e: std::io::Error| PkiError::Io {
        action,
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("create", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| io("write", e))?;
    file.write_all(contents.as_bytes()).map_err(|e| io("write", e))?;
    file.sync_all().map_err(|e| io("sync", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("rename", e))
}

fn name(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    let mut name = DistinguishedName::new();
    name.push(DnType::CommonName, common_name);
    for organization in organizations {
        name.push(DnType::OrganizationName, *organization);
    }
    name
}

impl Pki {
    /// Loads the CA and serving certificate from `dir`, creating what is missing. The serving
    /// certificate names `hosts` (IPs and DNS names) and is re-issued if they changed.
    pub fn load_or_create(dir: &Path, hosts: &[String]) -> Result<Pki, PkiError> {
        let ca = match (read(&dir.join("ca.crt"))?, read(&dir.join("ca.key"))?) {
            (Some(cert_pem), Some(key_pem)) => CertifiedKey { cert_pem, key_pem },
            _ => {
                let ca = new_ca()?;
                write_private(&dir.join("ca.key"), &ca.key_pem)?;
                write_private(&dir.join("ca.crt"), &ca.cert_pem)?;
                ca
            }
        };
        let hosts_file = dir.join("apiserver.hosts");
        let wanted = hosts.join(",");
        let server = match (
            read(&dir.join("apiserver.crt"))?,
            read(&dir.join("apiserver.key"))?,
            read(&hosts_file)?,
        ) {
            (Some(cert_pem), Some(key_pem), Some(named)) if named == wanted => {
                CertifiedKey { cert_pem, key_pem }
            }
            _ => {
                let server = issue(&ca, "skiff-apiserver", &[], hosts, true)?;
                write_private(&dir.join("apiserver.key"), &server.key_pem)?;
                write_private(&dir.join("apiserver.crt"), &server.cert_pem)?;
                write_private(&hosts_file, &wanted)?;
                server
            }
        };
        Ok(Pki { dir: dir.to_path_buf(), ca, server })
    }

    /// A client certificate for `user` in `groups`, signed by the cluster CA.
    pub fn client_certificate(
        &self,
        user: &str,
        groups: &[&str],
    ) -> Result<CertifiedKey, PkiError> {
        issue(&self.ca, user, groups, &[], false)
    }
}

/// A client certificate for `user` in `groups` signed by `ca`: credentials made outside a
/// running master (`skiff kubeconfig` for node agents).
pub fn issue_client_certificate(
    ca: &CertifiedKey,
    user: &str,
    groups: &[&str],
) -> Result<CertifiedKey, PkiError> {
    issue(ca, user, groups, &[], false)
}

/// A new self-signed cluster CA.
pub fn new_ca() -> Result<CertifiedKey, PkiError> {
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.distinguished_name = name("skiff-ca", &[]);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.self_signed(&key).map_err(cert_error)?;
    Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// Issues a leaf certificate: for a server (with `hosts` as SANs) or a client.
fn issue(
    ca: &CertifiedKey,
    common_name: &str,
    groups: &[&str],
    hosts: &[String],
    server: bool,
) -> Result<CertifiedKey, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(cert_error)?;
    let issuer = Issuer::from_ca_cert_pem(&ca.cert_pem, ca_key).map_err(cert_error)?;
    let mut params = CertificateParams::new(Vec::<String>::new()).map_err(cert_error)?;
    params.distinguished_name = name(common_name, groups);
    params.subject_alt_names = hosts
        .iter()
        .map(|host| match host.parse::<IpAddr>() {
            Ok(ip) => Ok(SanType::IpAddress(ip)),
            Err(_) => host.clone().try_into().map(SanType::DnsName).map_err(cert_error),
        })
        .collect::<Result<_, _>>()?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.not_after = rcgen::date_time_ymd(2035, 1, 1);
    let key = KeyPair::generate().map_err(cert_error)?;
    let cert = params.signed_by(&key, &issuer).map_err(cert_error)?;
    Ok(CertifiedKey { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
}

/// A kubeconfig with one cluster, one user and one context, credentials embedded.
pub fn kubeconfig(server: &str, ca_pem: &str, user: &str, credential: &Credential) -> String {
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let user_fields = match credential {
        Credential::Certificate(key) => format!(
            "    client-certificate-data: {}\n    client-key-data: {}\n",
            b64(&key.cert_pem),
            b64(&key.key_pem)
        ),
        Credential::Token(token) => format!("    token: {token}\n"),
    };
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: skiff\n  cluster:\n    server: \
         {server}\n    certificate-authority-data: {}\nusers:\n- name: {user}\n  user:\n\
         {user_fields}contexts:\n- name: {user}@skiff\n  context:\n    cluster: skiff\n    \
         user: {user}\ncurrent-context: {user}@skiff\npreferences: {{}}\n",
        b64(ca_pem)
    )
}

/// How a kubeconfig's user authenticates.
#[derive(Debug)]
pub enum Credential {
    Certificate(CertifiedKey),
    Token(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_the_server_cert_follows_its_hosts() {
        let dir = tempfile::tempdir().unwrap();
        let hosts = vec!["127.0.0.1".to_string(), "localhost".to_string()];
        let first = Pki::load_or_create(dir.path(), &hosts).unwrap();
        let again = Pki::load_or_create(dir.path(), &hosts).unwrap();
        assert_eq!(first.ca.cert_pem, again.ca.cert_pem);
        assert_eq!(first.server.cert_pem, again.server.cert_pem);
        let moved = Pki::load_or_create(dir.path(), &["127.0.0.2".to_string()]).unwrap();
        assert_eq!(moved.ca.cert_pem, first.ca.cert_pem);
        assert_ne!(moved.server.cert_pem, first.server.cert_pem);
        let mode = std::fs::metadata(dir.path().join("ca.key")).unwrap();
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(mode.permissions().mode() & 0o777, 0o600);
    }

    #[test]
    fn client_certificates_carry_user_and_groups() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &["127.0.0.1".to_string()]).unwrap();
        let admin = pki.client_certificate("kubernetes-admin", &["system:masters"]).unwrap();
        let der = rustls_pemfile::certs(&mut admin.cert_pem.as_bytes()).next().unwrap().unwrap();
        let identity = crate::apiserver::auth::identity_from_certificate(&der).unwrap();
        assert_eq!(identity.0, "kubernetes-admin");
        assert_eq!(identity.1, vec!["system:masters".to_string()]);
    }
}
