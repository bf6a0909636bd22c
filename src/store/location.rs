//! Where an ApiKey's entry lives in an external store: `<prefix>/<namespace>/<name>` by
//! default. Tenants choose paths, so a path is checked here before any store sees it.

/// Whether the store is namespaced (a tenant's `KeyStore`) or cluster-wide.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    Namespaced,
    Cluster,
}

/// The entry's path below the store's prefix. For a namespaced store the namespace is
/// always the first segment, whatever `path` says: `path` replaces only the name there,
/// and `<namespace>/<name>` for a cluster-wide store.
pub fn entry_path(
    scope: Scope,
    namespace: &str,
    name: &str,
    path: Option<&str>,
) -> Result<String, String> {
    if let Some(p) = path {
        check(p)?;
    }
    Ok(match (scope, path) {
        (Scope::Namespaced, Some(p)) => format!("{namespace}/{p}"),
        (Scope::Cluster, Some(p)) => p.to_string(),
        (_, None) => format!("{namespace}/{name}"),
    })
}

/// A relative path of safe segments: no `..` to climb out of the prefix, no leading `/`
/// to escape it, no empty segment for a store to fold.
pub fn check(path: &str) -> Result<(), String> {
    let bad = |why: &str| Err(format!("storeRef.path {path:?} {why}"));
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') {
        return bad("must be relative (no leading '/')");
    }
    for segment in path.split('/') {
        match segment {
            "" => return bad("has an empty segment ('//' or a trailing '/')"),
            "." | ".." => return bad("must not contain '.' or '..' segments"),
            s if !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) =>
            {
                return bad("may hold only letters, digits, '.', '_', '-' and '/'");
            }
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_to_namespace_and_name() {
        for scope in [Scope::Namespaced, Scope::Cluster] {
            assert_eq!(
                entry_path(scope, "team-a", "widgets", None).unwrap(),
                "team-a/widgets"
            );
        }
    }

    #[test]
    fn a_namespaced_store_keeps_the_namespace_segment() {
        assert_eq!(
            entry_path(Scope::Namespaced, "team-a", "w", Some("team-b/widgets")).unwrap(),
            "team-a/team-b/widgets"
        );
        assert_eq!(
            entry_path(Scope::Cluster, "team-a", "w", Some("shared/widgets")).unwrap(),
            "shared/widgets"
        );
    }

    #[test]
    fn refuses_paths_that_escape_or_fold() {
        for p in [
            "", "/abs", "a//b", "a/", "..", "a/../b", "./a", "a b", "a/ü", "a\\b",
        ] {
            let e = entry_path(Scope::Cluster, "ns", "n", Some(p)).unwrap_err();
            assert!(e.starts_with("storeRef.path"), "{p:?}: {e}");
        }
        for p in ["a", "a.b/c-d_e", "...", ".hidden", "..x"] {
            check(p).unwrap_or_else(|e| panic!("{p:?}: {e}"));
        }
    }
}
