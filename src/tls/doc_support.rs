// Included by the doc examples of `trioxide::tls` (through `include!`), not
// a module of the crate: configs read from PEM files (a CA, a certificate
// for "localhost" and its key: make your own, e.g. with rcgen or openssl),
// and a join of two futures in one task. The examples are compiled, not
// run (`no_run`): they would need those files, and no key is kept in this
// repository. The same code runs, with certificates made at test time, in
// ecosystem/tests/tls.rs.

/// A client config that trusts the CA in `ca.pem`, and a server config
/// with the certificate `cert.pem` and key `key.pem`; both offer `alpn`.
#[allow(dead_code)]
pub(crate) fn test_configs(
    alpn: &[&[u8]],
) -> (std::sync::Arc<rustls::ClientConfig>, std::sync::Arc<rustls::ServerConfig>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let ca = CertificateDer::from_pem_file("ca.pem").expect("ca.pem");
    let leaf = CertificateDer::from_pem_file("cert.pem").expect("cert.pem");
    let key = PrivateKeyDer::from_pem_file("key.pem").expect("key.pem");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("a CA certificate");
    let mut client = rustls::ClientConfig::builder().with_root_certificates(roots).with_no_client_auth();
    let mut server = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(vec![leaf], key).expect("certificate and key");
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
