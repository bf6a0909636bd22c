//! HTTP clients for the servers stores and issuers talk to (Vault, issuer APIs): rustls
//! over ring (kube's crypto stack), trusting a `caBundle` where one is given.

use std::time::Duration;

/// A client for `server` (an http(s) URL), and the URL parsed. Errors say what is wrong
/// in words a spec's author can act on.
pub fn client(
    server: &str,
    ca_bundle: Option<&str>,
    timeout: Duration,
) -> Result<(reqwest::Client, url::Url), String> {
    let url = url::Url::parse(server)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| format!("{server:?} is not an http(s) URL"))?;
    // reqwest's rustls needs a process-wide crypto provider; ring is the one kube uses.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut http = reqwest::Client::builder()
        .timeout(timeout)
        .tls_backend_rustls();
    if url.scheme() == "http" {
        // No TLS to configure; an empty root set keeps reqwest from loading platform roots.
        http = http.tls_certs_only(Vec::new());
    } else if let Some(pem) = ca_bundle {
        let certs = reqwest::Certificate::from_pem_bundle(pem.as_bytes())
            .map_err(|_| "caBundle is not a PEM certificate bundle".to_string())?;
        http = http.tls_certs_merge(certs);
    }
    let http = http
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    Ok((http, url))
}
