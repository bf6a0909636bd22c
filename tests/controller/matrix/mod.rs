//! The fault matrix (docs/reliability.md): an ApiKey's life (created, Ready, one requested
//! rotation, its previous key revoked) with a fault at every step, for each store ×
//! issuer, and one checker for every cell. Each run stops at the n-th step boundary of
//! one kind: an ApiKey status write, which the dev cluster fails (the step before it
//! has acted: minted, stored, written the Secret, rolled out, revoked; status does not
//! know), or the end of a step, where a failpoint holds the reconcile (the step is done,
//! the next not decided: this also finds the boundaries with no status write, such as a
//! key stored but not yet promoted). At that moment the operator
//! crashes and restarts, or the ApiKey is deleted, or nothing more happens (the operator
//! retries the refused request), or the issuer also goes down for its next requests, or
//! (the request held, not failed) the store goes down until the operator meets it.
//! Runs go on, n = 0, 1, …, until the scenario outruns the fault.
//!
//! The test names are the matrix: `matrix::<fault>::<store>_store_<issuer>_issuer`.

mod backends;
mod failpoint;

use std::collections::{BTreeMap, BTreeSet};

use apikey_operator::api::apikey::{ApiKey, Phase};
use apikey_operator::issuer::fingerprint;
use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use secrecy::SecretString;

use self::backends::{Backends, IssuerKind, Keys, Run, StoreKind, Stored};
use self::failpoint::Failpoint;
use super::harness::*;
use crate::support::invariants::Recorder;
use crate::support::*;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fault {
    /// The operator process dies and a new one starts.
    Crash,
    /// The ApiKey is deleted, with this `deletionPolicy`.
    Delete(&'static str),
    /// Nothing more: the failed request (a 500) is all, and the operator carries on.
    Refused,
    /// As `Refused`, and then an issuer outage: its next requests are answered 503.
    IssuerOutage,
    /// The request is held while the store goes down (until the operator reports it).
    StoreOutage,
}

/// How long a store outage's request is held: time to seal OpenBao first.
const STORE_GOES_DOWN: std::time::Duration = std::time::Duration::from_secs(1);

/// How many requests an issuer outage refuses: each costs the step a backoff.
const OUTAGE_REQUESTS: usize = 2;

/// The step that ends a life: the previous key revoked.
const LAST_STEP: &str = "RevokePrevious";

/// Where a run's fault fires.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Boundary {
    /// The n-th ApiKey status write, answered 500 (or held, for a store outage).
    StatusWrite,
    /// The end of the n-th step but waits, held by a failpoint (crashes and deletions).
    Step,
}

/// Runs the cell at every step; returns how many steps the scenario has (all covered).
async fn at_every_step(
    store: StoreKind,
    issuer: IssuerKind,
    boundary: Boundary,
    fault: Fault,
) -> usize {
    let backends = Backends::start(store, issuer).await;
    let policy = match fault {
        Fault::Delete(policy) => policy,
        _ => "Revoke",
    };
    for n in 0.. {
        let name = format!("k{n}");
        let failpoint = Failpoint::new();
        let mut op = match boundary {
            Boundary::StatusWrite => operator().await,
            Boundary::Step => {
                operator_with(apikey_operator::controller::Settings {
                    after_step: Some(failpoint.after_step(&name, n)),
                    ..Default::default()
                })
                .await
            }
        };
        let c = op.t.client.clone();
        let run = backends.install(&c).await;
        deployment(&c, "app").await;
        let mut fired = match boundary {
            Boundary::StatusWrite => {
                let fired = op.t.cluster.faults_fired();
                let at = kube_devcluster::Fault::on("update", "apikeys")
                    .after(n)
                    .times(1);
                op.t.cluster.inject(match fault {
                    // The request goes through, late: the store is down by then, so the
                    // rest of the step meets the outage, not only the next step's read.
                    Fault::StoreOutage => at.delay(STORE_GOES_DOWN),
                    _ => at.status(500),
                });
                fired
            }
            Boundary::Step => {
                assert!(
                    matches!(fault, Fault::Crash | Fault::Delete(_)),
                    "a failpoint holds a step for a crash or a deletion"
                );
                failpoint.fired()
            }
        };
        let state = format!("{name}-apikey-state");
        let state = (store == StoreKind::Kubernetes).then_some(state.as_str());
        let recorder = Recorder::start(&c, &name, &name, state);
        let scenario = scenario(&run, &name, policy);
        tokio::pin!(scenario);
        let outran = tokio::select! {
            _ = &mut scenario => true,
            _ = fired.wait_for(|f| *f >= 1) => false,
        };
        if outran && boundary == Boundary::Step {
            // The scenario sees the status the last step wrote; that step's end, where the
            // failpoint may fire, comes just after.
            failpoint.ended(LAST_STEP).await;
        }
        if outran && *fired.borrow() == 0 {
            eprintln!(
                "matrix {fault:?} at every {boundary:?} × {store:?} store × {issuer:?} issuer: {n} steps, invariants held at each"
            );
            return n;
        }
        match fault {
            Fault::Crash => {
                op.stop().await;
                op.start();
                if !outran {
                    scenario.await;
                }
                converged(&run, &name, n).await;
                recorder.check(&c, &name).await;
            }
            Fault::Refused | Fault::IssuerOutage => {
                let outage = fault == Fault::IssuerOutage;
                if !outran {
                    if outage {
                        run.issuer_outage(OUTAGE_REQUESTS);
                    }
                    scenario.await;
                    if outage {
                        // What is left of it would refuse the checker too.
                        run.issuer_outage(0);
                    }
                }
                converged(&run, &name, n).await;
                recorder.check(&c, &name).await;
            }
            Fault::StoreOutage => {
                if !outran {
                    run.store_outage(true, &op.t.cluster).await;
                    // Down until the operator meets the outage, unless the life is over
                    // before it needs the store again. (The Kubernetes store's outage is
                    // the API's: the consumer Secret's read may meet it first.)
                    let unavailable = |a: Option<&ApiKey>| {
                        let met = |reason| {
                            reason_is("Rotating", reason)(a) || reason_is("Ready", reason)(a)
                        };
                        met("StoreUnavailable") || met("KubernetesError")
                    };
                    let over = tokio::select! {
                        _ = &mut scenario => true,
                        _ = wait(run.apikeys(), &name, unavailable) => false,
                    };
                    run.store_outage(false, &op.t.cluster).await;
                    if !over {
                        scenario.await;
                    }
                }
                converged(&run, &name, n).await;
                recorder.check(&c, &name).await;
            }
            Fault::Delete(_) => {
                let apikeys = run.apikeys();
                apikeys
                    .delete(&name, &DeleteParams::default())
                    .await
                    .unwrap();
                // The held reconcile goes on from the ApiKey it read before the deletion.
                failpoint.release();
                wait_deleted(apikeys, &name).await;
                deleted(&run, &name, policy, n).await;
            }
        }
    }
    unreachable!("the loop returns once the scenario outruns the fault")
}

/// Created, Ready, rotated on request, and the rotation over (its previous key revoked).
async fn scenario(run: &Run<'_>, name: &str, policy: &str) {
    let apikeys = run.apikeys();
    apikeys
        .create(
            &Default::default(),
            &serde_json::from_value(run.apikey(name, policy)).unwrap(),
        )
        .await
        .unwrap();
    let first = current_id(&wait(apikeys.clone(), name, ready).await);
    request(&apikeys, name, "apikey.dev/rotate", "now").await;
    wait(apikeys, name, |a: Option<&ApiKey>| {
        a.is_some_and(|a| {
            current_id(a) != first
                && a.status.as_ref().is_some_and(|s| {
                    s.previous_key.is_none()
                        && s.pending_key.is_none()
                        && s.phase == Some(Phase::Ready)
                })
        })
    })
    .await;
}

/// After a crash: status, Secret, store and issuer hold the one current key, and nothing
/// else is valid or stored.
async fn converged(run: &Run<'_>, name: &str, step: usize) {
    let ak = run.apikeys().get(name).await.unwrap();
    let current = current_key(&ak).clone();
    let secret = Api::<Secret>::default_namespaced(run.client())
        .get(name)
        .await
        .unwrap();
    let offered = Run::offered(&secret);
    let material = offered
        .get(&current.id)
        .unwrap_or_else(|| panic!("step {step}: the Secret offers the current key"));
    assert_eq!(
        offered.len(),
        1,
        "step {step}: the Secret offers one key once the rotation is over"
    );
    assert_eq!(
        fingerprint(&SecretString::from(material.clone())),
        current.fingerprint,
        "step {step}: the Secret's material is the key status records"
    );
    let held = run
        .held_in_store(name)
        .await
        .unwrap_or_else(|| panic!("step {step}: the store entry exists"));
    agree(&held, &secret, step);
    if let Some(valid) = run.valid_at_issuer(name).await {
        assert_eq!(
            valid,
            BTreeSet::from([current.id.clone()]),
            "step {step}: the issuer accepts exactly that key (none orphaned, none lost)"
        );
    }
    assert!(
        run.accepts(&current.id, material).await,
        "step {step}: the Secret's key works at the issuer"
    );
}

/// After a deletion: under `Revoke` nothing is left valid or stored; under `Retain` the
/// released Secret's keys are exactly the valid ones, and the store holds exactly those.
async fn deleted(run: &Run<'_>, name: &str, policy: &str, step: usize) {
    let secrets = Api::<Secret>::default_namespaced(run.client());
    if policy == "Revoke" {
        if let Some(valid) = run.valid_at_issuer(name).await {
            assert!(valid.is_empty(), "step {step}: keys left valid: {valid:?}");
        }
        wait_deleted(secrets.clone(), name).await;
        if run.store() == StoreKind::Kubernetes {
            // The state Secret goes with its owner, through the garbage collector.
            wait_deleted(secrets, &format!("{name}-apikey-state")).await;
        }
        let left = run.held_in_store(name).await.map(|h| fingerprints(&h.keys));
        assert_eq!(left, None, "step {step}: the store entry is gone");
        return;
    }
    let released = secrets.get_opt(name).await.unwrap();
    let offered = released.as_ref().map(Run::offered).unwrap_or_default();
    if let Some(s) = &released {
        assert!(s.owner_references().is_empty(), "step {step}: released");
    }
    if let Some(valid) = run.valid_at_issuer(name).await {
        let ids: BTreeSet<String> = offered.keys().cloned().collect();
        assert_eq!(valid, ids, "step {step}: the valid keys are the Secret's");
    }
    let held = run.held_in_store(name).await;
    match (&released, held) {
        (Some(secret), Some(held)) => agree(&held, secret, step),
        (None, held) => assert!(
            held.is_none_or(|h| h.keys.is_empty()),
            "step {step}: no Secret, and no key kept in the store"
        ),
        (Some(_), None) => panic!("step {step}: the store entry is kept"),
    }
    for (id, material) in &offered {
        assert!(
            run.accepts(id, material).await,
            "step {step}: the Secret's key {id} works"
        );
    }
}

/// The store holds exactly the keys the Secret offers, in the slots the Secret shows them.
fn agree(held: &Stored, secret: &Secret, step: usize) {
    assert_eq!(
        fingerprints(&held.keys),
        fingerprints(&Run::offered(secret)),
        "step {step}: the store holds exactly the Secret's keys"
    );
    if let Some(slots) = &held.slots {
        let shown = (
            data(secret, "api-key-id"),
            data(secret, "api-key-id-previous"),
        );
        assert_eq!(
            slots, &shown,
            "step {step}: the store's current and previous are the Secret's"
        );
    }
}

/// Key id → fingerprint: what a failed assertion may print (never the key).
fn fingerprints(keys: &Keys) -> BTreeMap<String, String> {
    keys.iter()
        .map(|(id, material)| {
            (
                id.clone(),
                fingerprint(&SecretString::from(material.clone())),
            )
        })
        .collect()
}

/// One test per cell: the names read as the matrix.
macro_rules! matrix {
    ($fault:ident at $boundary:ident, $how:expr; $($test:ident => $store:ident, $issuer:ident;)*) => {
        mod $fault {
            use super::*;
            $(
                #[tokio::test]
                async fn $test() {
                    let steps = at_every_step(
                        StoreKind::$store,
                        IssuerKind::$issuer,
                        Boundary::$boundary,
                        $how,
                    )
                    .await;
                    assert!(steps >= 8, "a key's life has several steps; covered {steps}");
                }
            )*
        }
    };
}

/// Every store × issuer: where crashes are run.
macro_rules! every_cell {
    ($($config:tt)*) => {
        matrix! { $($config)*;
            kubernetes_store_generate_issuer => Kubernetes, Generate;
            kubernetes_store_http_issuer => Kubernetes, Http;
            kubernetes_store_aws_iam_issuer => Kubernetes, AwsIam;
            vault_store_generate_issuer => Vault, Generate;
            vault_store_http_issuer => Vault, Http;
            vault_store_aws_iam_issuer => Vault, AwsIam;
            aws_store_generate_issuer => Aws, Generate;
            aws_store_http_issuer => Aws, Http;
            aws_store_aws_iam_issuer => Aws, AwsIam;
        }
    };
}

/// Every store with the http issuer, and the awsIam issuer with one store: where
/// deletions are run (`generate` keeps no record to check after one).
macro_rules! deletion_cells {
    ($($config:tt)*) => {
        matrix! { $($config)*;
            kubernetes_store_http_issuer => Kubernetes, Http;
            kubernetes_store_aws_iam_issuer => Kubernetes, AwsIam;
            vault_store_http_issuer => Vault, Http;
            aws_store_http_issuer => Aws, Http;
        }
    };
}

/// Every store's outage (OpenBao sealed, Secrets Manager unreachable, the Kubernetes API
/// refusing Secrets), with an issuer that keeps no record and one that does.
macro_rules! store_outage_cells {
    ($($config:tt)*) => {
        matrix! { $($config)*;
            kubernetes_store_generate_issuer => Kubernetes, Generate;
            kubernetes_store_http_issuer => Kubernetes, Http;
            vault_store_generate_issuer => Vault, Generate;
            vault_store_http_issuer => Vault, Http;
            aws_store_generate_issuer => Aws, Generate;
            aws_store_http_issuer => Aws, Http;
        }
    };
}

/// Every store with the issuer that can have an outage (the reference issuer).
macro_rules! http_issuer_cells {
    ($($config:tt)*) => {
        matrix! { $($config)*;
            kubernetes_store_http_issuer => Kubernetes, Http;
            vault_store_http_issuer => Vault, Http;
            aws_store_http_issuer => Aws, Http;
        }
    };
}

every_cell!(crash at StatusWrite, Fault::Crash);
every_cell!(refused at StatusWrite, Fault::Refused);
http_issuer_cells!(issuer_outage at StatusWrite, Fault::IssuerOutage);
store_outage_cells!(store_outage at StatusWrite, Fault::StoreOutage);
every_cell!(crash_after_steps at Step, Fault::Crash);
deletion_cells!(delete_with_revoke at StatusWrite, Fault::Delete("Revoke"));
deletion_cells!(delete_with_retain at StatusWrite, Fault::Delete("Retain"));
deletion_cells!(delete_with_revoke_after_steps at Step, Fault::Delete("Revoke"));
deletion_cells!(delete_with_retain_after_steps at Step, Fault::Delete("Retain"));
