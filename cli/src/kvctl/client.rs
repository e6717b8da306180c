//! Connections to the store for `kvctl`: endpoint parsing, connecting within the dial timeout
//! with failover across endpoints, and the command deadline that turns into etcdctl's
//! `context deadline exceeded`. A request is sent at most once: only connecting is retried, so
//! a write is never repeated behind the user's back.

use std::future::Future;
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};

use super::args::GlobalFlags;
use super::failure::Failure;

/// How long to wait before another round over endpoints that all refused; short, because a
/// store that is just starting should be reached as soon as it listens.
const RECONNECT_PAUSE: Duration = Duration::from_millis(100);

/// One endpoint as the user spelled it (shown in `endpoint status` and `health`) and as dialed.
#[derive(Clone, Debug)]
pub struct Target {
    pub name: String,
    endpoint: Endpoint,
}

impl Target {
    /// Accepts `host:port` and `http://host:port`, as etcdctl does.
    pub fn parse(name: &str, dial_timeout: Duration) -> Result<Target, Failure> {
        let url = if name.starts_with("http://") {
            name.to_string()
        } else if name.contains("://") {
            return Err(Failure::error(format!(
                "unsupported endpoint {name}: kvctl speaks plain-text gRPC (host:port or http://)"
            )));
        } else {
            format!("http://{name}")
        };
        let endpoint = Endpoint::from_shared(url)
            .map_err(|error| Failure::error(format!("bad endpoint {name}: {error}")))?
            .connect_timeout(dial_timeout)
            .tcp_nodelay(true);
        Ok(Target { name: name.to_string(), endpoint })
    }
}

#[derive(Clone, Debug)]
pub struct Client {
    pub targets: Vec<Target>,
    pub dial_timeout: Duration,
    pub command_timeout: Duration,
}

impl Client {
    pub fn new(global: &GlobalFlags) -> Result<Client, Failure> {
        Self::for_endpoints(&global.endpoints, global)
    }

    pub fn for_endpoints(endpoints: &[String], global: &GlobalFlags) -> Result<Client, Failure> {
        let targets = endpoints
            .iter()
            .map(|name| Target::parse(name.trim(), global.dial_timeout))
            .collect::<Result<Vec<_>, _>>()?;
        if targets.is_empty() {
            return Err(Failure::bad_args("no endpoints given"));
        }
        Ok(Client {
            targets,
            dial_timeout: global.dial_timeout,
            command_timeout: global.command_timeout,
        })
    }

    /// Connects to the first endpoint that answers, then makes one request, all within the
    /// command timeout.
    pub async fn call<T, F, Fut>(&self, request: F) -> Result<T, Failure>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        self.call_on(&self.targets, request).await
    }

    /// Connects for a long-running command, as clientv3 dials for etcdctl: failing with the
    /// dial timeout's error when no endpoint answers in time.
    pub async fn dial(&self) -> Result<Channel, Failure> {
        let rounds = u32::try_from(self.targets.len()).unwrap_or(u32::MAX);
        let connecting = connect(&self.targets, self.dial_timeout);
        tokio::time::timeout(self.dial_timeout * rounds, connecting)
            .await
            .map_err(|_elapsed| Failure::deadline_exceeded())
    }

    /// As [`Client::call`], restricted to `targets`.
    pub async fn call_on<T, F, Fut>(&self, targets: &[Target], request: F) -> Result<T, Failure>
    where
        F: FnOnce(Channel) -> Fut,
        Fut: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        let attempt = async {
            let channel = connect(targets, self.dial_timeout).await;
            request(channel).await
        };
        match tokio::time::timeout(self.command_timeout, attempt).await {
            Ok(Ok(response)) => Ok(response.into_inner()),
            Ok(Err(status)) => Err(Failure::from_status(&status)),
            Err(_elapsed) => Err(Failure::deadline_exceeded()),
        }
    }
}

/// Tries the targets in order, each within the dial timeout, round after round until one
/// accepts; the caller's deadline bounds the whole, as etcdctl's command context does.
pub async fn connect(targets: &[Target], dial_timeout: Duration) -> Channel {
    loop {
        for target in targets {
            let connecting = target.endpoint.connect();
            if let Ok(Ok(channel)) = tokio::time::timeout(dial_timeout, connecting).await {
                return channel;
            }
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, expected: Result<&str, &str>) {
        let parsed = Target::parse(name, Duration::from_secs(1));
        let actual = parsed.map(|t| t.endpoint.uri().to_string()).map_err(|f| f.message);
        assert_eq!(actual, expected.map(str::to_string).map_err(str::to_string), "{name}");
    }

    #[test]
    fn endpoints_with_or_without_scheme() {
        check("127.0.0.1:2379", Ok("http://127.0.0.1:2379/"));
        check("http://127.0.0.1:23790", Ok("http://127.0.0.1:23790/"));
        check("localhost:1", Ok("http://localhost:1/"));
        check(
            "https://127.0.0.1:2379",
            Err("unsupported endpoint https://127.0.0.1:2379: kvctl speaks plain-text gRPC \
                 (host:port or http://)"),
        );
    }
}
