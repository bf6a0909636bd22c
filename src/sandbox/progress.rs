//! The sandbox's live summary: one line per step of every rotation, and what each
//! finished rotation changed, as the ApiKeys' status tells it.

use std::collections::HashMap;
use std::io::Write;

use futures::{StreamExt, TryStreamExt};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use crate::api::apikey::ApiKey;

/// What was last reported of one ApiKey.
#[derive(Default, PartialEq)]
struct Seen {
    phase: String,
    current: Option<String>,
    previous: Option<String>,
}

pub async fn report(client: Client) {
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut changes = watcher(Api::<ApiKey>::all(client), watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .boxed();
    while let Ok(Some(ak)) = changes.try_next().await {
        let Some(status) = &ak.status else { continue };
        let name = format!("{}/{}", ak.namespace().unwrap_or_default(), ak.name_any());
        let now = Seen {
            phase: status.phase.map(|p| format!("{p:?}")).unwrap_or_default(),
            current: status.current_key.as_ref().map(|k| k.id.clone()),
            previous: status.previous_key.as_ref().map(|k| k.id.clone()),
        };
        let before = seen.remove(&name).unwrap_or_default();
        let mut lines = vec![];
        let rotation = status
            .pending_key
            .as_ref()
            .map_or(status.rotation_count, |p| p.rotation);
        if now.phase != before.phase {
            lines.push(format!("rotation {rotation}: {}", now.phase));
        }
        if now.current != before.current
            && let Some(new) = &now.current
        {
            let from = before.current.as_deref().unwrap_or("none");
            lines.push(format!("rotated: key {from} -> {new}"));
        }
        if let (Some(old), None) = (&before.previous, &now.previous) {
            lines.push(format!("revoked the previous key {old}"));
        }
        let mut out = std::io::stdout();
        for line in lines {
            let at = jiff::Timestamp::now().strftime("%H:%M:%S");
            let _ = writeln!(out, "{at}  {name}  {line}");
        }
        let _ = out.flush();
        seen.insert(name, now);
    }
}
