//! Leader election through a coordination.k8s.io Lease (kube-lease-manager): replicas
//! wait until they hold it; the holder acts. Losing it closes the fence at once (no new
//! issuer or store call), finishes the steps in flight, and ends the process, which a
//! restart brings back as a follower.

use kube::Client;
use kube_lease_manager::LeaseManagerBuilder;

use crate::controller::Settings;

pub struct Lease {
    pub name: String,
    pub namespace: String,
    pub duration_seconds: u64,
}

pub async fn run(
    client: Client,
    settings: Settings,
    lease: Lease,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), String> {
    let identity = std::env::var("POD_NAME").unwrap_or_else(|_| uuid::Uuid::new_v4().to_string());
    // Renew a third of the way before expiry: room for a slow API server.
    let grace = (lease.duration_seconds / 3).max(1);
    let manager = LeaseManagerBuilder::new(client.clone(), &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&identity)
        .with_duration(lease.duration_seconds)
        .with_grace(grace)
        .with_field_manager(crate::writes::MANAGER)
        .build()
        .await
        .map_err(|e| format!("cannot use Lease {}/{}: {e}", lease.namespace, lease.name))?;
    let (mut leading, task) = manager.watch().await;
    let (leadership, metrics) = (settings.leadership.clone(), settings.metrics.clone());
    leadership.set(false);
    metrics.set_leader(false);
    tracing::info!(%identity, lease = %format!("{}/{}", lease.namespace, lease.name), "waiting to lead");

    let mut shutdown = Box::pin(shutdown);
    let won = tokio::select! {
        won = leading.wait_for(|l| *l) => Some(won.is_ok()),
        _ = &mut shutdown => None,
    };
    match won {
        Some(true) => {}
        Some(false) => return Err("the lease manager stopped".into()),
        None => {
            drop(leading);
            let _ = task.await;
            return Ok(());
        }
    }
    leadership.set(true);
    metrics.set_leader(true);
    tracing::info!(%identity, "leading");

    // The fence follows the lease the moment it changes, not when the controller stops.
    let mut watched = leading.clone();
    let lost = async move {
        let _ = watched.wait_for(|l| !*l).await;
        leadership.set(false);
        metrics.set_leader(false);
        tracing::warn!("lost the leader lease: no new issuer or store call starts");
    };
    let (stopped_tx, stopped_rx) = tokio::sync::oneshot::channel();
    let stop = async move {
        let lost_lease = tokio::select! {
            _ = lost => true,
            _ = shutdown => false,
        };
        let _ = stopped_tx.send(lost_lease);
    };
    crate::controller::run_until(client, settings, stop).await;
    if stopped_rx.await.unwrap_or(false) {
        return Err("lost the leader lease; exiting so a restart rejoins as a follower".into());
    }
    // Dropping the receiver releases the Lease: a follower takes over without waiting
    // for it to expire.
    drop(leading);
    match task.await {
        Ok(Ok(_)) => tracing::info!("released the leader lease"),
        Ok(Err(e)) => tracing::warn!(error = %e, "could not release the leader lease"),
        Err(e) => tracing::warn!(error = %e, "could not release the leader lease"),
    }
    Ok(())
}
