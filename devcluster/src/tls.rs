//! TLS, as every real API server serves it: a CA generated at start and a server
//! certificate for 127.0.0.1/localhost signed by it. The CA goes into the kubeconfig (as
//! kubeadm writes it), so kubectl sends credentials — clientcmd never sends them over
//! plain HTTP — and Vault/OpenBao Kubernetes auth can be given the CA. The admin also gets
//! a client certificate (CN kubernetes-admin, O system:masters) as kubeadm and kind issue
//! it, so clients that authenticate by TLS alone work too.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;

pub struct Certificates {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
    pub admin: ClientCertificate,
}

/// A client certificate the CA signed, with its key (PEM) and its DER to recognise it.
pub struct ClientCertificate {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

fn other<E: std::fmt::Display>(e: E) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub fn generate() -> std::io::Result<Certificates> {
    let ca_key = KeyPair::generate().map_err(other)?;
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "apikey-dev-ca");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca_cert = ca.self_signed(&ca_key).map_err(other)?;
    let issuer = Issuer::new(ca, ca_key);

    let key = KeyPair::generate().map_err(other)?;
    let mut params = CertificateParams::new(vec![
        "localhost".to_string(),
        "kubernetes.default.svc".to_string(),
    ])
    .map_err(other)?;
    params
        .subject_alt_names
        .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    let cert = params.signed_by(&key, &issuer).map_err(other)?;

    let admin_key = KeyPair::generate().map_err(other)?;
    let mut admin = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
    admin
        .distinguished_name
        .push(DnType::CommonName, "kubernetes-admin");
    admin
        .distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    admin.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let admin_cert = admin.signed_by(&admin_key, &issuer).map_err(other)?;

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).map_err(other)?;
    // A client certificate is optional: tokens and anonymous requests are served too.
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(other)?;
    let mut server = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(other)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(
            vec![cert.der().clone(), ca_cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )
        .map_err(other)?;
    server.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Certificates {
        ca_pem: ca_cert.pem(),
        server: Arc::new(server),
        admin: ClientCertificate {
            cert_pem: admin_cert.pem(),
            key_pem: admin_key.serialize_pem(),
            der: admin_cert.der().to_vec(),
        },
    })
}
