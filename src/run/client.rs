//! The Kubernetes client: from a kubeconfig or the pod's ServiceAccount, paced by
//! `--kube-qps` and `--kube-burst` so a relist of thousands of ApiKeys cannot flood the
//! API server (kube-rs has no client-side rate limit of its own).

use std::path::Path;
use std::sync::Arc;
use std::task::{Context, Poll};

use futures::FutureExt;
use futures::future::BoxFuture;
use tower::{Layer, Service};

use crate::pace::Gate;

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
    let pace = Pace(Arc::new(Gate::new(Some(qps), Some(burst))));
    Ok(kube::client::ClientBuilder::try_from(config)
        .map_err(|e| format!("cannot build a client: {e}"))?
        .with_layer(&pace)
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
    use std::time::Duration;

    use tokio::time::Instant;
    use tower::ServiceExt;

    use super::*;

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
