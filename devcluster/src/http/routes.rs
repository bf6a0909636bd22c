//! Kubernetes REST paths: what a request path names.

pub(super) enum Route {
    Root,
    Version,
    Health,
    Metrics,
    CoreVersions,
    Groups,
    Group(String),
    GroupVersion(String, String),
    OpenApiV2,
    OpenApiV3Index,
    OpenApiV3(String, String),
    OpenIdConfiguration,
    Jwks,
    Resource(ResourcePath),
}

pub(super) struct ResourcePath {
    pub(super) group: String,
    pub(super) version: String,
    pub(super) plural: String,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) subresource: Option<String>,
    pub(super) legacy_watch: bool,
}

pub(super) fn parse_route(path: &str) -> Option<Route> {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let owned = |s: &str| s.to_string();
    Some(match segs.as_slice() {
        [] => Route::Root,
        ["version"] => Route::Version,
        ["healthz" | "readyz" | "livez", ..] => Route::Health,
        ["metrics"] => Route::Metrics,
        ["api"] => Route::CoreVersions,
        ["api", v] => Route::GroupVersion(String::new(), owned(v)),
        ["api", v, rest @ ..] => Route::Resource(parse_resource("", v, rest)?),
        ["apis"] => Route::Groups,
        ["apis", g] => Route::Group(owned(g)),
        ["apis", g, v] => Route::GroupVersion(owned(g), owned(v)),
        ["apis", g, v, rest @ ..] => Route::Resource(parse_resource(g, v, rest)?),
        [".well-known", "openid-configuration"] => Route::OpenIdConfiguration,
        ["openid", "v1", "jwks"] => Route::Jwks,
        ["openapi", "v2"] => Route::OpenApiV2,
        ["openapi", "v3"] => Route::OpenApiV3Index,
        ["openapi", "v3", "api", v] => Route::OpenApiV3(String::new(), owned(v)),
        ["openapi", "v3", "apis", g, v] => Route::OpenApiV3(owned(g), owned(v)),
        _ => return None,
    })
}

pub(super) fn parse_resource(group: &str, version: &str, rest: &[&str]) -> Option<ResourcePath> {
    let (legacy_watch, rest) = match rest {
        ["watch", r @ ..] => (true, r),
        r => (false, r),
    };
    let namespaced = rest.len() >= 3
        && rest[0] == "namespaces"
        && !(rest.len() == 3 && matches!(rest[2], "status" | "finalize"));
    let (namespace, rest) = if namespaced {
        (Some(rest[1].to_string()), &rest[2..])
    } else {
        (None, rest)
    };
    let (plural, name, subresource) = match rest {
        [p] => (p, None, None),
        [p, n] => (p, Some(n.to_string()), None),
        [p, n, s] => (p, Some(n.to_string()), Some(s.to_string())),
        _ => return None,
    };
    Some(ResourcePath {
        group: group.into(),
        version: version.into(),
        plural: plural.to_string(),
        namespace,
        name,
        subresource,
        legacy_watch,
    })
}
