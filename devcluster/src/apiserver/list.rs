//! Lists: selectors, pagination (continue tokens) and resourceVersion semantics.

use std::sync::Arc;

use serde_json::{Value, json};

use crate::errors::{ApiError, ApiResult};
use crate::resources::ResourceType;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::meta_str;

use super::*;

#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub resource_version: Option<String>,
    pub resource_version_match: Option<String>,
}

pub struct ListResult {
    pub items: Vec<Value>,
    pub resource_version: String,
    pub continue_token: Option<String>,
    pub remaining: Option<usize>,
}

/// Compiled selectors for filtering list and watch results.
pub struct Filter {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Filter {
    pub fn new(
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: Option<&str>,
        fields: Option<&str>,
    ) -> ApiResult<Self> {
        Ok(Filter {
            namespace: namespace.map(String::from),
            labels: LabelSelector::parse(labels.unwrap_or_default())
                .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?,
            fields: FieldSelector::parse(rt, fields.unwrap_or_default())
                .map_err(ApiError::bad_request)?,
        })
    }

    /// Matches a stored object, presented first only when a selector may read what the
    /// presentation changes (each watch event asks this, twice).
    pub fn matches_stored(&self, rt: &ResourceType, stored: &Value) -> bool {
        if self.labels.is_empty() && self.fields.is_empty() {
            return self
                .namespace
                .as_deref()
                .is_none_or(|ns| meta_str(stored, "namespace") == ns);
        }
        self.matches(&super::present(rt, stored))
    }

    /// Matches a presented (served-version) object.
    pub fn matches(&self, obj: &Value) -> bool {
        self.namespace
            .as_deref()
            .is_none_or(|ns| meta_str(obj, "namespace") == ns)
            && self.labels.matches(obj)
            && self.fields.matches(obj)
    }
}
impl ApiServer {
    pub fn list(
        &self,
        rt: &ResourceType,
        filter: &Filter,
        opts: &ListOptions,
    ) -> ApiResult<ListResult> {
        let mut st = self.lock();
        let current = st.store.current_rv();
        let scope = format!(
            "{}/{}/{}",
            rt.storage.group,
            rt.storage.resource,
            filter.namespace.as_deref().unwrap_or_default()
        );
        if let Some(token) = &opts.continue_token {
            if opts
                .resource_version
                .as_deref()
                .is_some_and(|v| !v.is_empty())
            {
                return Err(ApiError::bad_request(
                    "specifying resource version is not allowed when using continue",
                ));
            }
            let (id, offset, rv) = decode_continue(token)?;
            let (snap_rv, items) = st.store.snapshot(&scope, id).filter(|(r, _)| *r == rv).ok_or_else(|| {
                ApiError::expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.")
            })?;
            return Ok(page(
                &mut st,
                &scope,
                items,
                offset,
                opts.limit,
                snap_rv,
                Some(id),
            ));
        }
        let requested: Option<u64> = match opts.resource_version.as_deref() {
            None | Some("") | Some("0") => None,
            Some(v) => Some(
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resource version: {v}")))?,
            ),
        };
        let stored = match (requested, opts.resource_version_match.as_deref()) {
            (Some(rv), _) if rv > current => {
                return Err(ApiError::too_large_resource_version(rv, current));
            }
            (Some(rv), Some("Exact")) => st
                .store
                .list_at(&rt.storage, filter.namespace.as_deref(), rv)
                .ok_or_else(|| {
                    ApiError::expired(format!(
                        "too old resource version: {rv} ({})",
                        st.store.compacted_rv()
                    ))
                })?,
            (None, Some("Exact")) => {
                return Err(ApiError::bad_request(
                    "resourceVersionMatch \"Exact\" requires a resourceVersion",
                ));
            }
            _ => st.store.list(&rt.storage, filter.namespace.as_deref()),
        };
        let rv = match (requested, opts.resource_version_match.as_deref()) {
            (Some(rv), Some("Exact")) => rv,
            _ => current,
        };
        let items: Vec<Arc<Value>> = stored
            .into_iter()
            .map(|o| Arc::new(present(rt, &o)))
            .filter(|o| filter.matches(o))
            .collect();
        Ok(page(
            &mut st,
            &scope,
            Arc::new(items),
            0,
            opts.limit,
            rv,
            None,
        ))
    }
}

pub(super) fn page(
    st: &mut State,
    scope: &str,
    items: Arc<Vec<Arc<Value>>>,
    offset: usize,
    limit: Option<usize>,
    rv: u64,
    snapshot: Option<u64>,
) -> ListResult {
    let limit = limit.filter(|l| *l > 0).unwrap_or(usize::MAX);
    let end = offset.saturating_add(limit).min(items.len());
    let page_items = items[offset.min(end)..end]
        .iter()
        .map(|o| (**o).clone())
        .collect();
    let (continue_token, remaining) = if end < items.len() {
        let id = snapshot
            .unwrap_or_else(|| st.store.save_snapshot(scope.to_string(), rv, items.clone()));
        (Some(encode_continue(id, end, rv)), Some(items.len() - end))
    } else {
        (None, None)
    };
    ListResult {
        items: page_items,
        resource_version: rv.to_string(),
        continue_token,
        remaining,
    }
}

pub(super) fn encode_continue(id: u64, offset: usize, rv: u64) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(json!({"v": "devcluster/1", "id": id, "offset": offset, "rv": rv}).to_string())
}

pub(super) fn decode_continue(token: &str) -> ApiResult<(u64, usize, u64)> {
    use base64::Engine;
    let bad = || {
        ApiError::bad_request(
            "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)",
        )
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    Ok((
        v["id"].as_u64().ok_or_else(bad)?,
        v["offset"].as_u64().ok_or_else(bad)? as usize,
        v["rv"].as_u64().ok_or_else(bad)?,
    ))
}
