//! `kubectl apikey status` and `history`: what status and events say, laid out for people.

use std::io::Write;

use k8s_openapi::api::core::v1::Event;
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};

use super::get;
use crate::api::apikey::{ApiKey, ApiKeyStatus, IssuerKind, KeyStatus, StoreRecord};

/// One line per ApiKey, as `kubectl get` lays out tables.
pub async fn table(api: &Api<ApiKey>, all: bool, out: &mut impl Write) -> Result<(), String> {
    let list = api
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?;
    if list.items.is_empty() {
        let place = match api.namespace() {
            Some(ns) if !all => format!(" in namespace {ns:?}"),
            _ => String::new(),
        };
        return write(out, &format!("No ApiKeys found{place}.\n"));
    }
    let now = jiff::Timestamp::now();
    let mut rows = vec![];
    for ak in &list.items {
        let s = ak.status.clone().unwrap_or_default();
        let rolled = s.consumers.iter().filter(|c| c.rolled_out).count();
        let mut row = vec![];
        if all {
            row.push(ak.namespace().unwrap_or_default());
        }
        row.extend([
            ak.name_any(),
            s.phase
                .map(|p| format!("{p:?}"))
                .unwrap_or_else(|| "-".into()),
            key_cell(s.current_key.as_ref(), now),
            key_cell(s.previous_key.as_ref(), now),
            s.next_rotation_time
                .as_deref()
                .map_or("-".into(), |t| relative(t, now)),
            format!("{rolled}/{}", s.consumers.len()),
            store_name(ak),
            issuer_name(ak),
        ]);
        rows.push(row);
    }
    let mut header = vec![];
    if all {
        header.push("NAMESPACE");
    }
    header.extend([
        "NAME",
        "PHASE",
        "CURRENT",
        "PREVIOUS",
        "NEXT",
        "ROLLED-OUT",
        "STORE",
        "ISSUER",
    ]);
    let header: Vec<String> = header.into_iter().map(String::from).collect();
    write(out, &columns(&header, &rows))
}

/// Everything about one ApiKey.
pub async fn detail(api: &Api<ApiKey>, name: &str, out: &mut impl Write) -> Result<(), String> {
    let ak = get(api, name).await?;
    let s = ak.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut text = format!(
        "ApiKey {}/{}\n  Phase:     {}\n  Issuer:    {}\n  Store:     {}\n  Secret:    {}\n",
        ak.namespace().unwrap_or_default(),
        ak.name_any(),
        s.phase
            .map(|p| format!("{p:?}"))
            .unwrap_or_else(|| "-".into()),
        issuer_name(&ak),
        store_name(&ak),
        crate::controller::secret::secret_name(&ak),
    );
    text += &key_lines("Current", s.current_key.as_ref(), now);
    text += &key_lines("Previous", s.previous_key.as_ref(), now);
    if let Some(p) = &s.pending_key {
        text += &format!(
            "  Pending:   rotation {} (attempt {}), started {}{}\n",
            p.rotation,
            p.attempt,
            relative(&p.started_at, now),
            p.id.as_deref()
                .map_or(String::new(), |id| format!(", key {id}")),
        );
    }
    text += &format!(
        "  Rotations: {} (next {}{})\n",
        s.rotation_count,
        s.next_rotation_time
            .as_deref()
            .map_or("-".into(), |t| relative(t, now)),
        if ak.spec.suspend { ", suspended" } else { "" },
    );
    if !s.consumers.is_empty() {
        text += "  Consumers:\n";
        for c in &s.consumers {
            let state = match (c.rolled_out, &c.message) {
                (true, _) => "rolled out".to_string(),
                (false, Some(m)) => format!("not yet: {m}"),
                (false, None) => "not yet".to_string(),
            };
            text += &format!("    {:?}/{}: {state}\n", c.kind, c.name);
        }
    }
    text += &conditions(&s);
    write(out, &text)
}

/// The keys the ApiKey held, newest first, then the events about it.
pub async fn history(
    client: &Client,
    api: &Api<ApiKey>,
    name: &str,
    out: &mut impl Write,
) -> Result<(), String> {
    let ak = get(api, name).await?;
    let s = ak.status.clone().unwrap_or_default();
    let now = jiff::Timestamp::now();
    let mut rows = vec![];
    let held = [s.current_key.as_ref(), s.previous_key.as_ref()];
    for k in held.into_iter().flatten() {
        let state = if Some(k) == s.current_key.as_ref() {
            "Current"
        } else {
            "Previous"
        };
        rows.push(vec![
            k.rotation.to_string(),
            k.id.clone(),
            k.fingerprint.clone(),
            relative(&k.issued_at, now),
            "-".into(),
            state.into(),
        ]);
    }
    let mut past = s.history.clone();
    past.sort_by_key(|h| std::cmp::Reverse(h.rotation));
    for h in past {
        rows.push(vec![
            h.rotation.to_string(),
            h.id,
            h.fingerprint,
            relative(&h.issued_at, now),
            h.revoked_at
                .as_deref()
                .map_or("-".into(), |t| relative(t, now)),
            h.reason,
        ]);
    }
    let header: Vec<String> = [
        "ROTATION",
        "KEY",
        "FINGERPRINT",
        "ISSUED",
        "REVOKED",
        "STATE",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    let mut text = columns(&header, &rows);
    let events: Api<Event> = Api::namespaced(client.clone(), &ak.namespace().unwrap_or_default());
    let about_it = |e: &Event| {
        e.involved_object.kind.as_deref() == Some("ApiKey")
            && e.involved_object.name.as_deref() == Some(ak.name_any().as_str())
    };
    let mut events: Vec<Event> = events
        .list(&ListParams::default())
        .await
        .map_err(|e| e.to_string())?
        .items
        .into_iter()
        .filter(about_it)
        .collect();
    events.sort_by_key(|e| e.last_timestamp.clone().map(|t| t.0));
    if !events.is_empty() {
        text += "\nEvents:\n";
        let rows: Vec<Vec<String>> = events
            .iter()
            .map(|e| {
                let at = e
                    .last_timestamp
                    .as_ref()
                    .map(|t| t.0.to_string())
                    .unwrap_or_default();
                vec![
                    relative(&at, now),
                    e.type_.clone().unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                    e.message.clone().unwrap_or_default(),
                ]
            })
            .collect();
        let header = ["WHEN", "TYPE", "REASON", "MESSAGE"]
            .map(String::from)
            .to_vec();
        text += &columns(&header, &rows);
    }
    write(out, &text)
}

fn key_cell(k: Option<&KeyStatus>, now: jiff::Timestamp) -> String {
    k.map_or("-".into(), |k| {
        format!("{} ({})", k.id, age(&k.issued_at, now))
    })
}

fn key_lines(label: &str, k: Option<&KeyStatus>, now: jiff::Timestamp) -> String {
    let Some(k) = k else {
        return String::new();
    };
    let mut line = format!(
        "  {label}:{:pad$}{} {} issued {} (rotation {})",
        "",
        k.id,
        k.fingerprint,
        relative(&k.issued_at, now),
        k.rotation,
        pad = 11usize.saturating_sub(label.len() + 1),
    );
    if let Some(t) = &k.revoke_after {
        line += &format!(", revoked {}", relative(t, now));
    }
    if let Some(t) = &k.last_used_at {
        line += &format!(", last used {}", relative(t, now));
    }
    line + "\n"
}

fn conditions(s: &ApiKeyStatus) -> String {
    if s.conditions.is_empty() {
        return String::new();
    }
    let mut text = "  Conditions:\n".to_string();
    for c in &s.conditions {
        text += &format!("    {}={} {}: {}\n", c.type_, c.status, c.reason, c.message);
    }
    text
}

fn issuer_name(ak: &ApiKey) -> String {
    let r = &ak.spec.issuer_ref;
    match r.kind {
        IssuerKind::KeyIssuer => format!("KeyIssuer/{}", r.name),
        IssuerKind::ClusterKeyIssuer => format!("ClusterKeyIssuer/{}", r.name),
    }
}

fn store_name(ak: &ApiKey) -> String {
    let recorded: Option<&StoreRecord> = ak
        .status
        .as_ref()
        .and_then(|s| s.current_key.as_ref())
        .and_then(|k| k.store.as_ref());
    match (recorded, &ak.spec.store_ref) {
        (Some(r), _) => format!("{}/{}", r.kind, r.name),
        (None, Some(r)) => format!("{:?}/{}", r.kind, r.name),
        (None, None) => "Kubernetes".into(),
    }
}

/// `5m ago`, `in 3h` (kubectl's age units).
fn relative(t: &str, now: jiff::Timestamp) -> String {
    let Ok(at) = t.parse::<jiff::Timestamp>() else {
        return t.to_string();
    };
    let seconds = now.as_second() - at.as_second();
    if seconds >= 0 {
        format!("{} ago", short(seconds))
    } else {
        format!("in {}", short(-seconds))
    }
}

fn age(t: &str, now: jiff::Timestamp) -> String {
    t.parse::<jiff::Timestamp>()
        .map(|at| short((now.as_second() - at.as_second()).max(0)))
        .unwrap_or_else(|_| "-".into())
}

fn short(seconds: i64) -> String {
    match seconds {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

/// Left-aligned columns three spaces apart, as kubectl prints them.
fn columns(header: &[String], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l += cell;
            } else {
                l += &format!("{cell:width$}   ", width = widths[i]);
            }
        }
        l + "\n"
    };
    let mut text = line(header);
    for row in rows {
        text += &line(row);
    }
    text
}

fn write(out: &mut impl Write, text: &str) -> Result<(), String> {
    out.write_all(text.as_bytes()).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_kubectl_ages() {
        let now: jiff::Timestamp = "2026-01-10T12:00:00Z".parse().unwrap();
        assert_eq!(relative("2026-01-10T11:59:30Z", now), "30s ago");
        assert_eq!(relative("2026-01-10T11:00:00Z", now), "60m ago");
        assert_eq!(relative("2026-01-12T12:00:00Z", now), "in 2d");
        assert_eq!(age("2026-01-09T12:00:00Z", now), "24h");
        assert_eq!(relative("not a time", now), "not a time");
    }

    #[test]
    fn columns_line_up() {
        let header = vec!["NAME".to_string(), "PHASE".to_string()];
        let rows = vec![vec!["billing".to_string(), "Ready".to_string()]];
        assert_eq!(
            columns(&header, &rows),
            "NAME      PHASE\nbilling   Ready\n"
        );
    }
}
