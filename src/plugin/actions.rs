//! The requests `kubectl apikey` makes: annotations the operator acts on once per value,
//! and `spec.suspend`.

use std::io::{BufRead, Write};

use futures::{StreamExt, TryStreamExt};
use kube::api::{Patch, PatchParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};
use serde_json::json;

use super::get;
use crate::api::apikey::{ApiKey, Phase, annotations};

/// Our writes show as this field manager (not `apikey-operator`: a person asked).
const MANAGER: &str = "kubectl-apikey";

pub struct Rotate {
    pub emergency: bool,
    /// `--yes`: an emergency rotation needs no typed confirmation.
    pub confirmed: bool,
    /// `--wait`, for at most this long.
    pub wait: Option<std::time::Duration>,
}

pub async fn rotate(
    api: &Api<ApiKey>,
    name: &str,
    how: Rotate,
    out: &mut impl Write,
) -> Result<(), String> {
    let ak = get(api, name).await?;
    if ak.spec.suspend && !how.emergency {
        return Err(format!(
            "ApiKey {name:?} is suspended: it rotates only in an emergency (--emergency), or run `kubectl apikey resume {name}` first"
        ));
    }
    let started_from = ak.status.as_ref().map_or(0, |s| s.rotation_count);
    let annotation = if how.emergency {
        if !how.confirmed {
            confirm_emergency(&ak, out)?;
        }
        annotations::EMERGENCY_ROTATE
    } else {
        annotations::ROTATE
    };
    annotate(api, name, annotation).await?;
    let what = if how.emergency {
        "emergency rotation"
    } else {
        "rotation"
    };
    say(
        out,
        &format!("apikey.apikey.dev/{name}: {what} requested\n"),
    )?;
    match how.wait {
        Some(timeout) => tokio::time::timeout(timeout, follow(api, name, started_from, out))
            .await
            .map_err(|_| format!("the rotation did not finish within {timeout:?}; see `kubectl apikey status {name}`"))?,
        None => Ok(()),
    }
}

pub async fn revoke_previous(
    api: &Api<ApiKey>,
    name: &str,
    out: &mut impl Write,
) -> Result<(), String> {
    let ak = get(api, name).await?;
    let Some(previous) = ak.status.as_ref().and_then(|s| s.previous_key.as_ref()) else {
        return Err(format!(
            "ApiKey {name:?} has no previous key: there is no overlap to end"
        ));
    };
    annotate(api, name, annotations::REVOKE_PREVIOUS).await?;
    say(
        out,
        &format!(
            "apikey.apikey.dev/{name}: revocation of previous key {} requested\n",
            previous.id
        ),
    )
}

pub async fn suspend(
    api: &Api<ApiKey>,
    name: &str,
    suspend: bool,
    out: &mut impl Write,
) -> Result<(), String> {
    get(api, name).await?;
    let patch = json!({"spec": {"suspend": suspend}});
    api.patch(name, &params(), &Patch::Merge(&patch))
        .await
        .map_err(|e| e.to_string())?;
    let done = if suspend { "suspended" } else { "resumed" };
    say(out, &format!("apikey.apikey.dev/{name} {done}\n"))
}

/// Each request is a new annotation value (the time), so the operator acts on it once.
async fn annotate(api: &Api<ApiKey>, name: &str, annotation: &str) -> Result<(), String> {
    let value = jiff::Timestamp::now().to_string();
    let patch = json!({"metadata": {"annotations": {annotation: value}}});
    api.patch(name, &params(), &Patch::Merge(&patch))
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn params() -> PatchParams {
    PatchParams {
        field_manager: Some(MANAGER.into()),
        ..PatchParams::default()
    }
}

/// An emergency rotation revokes the current key without overlap: the user types the
/// ApiKey's name, as `gh repo delete` asks for the repository's.
fn confirm_emergency(ak: &ApiKey, out: &mut impl Write) -> Result<(), String> {
    let key = ak
        .status
        .as_ref()
        .and_then(|s| s.current_key.as_ref())
        .map_or("-".to_string(), |k| k.id.clone());
    say(
        out,
        &format!(
            "Emergency rotation of {}/{}: its current key {key} is revoked as soon as its successor is\ndistributed, without an overlap; pods still using it will fail.\nType the ApiKey's name to confirm: ",
            ak.namespace().unwrap_or_default(),
            ak.name_any()
        ),
    )?;
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| e.to_string())?;
    if answer.trim() != ak.name_any() {
        return Err("not confirmed: nothing was changed (--yes skips the question)".into());
    }
    Ok(())
}

/// Prints each step of the rotation after `started_from` until its key is distributed
/// and its consumers have rolled out (or it fails or blocks).
async fn follow(
    api: &Api<ApiKey>,
    name: &str,
    started_from: u64,
    out: &mut impl Write,
) -> Result<(), String> {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let mut changes = watcher(api.clone(), config).applied_objects().boxed();
    let mut last = String::new();
    while let Some(ak) = changes.try_next().await.map_err(|e| e.to_string())? {
        let Some(s) = ak.status.as_ref() else {
            continue;
        };
        let rotating = s
            .conditions
            .iter()
            .find(|c| c.type_ == "Rotating")
            .map(|c| format!("{}: {}", c.reason, c.message))
            .unwrap_or_default();
        let phase = s.phase.map(|p| format!("{p:?}")).unwrap_or_default();
        let line = format!("{phase:<12} {rotating}");
        if line != last {
            say(
                out,
                &format!("{}  {line}\n", jiff::Timestamp::now().strftime("%H:%M:%S")),
            )?;
            last = line;
        }
        let ours = s.rotation_count > started_from && s.pending_key.is_none();
        match s.phase {
            Some(Phase::Failed) => {
                let ready = s.conditions.iter().find(|c| c.type_ == "Ready");
                return Err(ready.map_or("the rotation failed".into(), |c| c.message.clone()));
            }
            Some(Phase::Blocked) if ours => {
                return Err(format!(
                    "a consumer will not roll out by itself: both keys stay valid; see `kubectl apikey status {name}`"
                ));
            }
            Some(Phase::Overlapping | Phase::Ready) if ours => {
                let key = s.current_key.as_ref().map_or("-", |k| k.id.as_str());
                return say(out, &format!("rotated: {name} now uses key {key}\n"));
            }
            _ => {}
        }
    }
    Err("the watch ended before the rotation finished".into())
}

fn say(out: &mut impl Write, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes())
        .and_then(|_| out.flush())
        .map_err(|e| e.to_string())
}
