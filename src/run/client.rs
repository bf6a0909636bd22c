//! The Kubernetes client: from a kubeconfig or the pod's ServiceAccount, paced by
//! `--kube-qps` and `--kube-burst` so a relist of thousands of ApiKeys cannot flood the
//! API server (kube-rs has no client-side rate limit of its own), and retrying the
//! answers that say "try again" (429, 503, 504) a few times within seconds.

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;
use kube::client::retry::RetryPolicy;
use tower::buffer::BufferLayer;
use tower::retry::RetryLayer;
use tower::{Layer, Service};

use crate::pace::Gate;

/// How often a request answered 429, 503 or 504 is sent again. kube-rs's own default
/// (15 times, backing off up to 1000 s) holds a reconcile inside one request for minutes
/// of an API server brownout, with nothing on the ApiKey; beyond a few quick retries the
/// step fails, the ApiKey says why, and the controller's backoff takes over.
pub const RETRIES: u32 = 3;

/// Backoff from 100 ms, doubling (with jitter) up to 2 s; a `Retry-After` the server
/// sends is honoured.
fn retry_policy() -> RetryPolicy {
    RetryPolicy::new(
        Duration::from_millis(100),
        Duration::from_secs(2),
        RETRIES,
        true,
    )
    .expect("valid backoff")
}

/// Requests queued for the retry layer (it needs a `Clone` service, so the client's
/// boxed stack goes behind a buffer, as kube's `Client` does itself).
const QUEUED: usize = 1024;

pub async fn build(
    kubeconfig: Option<&Path>,
    qps: u32,
    burst: u32,
) -> Result<kube::Client, String> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default())
                .await
                .map_err(|e| format!("invalid kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration found: {e}"))?,
    };
    with_config(config, qps, burst)
}

/// The operator's client for a dev cluster (the sandbox's, the tests'), from its kubeconfig
/// text; paced only against runaway loops, as a local API server needs no protection.
pub async fn for_dev_cluster(kubeconfig: &str) -> Result<kube::Client, String> {
    let invalid = |e: kube::config::KubeconfigError| format!("invalid kubeconfig: {e}");
    let kc = kube::config::Kubeconfig::from_yaml(kubeconfig).map_err(invalid)?;
    let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
        .await
        .map_err(invalid)?;
    with_config(config, 10_000, 10_000)
}

/// The client for a configuration already read (the `kubectl apikey` plugin's too: a
/// command should not sit silent for minutes of an API server brownout either).
pub fn with_config(mut config: kube::Config, qps: u32, burst: u32) -> Result<kube::Client, String> {
    config.default_retry = false;
    let pace = Pace(Arc::new(Gate::new(Some(qps), Some(burst))));
    // Retries outside the pace: each one waits for a token like any other request.
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build a client: {e}"))?
        .with_layer(&pace)
        .with_layer(&BufferLayer::new(QUEUED))
        .with_layer(&RetryLayer::new(retry_policy()))
        .build())
}

/// Holds each request until the shared token bucket lets it go.
#[derive(Clone)]
struct Pace(Arc<Gate>);

impl<S> Layer<S> for Pace {
    type Service = Paced<S>;

    fn layer(&self, inner: S) -> Paced<S> {
        Paced {
            inner,
            gate: self.0.clone(),
            waiting: None,
            let_through: false,
        }
    }
}

struct Paced<S> {
    inner: S,
    gate: Arc<Gate>,
    /// The wait for the next token, while one is in progress.
    waiting: Option<BoxFuture<'static, ()>>,
    /// A token was taken for the next call.
    let_through: bool,
}

impl<S, R> Service<R> for Paced<S>
where
    S: Service<R>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Take a token in poll_ready: the inner service is not Clone, so the wait cannot
        // move into the response future.
        if !self.let_through {
            let gate = self.gate.clone();
            let waiting = self
                .waiting
                .get_or_insert_with(|| async move { gate.wait().await }.boxed());
            if waiting.poll_unpin(cx).is_pending() {
                return Poll::Pending;
            }
            self.waiting = None;
            self.let_through = true;
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        self.let_through = false;
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;

    /// A server that answers `refusals` 503s, then 200s; and how often it was asked.
    fn unavailable_for(
        refusals: u32,
    ) -> (
        impl Service<Request<Body>, Response = Response<()>, Error = tower::BoxError> + Clone,
        Arc<AtomicU32>,
    ) {
        let asked = Arc::new(AtomicU32::new(0));
        let counter = asked.clone();
        let server = tower::service_fn(move |_: Request<Body>| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            let status = if n < refusals {
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::OK
            };
            async move { Ok(Response::builder().status(status).body(()).unwrap()) }
        });
        (server, asked)
    }

    async fn send(
        service: impl Service<Request<Body>, Response = Response<()>, Error = tower::BoxError>,
    ) -> StatusCode {
        let request = Request::get("/api/v1/namespaces/default/secrets/s")
            .body(Body::empty())
            .unwrap();
        service.oneshot(request).await.unwrap().status()
    }

    #[tokio::test(start_paused = true)]
    async fn a_brief_503_is_retried_away() {
        let (server, asked) = unavailable_for(2);
        let status = send(RetryLayer::new(retry_policy()).layer(server)).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(asked.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_lasting_503_is_given_back_within_seconds() {
        let (server, asked) = unavailable_for(u32::MAX);
        let start = Instant::now();
        let status = send(RetryLayer::new(retry_policy()).layer(server)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(asked.load(Ordering::SeqCst), 1 + RETRIES);
        // 100 + 200 + 400 ms, each with jitter; kube-rs's default waited minutes.
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn requests_beyond_the_burst_wait_for_the_rate() {
        let pace = Pace(Arc::new(Gate::new(Some(2), Some(2))));
        let mut service = pace.layer(tower::service_fn(|n: u32| async move {
            Ok::<_, std::convert::Infallible>(n)
        }));
        let start = Instant::now();
        for n in 0..6 {
            let answered = service.ready().await.unwrap().call(n).await.unwrap();
            assert_eq!(answered, n);
        }
        // Two at once, then four at two per second.
        assert_eq!(start.elapsed(), Duration::from_secs(2));
    }
}
