//! Certificates on disk: the `raft-certs` command, loading with clear
//! errors, and the checks a transport makes at start.

use std::path::{Path, PathBuf};
use std::process::Command;

use raft_transport::tls::{generate_cluster_files, peer_has_identity};
use raft_transport::{
    CertificateAuthority, Error, Identity, QuicClient, QuicTransport, TlsCredentials, TlsFiles,
    CLIENT_ALPN,
};

use crate::support::*;

/// A fresh directory under the system's temporary directory.
fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("raft-transport-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn mentions(error: &Error, path: &Path) -> bool {
    error.to_string().contains(&path.display().to_string())
}

#[test]
fn generated_cluster_files_load_and_reuse_their_ca() {
    let dir = scratch_dir("generate");
    let files = generate_cluster_files(&dir, &[1, 2, 3], &["alice".into()]).unwrap();
    assert!(!files.ca_reused);
    assert_eq!(files.written.len(), 2 + 4 * 2);
    for id in [1, 2, 3] {
        let credentials =
            TlsCredentials::load(&TlsFiles::in_dir(&dir, &Identity::Node(id))).unwrap();
        assert!(credentials.has_identity(&Identity::Node(id)));
        assert!(!credentials.has_identity(&Identity::Node(id + 1)));
    }
    let alice = Identity::client("alice").unwrap();
    let credentials = TlsCredentials::load(&TlsFiles::in_dir(&dir, &alice)).unwrap();
    assert!(credentials.has_identity(&alice));
    assert!(!credentials.has_identity(&Identity::Node(1)));

    // A second run adds a client under the same CA.
    let again = generate_cluster_files(&dir, &[], &["bob".into()]).unwrap();
    assert!(again.ca_reused);
    let bob = Identity::client("bob").unwrap();
    TlsCredentials::load(&TlsFiles::in_dir(&dir, &bob)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = TlsFiles::in_dir(&dir, &bob).key;
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn raft_certs_command_writes_a_usable_cluster() {
    let dir = scratch_dir("command");
    let output = Command::new(env!("CARGO_BIN_EXE_raft-certs"))
        .args([
            "--out",
            dir.to_str().unwrap(),
            "--nodes",
            "1,2",
            "--clients",
            "carol",
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("new CA"), "{stdout}");
    TlsCredentials::load(&TlsFiles::in_dir(&dir, &Identity::Node(2))).unwrap();
    TlsCredentials::load(&TlsFiles::in_dir(&dir, &Identity::client("carol").unwrap())).unwrap();

    let refused = Command::new(env!("CARGO_BIN_EXE_raft-certs"))
        .args(["--out", dir.to_str().unwrap(), "--nodes", "x"])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(2));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_file_error_names_the_path() {
    let dir = scratch_dir("missing");
    generate_cluster_files(&dir, &[1], &[]).unwrap();
    let mut files = TlsFiles::in_dir(&dir, &Identity::Node(1));
    files.key = dir.join("no-such.key.pem");
    let error = TlsCredentials::load(&files).unwrap_err();
    assert!(matches!(error, Error::ReadFile { .. }), "{error}");
    assert!(mentions(&error, &files.key), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_pem_error_names_the_path() {
    let dir = scratch_dir("bad-pem");
    generate_cluster_files(&dir, &[1], &[]).unwrap();
    let files = TlsFiles::in_dir(&dir, &Identity::Node(1));
    std::fs::write(&files.cert, "this is not pem\n").unwrap();
    let error = TlsCredentials::load(&files).unwrap_err();
    assert!(matches!(error, Error::BadPem { .. }), "{error}");
    assert!(mentions(&error, &files.cert), "{error}");

    // A certificate where the key should be.
    generate_cluster_files(&dir, &[1], &[]).unwrap();
    let files = TlsFiles {
        key: files.ca_cert.clone(),
        ..TlsFiles::in_dir(&dir, &Identity::Node(1))
    };
    let error = TlsCredentials::load(&files).unwrap_err();
    assert!(matches!(error, Error::BadPem { .. }), "{error}");
    assert!(error.to_string().contains("PRIVATE KEY"), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn certificate_from_another_ca_is_rejected_at_load() {
    let dir = scratch_dir("wrong-ca");
    generate_cluster_files(&dir, &[1], &[]).unwrap();
    let other = scratch_dir("other-ca");
    generate_cluster_files(&other, &[1], &[]).unwrap();
    let files = TlsFiles {
        ca_cert: dir.join("ca.pem"),
        ..TlsFiles::in_dir(&other, &Identity::Node(1))
    };
    let error = TlsCredentials::load(&files).unwrap_err();
    assert!(
        matches!(error, Error::CertificateRejected { .. }),
        "{error}"
    );
    assert!(mentions(&error, &files.cert), "{error}");
    assert!(
        error.to_string().contains("not valid under the cluster CA"),
        "{error}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn key_of_another_certificate_is_rejected_at_load() {
    let dir = scratch_dir("wrong-key");
    generate_cluster_files(&dir, &[1, 2], &[]).unwrap();
    let files = TlsFiles {
        key: TlsFiles::in_dir(&dir, &Identity::Node(2)).key,
        ..TlsFiles::in_dir(&dir, &Identity::Node(1))
    };
    let error = TlsCredentials::load(&files).unwrap_err();
    assert!(
        matches!(error, Error::CertificateRejected { .. }),
        "{error}"
    );
    assert!(mentions(&error, &files.key), "{error}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn invalid_client_names_are_refused() {
    for name in ["", "Alice", "a b", "-a", "a-", &"a".repeat(64)] {
        assert!(
            matches!(Identity::client(name), Err(Error::InvalidClientName { .. })),
            "{name:?}"
        );
    }
    let ca = CertificateAuthority::generate().unwrap();
    assert!(ca.issue(&Identity::Client("no spaces".into())).is_err());
}

#[tokio::test]
async fn binding_a_port_in_use_is_a_clear_error() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    let (sender, _receiver) = tokio::sync::mpsc::unbounded_channel();
    let error = QuicTransport::start(test_config(1, &addrs), sender)
        .await
        .unwrap_err();
    match &error {
        Error::Bind { addr, source } => {
            assert_eq!(*addr, addrs[&1]);
            assert_eq!(source.kind(), std::io::ErrorKind::AddrInUse);
        }
        other => panic!("expected a bind error, got {other}"),
    }
    assert!(
        error.to_string().contains(&addrs[&1].to_string()),
        "{error}"
    );
    node_1.shutdown().await;
}

#[tokio::test]
async fn certificate_of_another_node_is_refused_at_start() {
    let addrs = addr_map(&[1, 2]);
    let mut config = test_config(1, &addrs);
    config.credentials = node_credentials(2);
    let (sender, _receiver) = tokio::sync::mpsc::unbounded_channel();
    let error = QuicTransport::start(config, sender).await.unwrap_err();
    assert!(matches!(error, Error::InvalidConfig(_)), "{error}");
    assert!(error.to_string().contains("node-1.raft"), "{error}");
}

#[tokio::test]
async fn client_connections_reach_the_application_on_the_node_endpoint() {
    use raft_transport::frame;

    let addrs = addr_map(&[1, 2]);
    let mut config = test_config(1, &addrs);
    config.client_alpn = Some(CLIENT_ALPN.to_vec());
    let (node_1, _inbox_1) = start_with(config).await;
    let mut clients = node_1.take_client_connections().unwrap();
    assert!(node_1.take_client_connections().is_none());

    // An echo service on the node's endpoint.
    let server = tokio::spawn(async move {
        let connection = clients.accept().await.unwrap();
        assert!(peer_has_identity(
            &connection,
            &Identity::client("alice").unwrap()
        ));
        let (mut send, mut recv) = connection.accept_bi().await.unwrap();
        let request: Option<String> = frame::read_frame(&mut recv, 1024).await.unwrap();
        frame::write_frame(&mut send, &request.map(|text| text.to_uppercase()), 1024)
            .await
            .unwrap();
        send.finish().unwrap();
        connection.closed().await;
    });

    let certs = certs();
    let alice = certs.alice.credentials(&certs.ca).unwrap();
    let client = QuicClient::new(&alice, "127.0.0.1:0".parse().unwrap()).unwrap();
    let connection = client.connect(addrs[&1]).await.unwrap();
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    frame::write_frame(&mut send, "hello", 1024).await.unwrap();
    send.finish().unwrap();
    let answer: Option<Option<String>> = frame::read_frame(&mut recv, 1024).await.unwrap();
    assert_eq!(answer, Some(Some("HELLO".to_string())));

    // The node checks which node a client asked for.
    assert!(client.connect_to_node(addrs[&1], 1).await.is_ok());
    assert!(client.connect_to_node(addrs[&1], 2).await.is_err());
    client.close().await;
    tokio::time::timeout(std::time::Duration::from_secs(5), server)
        .await
        .unwrap()
        .unwrap();
    node_1.shutdown().await;
}

#[tokio::test]
async fn client_connections_are_refused_when_not_served() {
    let addrs = addr_map(&[1, 2]);
    let (node_1, _inbox_1) = start_node(1, &addrs).await;
    assert!(node_1.take_client_connections().is_none());
    let certs = certs();
    let alice = certs.alice.credentials(&certs.ca).unwrap();
    let client = QuicClient::new(&alice, "127.0.0.1:0".parse().unwrap()).unwrap();
    // No ALPN in common: the handshake fails.
    assert!(client.connect(addrs[&1]).await.is_err());
    node_1.shutdown().await;
}

#[test]
fn config_validation_refuses_what_cannot_work() {
    let addrs = addr_map(&[1, 2]);
    let base = test_config(1, &addrs);
    let mut listed_self = base.clone();
    listed_self.peers.insert(1, addrs[&1]);
    let mut zero_queue = base.clone();
    zero_queue.peer_queue_messages_max = 0;
    let mut idle_below_keep_alive = base.clone();
    idle_below_keep_alive.idle_timeout = idle_below_keep_alive.keep_alive_interval;
    let mut client_alpn_as_peer = base.clone();
    client_alpn_as_peer.client_alpn = Some(raft_transport::PEER_ALPN.to_vec());
    for config in [
        listed_self,
        zero_queue,
        idle_below_keep_alive,
        client_alpn_as_peer,
    ] {
        assert!(matches!(config.validate(), Err(Error::InvalidConfig(_))));
    }
    assert!(base.validate().is_ok());
}
