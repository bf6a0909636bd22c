//! Watch streams: newline-delimited `{"type", "object"}` events from a resourceVersion,
//! with bookmarks, selector transitions, timeouts, and the in-stream 410 `ERROR` event
//! kube-apiserver sends when the requested resourceVersion is no longer retained.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::Stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::{Instant, Interval};

use super::apiserver::{ApiServer, Filter, present};
use super::errors::{ApiError, ApiResult};
use super::resources::ResourceType;
use super::store::{Change, ChangeKind};
use super::table::{self, IncludeObject};

/// How each event's object is rendered (content negotiation on the watch request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Object,
    Metadata,
    Table(IncludeObject),
}

pub struct WatchRequest {
    pub rt: Arc<ResourceType>,
    pub filter: Filter,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
    pub send_initial_events: bool,
    pub bookmarks: bool,
    pub timeout: Duration,
    pub format: Format,
}

struct WatchState {
    pending: VecDeque<Bytes>,
    rx: broadcast::Receiver<Arc<Change>>,
    req: WatchRequest,
    last_rv: u64,
    bookmarks: Interval,
    deadline: Instant,
    cut: tokio::sync::watch::Receiver<u64>,
    table_headers_sent: bool,
    finished: bool,
}

#[derive(serde::Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    event_type: &'a str,
    object: &'a Value,
}

fn line(event_type: &str, object: &Value) -> Bytes {
    let mut s =
        serde_json::to_string(&Event { event_type, object }).expect("JSON values serialize");
    s.push('\n');
    Bytes::from(s)
}

/// The same line as `line`, around an object already serialized.
fn line_around(event_type: &str, object: &[u8]) -> Bytes {
    let mut s = Vec::with_capacity(object.len() + 32);
    s.extend_from_slice(br#"{"type":""#);
    s.extend_from_slice(event_type.as_bytes());
    s.extend_from_slice(br#"","object":"#);
    s.extend_from_slice(object);
    s.extend_from_slice(b"}\n");
    Bytes::from(s)
}

/// A change's object, serialized once per resource type it is watched as and shared by
/// every watcher of that type, as kube-apiserver's watch cache shares one serialization
/// (`cachingObject`) among its watchers instead of encoding an event once per watcher.
#[derive(Default)]
pub struct Serialized(Mutex<Vec<(Arc<ResourceType>, Bytes)>>);

impl std::fmt::Debug for Serialized {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Serialized")
    }
}

impl Serialized {
    fn get_or_render(&self, rt: &Arc<ResourceType>, object: &Value) -> Bytes {
        let mut done = self.0.lock().expect("lock");
        if let Some((_, bytes)) = done.iter().find(|(r, _)| Arc::ptr_eq(r, rt)) {
            return bytes.clone();
        }
        let bytes =
            Bytes::from(serde_json::to_vec(&present(rt, object)).expect("JSON values serialize"));
        done.push((rt.clone(), bytes.clone()));
        bytes
    }
}

fn expired_event(rv: u64, oldest: u64) -> Bytes {
    let status =
        ApiError::expired(format!("too old resource version: {rv} ({oldest})")).to_status();
    line("ERROR", &status)
}

impl WatchState {
    fn render(&mut self, object: Value) -> Value {
        match self.req.format {
            Format::Object => object,
            Format::Metadata => table::partial_object_metadata(&object),
            Format::Table(include) => {
                let headers = !self.table_headers_sent;
                self.table_headers_sent = true;
                let rv = object
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string();
                table::render(
                    &self.req.rt,
                    std::slice::from_ref(&object),
                    include,
                    &rv,
                    None,
                    headers,
                )
            }
        }
    }

    /// Turns a stored change into what this watcher sees, if anything.
    fn event_for(&mut self, change: &Change) -> Option<Bytes> {
        if change.key != self.req.rt.storage {
            return None;
        }
        let (rt, filter) = (&self.req.rt, &self.req.filter);
        let now_matches = filter.matches_stored(rt, &change.object);
        let was_matching = change
            .previous
            .as_ref()
            .map(|p| filter.matches_stored(rt, p));
        let event_type = match (change.kind, was_matching, now_matches) {
            (ChangeKind::Added, _, true) => "ADDED",
            (ChangeKind::Modified, Some(true), true) => "MODIFIED",
            (ChangeKind::Modified, _, true) => "ADDED",
            (ChangeKind::Modified, Some(true), false) => {
                // Leaving the selection: the last state the watcher matched, at this rv.
                let mut last = present(&self.req.rt, change.previous.as_ref()?);
                last["metadata"]["resourceVersion"] = json!(change.rv.to_string());
                let rendered = self.render(last);
                return Some(line("DELETED", &rendered));
            }
            (ChangeKind::Deleted, _, true) => "DELETED",
            _ => return None,
        };
        if self.req.format == Format::Object {
            let object = change.serialized.get_or_render(rt, &change.object);
            return Some(line_around(event_type, &object));
        }
        let rendered = self.render(present(&self.req.rt, &change.object));
        Some(line(event_type, &rendered))
    }

    fn bookmark(&self, annotations: Option<Value>) -> Bytes {
        let mut metadata = json!({"resourceVersion": self.last_rv.to_string()});
        if let Some(a) = annotations {
            metadata["annotations"] = a;
        }
        line(
            "BOOKMARK",
            &json!({"kind": self.req.rt.kind, "apiVersion": self.req.rt.api_version(), "metadata": metadata}),
        )
    }

    async fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if let Some(l) = self.pending.pop_front() {
                return Some(l);
            }
            if self.finished {
                return None;
            }
            tokio::select! {
                received = self.rx.recv() => match received {
                    Ok(change) => {
                        self.last_rv = self.last_rv.max(change.rv);
                        if let Some(l) = self.event_for(&change) {
                            return Some(l);
                        }
                    }
                    Err(RecvError::Lagged(_)) => {
                        // This watcher fell too far behind: like etcd compaction, it must relist.
                        self.finished = true;
                        return Some(expired_event(self.last_rv, self.last_rv));
                    }
                    Err(RecvError::Closed) => return None,
                },
                _ = self.bookmarks.tick(), if self.req.bookmarks => {
                    return Some(self.bookmark(None));
                }
                _ = tokio::time::sleep_until(self.deadline) => return None,
                _ = self.cut.changed() => return None,
            }
        }
    }
}

pub fn start(
    api: &ApiServer,
    req: WatchRequest,
    bookmark_interval: Duration,
    cut: tokio::sync::watch::Receiver<u64>,
) -> ApiResult<impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static> {
    let requested: Option<u64> = match req.resource_version.as_deref() {
        None | Some("") | Some("0") => None,
        Some(v) => Some(
            v.parse()
                .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
        ),
    };
    if req.send_initial_events {
        if req.resource_version_match.as_deref() != Some("NotOlderThan") {
            return Err(ApiError::invalid(
                "ListOptions",
                "",
                &[super::errors::FieldError::forbidden(
                    "resourceVersionMatch",
                    "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
                )],
            ));
        }
        if !req.bookmarks {
            return Err(ApiError::invalid(
                "ListOptions",
                "",
                &[super::errors::FieldError::forbidden(
                    "allowWatchBookmarks",
                    "sendInitialEvents requires setting allowWatchBookmarks to true",
                )],
            ));
        }
    } else if req.resource_version_match.is_some() {
        return Err(ApiError::bad_request(
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        ));
    }
    let mut pending = VecDeque::new();
    let st = api.lock();
    let current = st.store.current_rv();
    if let Some(rv) = requested
        && rv > current
    {
        return Err(ApiError::too_large_resource_version(rv, current));
    }
    let rx = st.store.subscribe();
    let mut expired = None;
    let initial: Vec<Value> = match requested {
        Some(rv) if !req.send_initial_events => match st.store.changes_since(rv) {
            Some(changes) => {
                drop(st);
                let mut s = WatchState::new(req, rx, VecDeque::new(), rv, bookmark_interval, cut);
                for c in &changes {
                    if let Some(l) = s.event_for(c) {
                        s.pending.push_back(l);
                    }
                }
                s.last_rv = current;
                return Ok(into_stream(s));
            }
            None => {
                expired = Some((rv, st.store.compacted_rv()));
                Vec::new()
            }
        },
        _ => st
            .store
            .list(&req.rt.storage, req.filter.namespace.as_deref())
            .iter()
            .map(|o| present(&req.rt, o))
            .filter(|o| req.filter.matches(o))
            .collect(),
    };
    drop(st);
    let send_initial = req.send_initial_events;
    let mut s = WatchState::new(req, rx, VecDeque::new(), current, bookmark_interval, cut);
    if let Some((rv, oldest)) = expired {
        pending.push_back(expired_event(rv, oldest));
        s.finished = true;
    }
    for o in initial {
        let rendered = s.render(o);
        pending.push_back(line("ADDED", &rendered));
    }
    if send_initial {
        pending.push_back(s.bookmark(Some(json!({"k8s.io/initial-events-end": "true"}))));
    }
    s.pending = pending;
    Ok(into_stream(s))
}

impl WatchState {
    fn new(
        req: WatchRequest,
        rx: broadcast::Receiver<Arc<Change>>,
        pending: VecDeque<Bytes>,
        last_rv: u64,
        bookmark_interval: Duration,
        cut: tokio::sync::watch::Receiver<u64>,
    ) -> Self {
        let mut bookmarks =
            tokio::time::interval_at(Instant::now() + bookmark_interval, bookmark_interval);
        bookmarks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let deadline = Instant::now() + req.timeout;
        WatchState {
            pending,
            rx,
            req,
            last_rv,
            bookmarks,
            deadline,
            cut,
            table_headers_sent: false,
            finished: false,
        }
    }
}

fn into_stream(s: WatchState) -> impl Stream<Item = Result<Bytes, Infallible>> + Send + 'static {
    futures::stream::unfold(s, |mut s| async move {
        let l = s.next_line().await?;
        Some((Ok(l), s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_serialization_makes_the_line_a_watcher_would_make_alone() {
        let object = json!({"metadata": {"name": "a", "labels": {"q": "\"\n"}}, "data": [1]});
        let serialized = serde_json::to_vec(&object).unwrap();
        for event_type in ["ADDED", "MODIFIED", "DELETED"] {
            assert_eq!(
                line_around(event_type, &serialized),
                line(event_type, &object)
            );
        }
    }
}
