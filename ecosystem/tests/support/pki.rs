//! The test PKI shared by the TLS test binaries (`tests/tls.rs`,
//! `tests/futures_io_tls.rs`, `tests/hyper_tls.rs`, each including this
//! file with `#[path]`): a CA and a leaf certificate for "localhost" made
//! by rcgen when the binary first asks, never stored, and rustls's ring
//! provider.
#![allow(dead_code)] // each binary uses its own part

use std::sync::{Arc, OnceLock};

use rustls::pki_types::CertificateDer;
use rustls::ClientConfig;

/// A CA's certificate, and a leaf for "localhost" signed by it with its
/// PKCS#8 key. Made once per test binary, never stored.
pub(crate) struct Pki {
    pub(crate) ca: CertificateDer<'static>,
    pub(crate) leaf: CertificateDer<'static>,
    pub(crate) key: Vec<u8>,
}

pub(crate) fn pki() -> &'static Pki {
    static PKI: OnceLock<Pki> = OnceLock::new();
    PKI.get_or_init(|| {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca.distinguished_name.push(rcgen::DnType::CommonName, "trioxide test CA");
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let leaf = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
        Pki { ca: ca_cert.der().clone(), leaf: leaf.der().clone(), key: key.serialize_der() }
    })
}

pub(crate) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A client trusting only the test CA, offering `alpn`.
pub(crate) fn client_config(alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki().ca.clone()).unwrap();
    let mut c = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}
