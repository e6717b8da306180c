//! Service-account tokens: JWTs the API server issues through the `serviceaccounts/token`
//! subresource (TokenRequest) and accepts as bearer tokens. Signed with HMAC-SHA256 under a key
//! kept in `<data-dir>/pki/sa.key`; a token stops working when it expires or when its service
//! account is deleted (its uid is checked).

use std::path::Path;

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::auth::User;
use crate::pki::{self, PkiError};

/// The issuer Kubernetes puts in service-account tokens by default.
pub const ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// Token lifetimes a TokenRequest may ask for (Kubernetes: at least 10 minutes; default 1 h;
/// capped here at 48 h).
pub const EXPIRATION_SECONDS_MIN: i64 = 600;
pub const EXPIRATION_SECONDS_DEFAULT: i64 = 3600;
pub const EXPIRATION_SECONDS_MAX: i64 = 48 * 3600;

/// Signs and verifies service-account tokens.
#[derive(Clone)]
pub struct TokenSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSigner")
    }
}

/// What a verified token says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceAccountClaims {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

impl ServiceAccountClaims {
    pub fn user(&self) -> User {
        User {
            name: format!("system:serviceaccount:{}:{}", self.namespace, self.name),
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{}", self.namespace),
            ],
        }
    }
}

impl TokenSigner {
    /// Loads the signing key from `dir/sa.key`, making one on first start.
    /// A new random signing key, hex encoded as `sa.key` holds it.
    pub fn new_key_hex() -> String {
        let key: [u8; 32] = rand::random();
        key.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn load_or_create(dir: &Path) -> Result<TokenSigner, PkiError> {
        let path = dir.join("sa.key");
        let hex = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().to_string(),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let hex = TokenSigner::new_key_hex();
                pki::write_private(&path, &hex)?;
                hex
            }
            Err(error) => {
                return Err(PkiError::Io {
                    action: "read",
                    path: path.display().to_string(),
                    reason: error.to_string(),
                })
            }
        };
        let key = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(hex.get(i..i + 2).unwrap_or("zz"), 16))
            .collect::<Result<Vec<u8>, _>>()
            .map_err(|_| PkiError::Certificate(format!("{} is not hex", path.display())))?;
        if key.len() < 32 {
            return Err(PkiError::Certificate(format!("{} holds a short key", path.display())));
        }
        Ok(TokenSigner { key })
    }

    fn mac(&self, data: &[u8]) -> Vec<u8> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(data);
        mac.finalize().into_bytes().to_vec()
    }

    /// Issues a token for `claims` valid from `now` for `seconds`, for `audiences`.
    pub fn issue(
        &self,
        claims: &ServiceAccountClaims,
        audiences: &[String],
        now: i64,
        seconds: i64,
    ) -> String {
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let audiences =
            if audiences.is_empty() { vec![ISSUER.to_string()] } else { audiences.to_vec() };
        let body = json!({
            "iss": ISSUER,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "exp": now + seconds,
            "kubernetes.io": {
                "namespace": claims.namespace,
                "serviceaccount": {"name": claims.name, "uid": claims.uid},
            },
        });
        let signing_input =
            format!("{}.{}", B64.encode(header.to_string()), B64.encode(body.to_string()));
        let signature = B64.encode(self.mac(signing_input.as_bytes()));
        format!("{signing_input}.{signature}")
    }

    /// Verifies signature and lifetime; returns the service account the token names.
    pub fn verify(&self, token: &str, now: i64) -> Option<ServiceAccountClaims> {
        let (signing_input, signature) = token.rsplit_once('.')?;
        let signature = B64.decode(signature).ok()?;
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        mac.update(signing_input.as_bytes());
        mac.verify_slice(&signature).ok()?;
        let (header, body) = signing_input.split_once('.')?;
        let header: Value = serde_json::from_slice(&B64.decode(header).ok()?).ok()?;
        if header["alg"] != "HS256" {
            return None;
        }
        let body: Value = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
        let (exp, nbf) = (body["exp"].as_i64()?, body["nbf"].as_i64().unwrap_or(0));
        // Only tokens meant for the API server (its audience is the issuer, Kubernetes'
        // default `--api-audiences`): one minted for a third party cannot be replayed here.
        let for_us = body["aud"].as_array().is_some_and(|a| a.iter().any(|a| a == ISSUER));
        if now >= exp || now < nbf || body["iss"] != ISSUER || !for_us {
            return None;
        }
        let k8s = &body["kubernetes.io"];
        Some(ServiceAccountClaims {
            namespace: k8s["namespace"].as_str()?.to_string(),
            name: k8s["serviceaccount"]["name"].as_str()?.to_string(),
            uid: k8s["serviceaccount"]["uid"].as_str()?.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims() -> ServiceAccountClaims {
        ServiceAccountClaims { namespace: "dev".into(), name: "robot".into(), uid: "u1".into() }
    }

    #[test]
    fn tokens_verify_until_they_expire_and_only_under_their_key() {
        let dir = tempfile::tempdir().unwrap();
        let signer = TokenSigner::load_or_create(dir.path()).unwrap();
        let again = TokenSigner::load_or_create(dir.path()).unwrap();
        let token = signer.issue(&claims(), &[], 1_000, 600);
        assert_eq!(again.verify(&token, 1_000), Some(claims()), "the key survives restarts");
        assert_eq!(signer.verify(&token, 1_599), Some(claims()));
        assert_eq!(signer.verify(&token, 1_600), None, "expired");
        assert_eq!(claims().user().name, "system:serviceaccount:dev:robot");
        let other = TokenSigner::load_or_create(tempfile::tempdir().unwrap().path()).unwrap();
        assert_eq!(other.verify(&token, 1_000), None, "another cluster's key");
        let elsewhere = signer.issue(&claims(), &["vault".to_string()], 1_000, 600);
        assert_eq!(signer.verify(&elsewhere, 1_000), None, "meant for another audience");
        // Another account's claims under this token's signature.
        let stranger = ServiceAccountClaims { name: "admin".into(), ..claims() };
        let (other_claims, _) = signer
            .issue(&stranger, &[], 1_000, 600)
            .rsplit_once('.')
            .map(|(c, s)| (c.to_string(), s.to_string()))
            .unwrap();
        let signature = token.rsplit_once('.').unwrap().1;
        assert_eq!(signer.verify(&format!("{other_claims}.{signature}"), 1_000), None);
    }
}
