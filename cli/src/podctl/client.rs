//! The connection to the API server: the kube client built from the kubeconfig, the namespace
//! in effect, the discovery catalog, and raw requests for what the typed dynamic API does not
//! offer (Tables, `fieldValidation`, JSON patches, watch streams).

use std::path::PathBuf;

use http::{header, Method, Request};
use kube::api::{Api, DynamicObject};
use serde_json::Value;

use super::discovery::{Catalog, ResourceType};
use super::failure::Failure;

/// The Accept header kubectl sends for server-side printing.
pub const ACCEPT_TABLE: &str = "application/json;as=Table;v=v1;g=meta.k8s.io,\
    application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
/// Page size kubectl lists with.
pub const LIST_CHUNK_LEN: usize = 500;

/// A connected client.
pub struct Session {
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether `-n` was given (objects from files must then agree with it).
    pub namespace_explicit: bool,
    catalog: Option<Catalog>,
}

impl Session {
    pub async fn connect(
        paths: &[PathBuf],
        context: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<Session, Failure> {
        let config = super::config::client_config(paths, context).await?;
        let default_namespace = config.default_namespace.clone();
        let client = kube::Client::try_from(config).map_err(|e| Failure::from_kube(e, ""))?;
        Ok(Session {
            client,
            namespace: namespace.map_or(default_namespace, str::to_string),
            namespace_explicit: namespace.is_some(),
            catalog: None,
        })
    }

    /// The discovery catalog, fetched on first use.
    pub async fn catalog(&mut self) -> Result<&Catalog, Failure> {
        if self.catalog.is_none() {
            self.catalog = Some(Catalog::load(&self.client).await?);
        }
        Ok(self.catalog.as_ref().expect("just loaded"))
    }

    /// Resolves a typed resource name to exactly one resource.
    pub async fn resolve_one(&mut self, typed: &str) -> Result<ResourceType, Failure> {
        let found = self.catalog().await?.resolve(typed)?;
        match found.as_slice() {
            [one] => Ok((*one).clone()),
            _ => Err(Failure::client(format!("\"{typed}\" names more than one resource type"))),
        }
    }

    /// The namespace a request about `resource` goes to (`None` when cluster-scoped).
    pub fn namespace_for(&self, resource: &ResourceType) -> Option<&str> {
        resource.namespaced.then_some(self.namespace.as_str())
    }

    /// kube's dynamic API for `resource` in `namespace` (or cluster-wide).
    pub fn api(&self, resource: &ResourceType, namespace: Option<&str>) -> Api<DynamicObject> {
        let api_resource = resource.api_resource();
        match namespace.filter(|_| resource.namespaced) {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &api_resource),
            None => Api::all_with(self.client.clone(), &api_resource),
        }
    }

    /// GETs an object as JSON.
    pub async fn get_object(
        &self,
        resource: &ResourceType,
        namespace: Option<&str>,
        name: &str,
    ) -> Result<Value, kube::Error> {
        let object = self.api(resource, namespace).get(name).await?;
        Ok(object_json(&object))
    }

    /// Sends one request and decodes the JSON answer; API errors come back as
    /// `kube::Error::Api` carrying the server's `Status`.
    pub async fn send_json(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: Option<&str>,
        accept: &str,
        body: Vec<u8>,
    ) -> Result<Value, kube::Error> {
        let request = build_request(method, path_and_query, content_type, accept, body)?;
        self.client.request::<Value>(request).await
    }

    /// Opens a streaming GET (a watch): its newline-delimited JSON events.
    pub async fn stream(
        &self,
        path_and_query: &str,
        accept: &str,
    ) -> Result<impl futures::AsyncBufRead + use<>, kube::Error> {
        let request = build_request(Method::GET, path_and_query, None, accept, Vec::new())?;
        self.client.request_stream(request).await
    }
}

fn build_request(
    method: Method,
    path_and_query: &str,
    content_type: Option<&str>,
    accept: &str,
    body: Vec<u8>,
) -> Result<Request<Vec<u8>>, kube::Error> {
    let mut builder = Request::builder().method(method).uri(path_and_query);
    builder = builder.header(header::ACCEPT, accept);
    if let Some(content_type) = content_type {
        builder = builder.header(header::CONTENT_TYPE, content_type);
    }
    builder.body(body).map_err(kube::Error::HttpError)
}

/// A dynamic object as plain JSON (keys sorted, as kubectl prints them).
pub fn object_json(object: &DynamicObject) -> Value {
    serde_json::to_value(object).expect("objects serialize")
}

/// `path?k=v&...` with the values form-encoded; empty values are left out.
pub fn with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut serializer = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        serializer.append_pair(key, value);
    }
    let query = serializer.finish();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_skip_empty_values_and_encode_selectors() {
        assert_eq!(
            with_query("/api/v1/pods", &[("labelSelector", "app=web"), ("fieldSelector", "")]),
            "/api/v1/pods?labelSelector=app%3Dweb"
        );
        assert_eq!(with_query("/api/v1/pods", &[]), "/api/v1/pods");
    }
}
