//! File URLs over `https://`: a TLS server on loopback with a certificate
//! of its own CA, trusted through `--fetch-ca-file`'s roots and refused
//! without them.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use skep_api::FailureReason;
use skep_worker::fetch::{self, Expect, Fetcher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;

const BODY: &[u8] = b"the bytes of a page, over TLS";

/// Serves `BODY` to every request over TLS; the port and the
/// certificate's PEM.
async fn tls_server() -> (u16, String) {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).expect("certificate");
    let pem = made.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(made.signing_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_no_client_auth()
        .with_single_cert(vec![made.cert.der().clone()], key)
        .expect("server config");
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match tls.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    BODY.len()
                );
                let _ = tls.write_all(reply.as_bytes()).await;
                let _ = tls.write_all(BODY).await;
                let _ = tls.shutdown().await;
            });
        }
    });
    (port, pem)
}

#[tokio::test]
async fn an_https_url_reads_with_the_given_ca_and_is_refused_without_it() {
    let (port, pem) = tls_server().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, &pem).expect("ca");
    let roots = fetch::load_roots(&ca).expect("roots");
    let url = format!("https://localhost:{port}/files?path=a");
    let limit = Duration::from_secs(20);

    let trusting = Fetcher::new(dir.path().join("f1"), 1_000_000, &roots).expect("fetcher");
    let got = trusting
        .fetch(&url, Path::new("/data/a.png"), Expect::default(), limit)
        .await
        .expect("fetched over TLS");
    assert_eq!(std::fs::read(&got.path).expect("read"), BODY);

    let strict = Fetcher::new(dir.path().join("f2"), 1_000_000, &[])
        .expect("fetcher")
        .with_backoff(Duration::from_millis(10));
    let e = strict
        .fetch(&url, Path::new("/data/a.png"), Expect::default(), limit)
        .await
        .expect_err("an unknown CA is refused");
    assert_eq!((e.error.reason, e.result), (FailureReason::Unreadable, "error"));
    assert!(
        e.error.message.to_lowercase().contains("certificate"),
        "{}",
        e.error.message
    );

    std::fs::write(&ca, "not a certificate").expect("bad ca");
    assert!(fetch::load_roots(&ca).is_err(), "a file with no certificate is refused");
}
