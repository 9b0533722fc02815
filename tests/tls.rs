//! https and wss against a local TLS server whose certificates are made here: refused by
//! default with the reason, accepted with `--ca-cert` and with `--insecure`, and an expired
//! certificate or another name refused with words that say so. The TLS server terminates TLS
//! and passes the bytes to the simulator, as a reverse proxy in front of ComfyUI would.

mod support;

use std::sync::Arc;
use std::time::Duration;

use comfy_sim::{SimConfig, SimHandle, SimServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
use support::pty::{Answers, PtyApp};
use support::{run, text};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};

/// A CA, and a server certificate it signed.
struct Certificates {
    ca_pem: String,
    server_der: Vec<u8>,
    server_key_der: Vec<u8>,
}

/// A CA and a certificate for `localhost` from it, valid until `not_after` (a year).
fn certificates(not_after_year: i32) -> Certificates {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "comfytop test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca, ca_key);

    let server_key = KeyPair::generate().unwrap();
    let mut server = CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    server.not_before = rcgen::date_time_ymd(2000, 1, 1);
    server.not_after = rcgen::date_time_ymd(not_after_year, 1, 1);
    let server_cert = server.signed_by(&server_key, &issuer).unwrap();
    Certificates {
        ca_pem: ca_cert.pem(),
        server_der: server_cert.der().to_vec(),
        server_key_der: server_key.serialize_der(),
    }
}

/// TLS on a port of its own, in front of `upstream` (plain TCP).
async fn tls_front(certificates: &Certificates, upstream: &str) -> String {
    let config = tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![certificates.server_der.clone().into()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            certificates.server_key_der.clone(),
        )),
    )
    .unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let upstream = upstream.trim_start_matches("http://").to_string();
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                // A refused handshake ends here: that is the point of several tests.
                let Ok(mut tls) = acceptor.accept(socket).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(&upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    format!("{port}")
}

async fn simulator() -> SimHandle {
    SimServer::start(SimConfig {
        step: Duration::from_millis(5),
        ..SimConfig::default()
    })
    .await
    .unwrap()
}

fn write_ca(pem: &str) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), pem).unwrap();
    file
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_ca_is_refused_by_default_and_accepted_when_given_or_skipped() {
    let sim = simulator().await;
    let certificates = certificates(2999);
    let port = tls_front(&certificates, &sim.url()).await;
    let url = format!("https://localhost:{port}");
    let ca = write_ca(&certificates.ca_pem);
    let ca_path = ca.path().to_str().unwrap();

    let refused = run(&["queue", &url]).await;
    let said = text(&refused.stderr);
    assert_eq!(refused.status.code(), Some(5), "{said}");
    assert!(
        said.contains("the TLS handshake failed: its certificate is signed by an authority comfytop does not trust"),
        "{said}"
    );
    assert!(
        said.contains("--ca-cert FILE") && said.contains("--insecure"),
        "{said}"
    );

    let trusted = run(&["queue", &url, "--ca-cert", ca_path]).await;
    assert_eq!(trusted.status.code(), Some(0), "{}", text(&trusted.stderr));
    assert_eq!(text(&trusted.stdout), "the queue is empty\n");

    let unchecked = run(&["queue", &url, "--insecure"]).await;
    assert_eq!(
        unchecked.status.code(),
        Some(0),
        "{}",
        text(&unchecked.stderr)
    );

    // The name in the certificate is localhost: 127.0.0.1 is another name.
    let other_name = run(&[
        "queue",
        &format!("https://127.0.0.1:{port}"),
        "--ca-cert",
        ca_path,
    ])
    .await;
    let said = text(&other_name.stderr);
    assert_eq!(other_name.status.code(), Some(5), "{said}");
    assert!(
        said.contains("its certificate is for another name"),
        "{said}"
    );
    assert!(said.contains("localhost"), "{said}");

    // A file that is not a certificate is a usage error naming it.
    let not_pem = write_ca("hello\n");
    let bad = run(&["queue", &url, "--ca-cert", not_pem.path().to_str().unwrap()]).await;
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad.stderr));
    assert!(
        text(&bad.stderr).contains("holds no PEM certificate"),
        "{}",
        text(&bad.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_says_it_expired() {
    let sim = simulator().await;
    let certificates = certificates(2020);
    let port = tls_front(&certificates, &sim.url()).await;
    let ca = write_ca(&certificates.ca_pem);
    let url = format!("https://localhost:{port}");
    let expired = run(&["queue", &url, "--ca-cert", ca.path().to_str().unwrap()]).await;
    let said = text(&expired.stderr);
    assert_eq!(expired.status.code(), Some(5), "{said}");
    assert!(
        said.contains("its certificate expired") && said.contains("days ago"),
        "{said}"
    );
    // Still unchecked with --insecure: for a box whose certificate lapsed over the weekend.
    let unchecked = run(&["queue", &url, "--insecure"]).await;
    assert_eq!(
        unchecked.status.code(),
        Some(0),
        "{}",
        text(&unchecked.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_follows_over_wss_with_the_ca_and_explains_a_refusal_without_it() {
    let sim = simulator().await;
    let certificates = certificates(2999);
    let port = tls_front(&certificates, &sim.url()).await;
    let ca = write_ca(&certificates.ca_pem);
    let url = format!("wss://localhost:{port}/ws");

    let lines = support::watch_until(
        &["watch", &url, "--ca-cert", ca.path().to_str().unwrap()],
        |line| line.contains("-- connected to"),
    )
    .await;
    assert!(
        lines
            .last()
            .is_some_and(|l| l.contains("connected to https://localhost")),
        "{lines:?}"
    );

    let lines = support::watch_until(&["watch", &url], |line| line.contains("TLS")).await;
    let line = lines.last().cloned().unwrap_or_default();
    assert!(
        line.contains("the TLS handshake with https://localhost")
            && line.contains("does not trust"),
        "{line}"
    );
}

#[test]
fn the_dashboard_over_https_warns_while_the_certificate_goes_unchecked() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let sim = runtime.block_on(simulator());
    let certificates = certificates(2999);
    let port = runtime.block_on(tls_front(&certificates, &sim.url()));
    let url = format!("https://localhost:{port}");
    let mut app = PtyApp::spawn_with(&[&url, "--insecure"], &[], 120, 30, Answers::Status);
    let screen = app.wait_for("connected and warned", Duration::from_secs(20), |s| {
        s.contains("● connected") && s.contains("INSECURE: certificate not checked")
    });
    assert!(screen.contains("https://localhost"), "{screen}");
    app.send(b"q");
    assert_eq!(app.wait_exit(Duration::from_secs(20)), 0);
}
