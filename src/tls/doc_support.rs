// Included by the doc examples of `trioxide::tls` (through `include!`), not
// a module of the crate: a throwaway CA and a certificate for "localhost"
// made with rcgen when the example runs (no key is stored anywhere),
// configs that use them, and a join of two futures in one task.

/// A client config that trusts a fresh CA, and a server config with a
/// "localhost" certificate from it; both offer `alpn`.
#[allow(dead_code)]
pub(crate) fn test_configs(
    alpn: &[&[u8]],
) -> (std::sync::Arc<rustls::ClientConfig>, std::sync::Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let leaf = leaf.signed_by(&key, &ca_cert, &ca_key).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca_cert.der().clone()).unwrap();
    let mut client = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let mut server =
        rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![leaf.der().clone()], key).unwrap();
    client.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    server.alpn_protocols = client.alpn_protocols.clone();
    (std::sync::Arc::new(client), std::sync::Arc::new(server))
}

/// A client and a server `TlsStream` over `UnixStream::pair()`, for
/// "localhost", not yet handshaken.
#[allow(dead_code)]
pub(crate) fn tls_pair(
) -> std::io::Result<(trioxide::tls::TlsStream<trioxide::UnixStream>, trioxide::tls::TlsStream<trioxide::UnixStream>)> {
    let (client_config, server_config) = test_configs(&[]);
    let (a, b) = trioxide::UnixStream::pair()?;
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let client = trioxide::tls::TlsStream::client(a, client_config, name).unwrap();
    let server = trioxide::tls::TlsStream::server(b, server_config).unwrap();
    Ok((client, server))
}

/// Runs `a` and `b` at once in the calling task; both outputs.
#[allow(dead_code)]
pub(crate) async fn join<A: std::future::Future, B: std::future::Future>(a: A, b: B) -> (A::Output, B::Output) {
    let (mut a, mut b) = (std::pin::pin!(a), std::pin::pin!(b));
    let (mut ra, mut rb) = (None, None);
    std::future::poll_fn(|cx| {
        if ra.is_none() {
            ra = match std::future::Future::poll(a.as_mut(), cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            };
        }
        if rb.is_none() {
            rb = match std::future::Future::poll(b.as_mut(), cx) {
                std::task::Poll::Ready(v) => Some(v),
                std::task::Poll::Pending => None,
            };
        }
        if ra.is_some() && rb.is_some() {
            std::task::Poll::Ready((ra.take().unwrap(), rb.take().unwrap()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}
