//! Mutual TLS with a cluster certificate authority: identities, loading PEM
//! files, and the rustls configurations that both node endpoints and client
//! helpers use.
//!
//! # Trust rules
//!
//! - Every party (node or client) holds a certificate signed by the cluster
//!   CA; nothing else is trusted, neither the system's roots nor
//!   self-signed certificates. Only TLS 1.3 is offered (QUIC requires it).
//! - A node certificate names its node as the DNS subject alternative name
//!   `node-<id>.raft` (see [`Identity::dns_name`]) and also
//!   [`CLUSTER_DNS_NAME`], so that a client can connect to any node without
//!   knowing its id. It may act as TLS server and client.
//! - A client certificate names `client-<name>.raft` and may act as TLS
//!   client only (its extended key usage says so), so it cannot pose as a
//!   node.
//! - A node dialing node `n` checks that the server's certificate names
//!   `node-<n>.raft`. A node accepting a peer connection checks that the
//!   dialer's certificate names the node id the dialer claims in its hello
//!   (see [`crate::wire::Hello`]), and then that every message's `from` is
//!   that id.
//!
//! # Files
//!
//! [`generate_cluster_files`] (and the `raft-certs` command) writes into one
//! directory `ca.pem`, `ca.key.pem`, `node-<id>.pem`, `node-<id>.key.pem`,
//! `client-<name>.pem` and `client-<name>.key.pem`. [`TlsFiles`] names the
//! three files a party needs and [`TlsCredentials::load`] reads and checks
//! them, naming the file at fault in every error.

mod generate;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use quinn::rustls;
use raft_core::NodeId;
use rustls::client::verify_server_name;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::{ParsedCertificate, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

pub use generate::{generate_cluster_files, CertificateAuthority, ClusterFiles, IssuedCertificate};

use crate::error::Error;

/// A DNS name every node certificate carries besides its own, so that a
/// client may connect to any node of the cluster by one name.
pub const CLUSTER_DNS_NAME: &str = "cluster.raft";

/// Who a certificate speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Identity {
    /// A node of the cluster.
    Node(NodeId),
    /// A client of the cluster's service, by name (a-z, 0-9 and '-').
    Client(String),
}

impl Identity {
    /// A client identity, after checking that `name` can be one: 1 to 63
    /// characters of `a-z`, `0-9` and `-`, not starting or ending with `-`.
    pub fn client(name: &str) -> Result<Identity, Error> {
        let valid_characters = name
            .bytes()
            .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
        let valid = !name.is_empty()
            && name.len() <= 63
            && valid_characters
            && !name.starts_with('-')
            && !name.ends_with('-');
        if !valid {
            return Err(Error::InvalidClientName { name: name.into() });
        }
        Ok(Identity::Client(name.into()))
    }

    /// The DNS subject alternative name that proves this identity:
    /// `node-<id>.raft` or `client-<name>.raft`.
    pub fn dns_name(&self) -> String {
        match self {
            Identity::Node(id) => format!("node-{id}.raft"),
            Identity::Client(name) => format!("client-{name}.raft"),
        }
    }

    /// The file name stem used for this identity's certificate and key.
    pub fn file_stem(&self) -> String {
        match self {
            Identity::Node(id) => format!("node-{id}"),
            Identity::Client(name) => format!("client-{name}"),
        }
    }
}

impl std::fmt::Display for Identity {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Identity::Node(id) => write!(formatter, "node {id}"),
            Identity::Client(name) => write!(formatter, "client {name}"),
        }
    }
}

/// The paths of the three PEM files one party needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The cluster CA's certificate.
    pub ca_cert: PathBuf,
    /// This party's certificate (chain), end-entity first.
    pub cert: PathBuf,
    /// This party's private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files [`generate_cluster_files`] writes for `identity` in `dir`.
    pub fn in_dir(dir: impl AsRef<Path>, identity: &Identity) -> TlsFiles {
        let dir = dir.as_ref();
        let stem = identity.file_stem();
        TlsFiles {
            ca_cert: dir.join("ca.pem"),
            cert: dir.join(format!("{stem}.pem")),
            key: dir.join(format!("{stem}.key.pem")),
        }
    }
}

/// The cluster CA certificate plus one party's certificate chain and key,
/// checked to belong together.
#[derive(Debug)]
pub struct TlsCredentials {
    /// The only trust anchor.
    ca_cert: CertificateDer<'static>,
    /// This party's chain, end-entity first.
    cert_chain: Vec<CertificateDer<'static>>,
    /// This party's private key.
    key: PrivateKeyDer<'static>,
}

impl Clone for TlsCredentials {
    fn clone(&self) -> TlsCredentials {
        TlsCredentials {
            ca_cert: self.ca_cert.clone(),
            cert_chain: self.cert_chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

/// The crypto provider of every configuration here: quinn's default, ring.
pub(crate) fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_file(path: &Path) -> Result<Vec<u8>, Error> {
    std::fs::read(path).map_err(|source| Error::ReadFile {
        path: path.into(),
        source,
    })
}

fn parse_certificates(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, Error> {
    let certificates = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| Error::BadPem {
            path: path.into(),
            reason: error.to_string(),
        })?;
    if certificates.is_empty() {
        return Err(Error::BadPem {
            path: path.into(),
            reason: "no CERTIFICATE block found".into(),
        });
    }
    Ok(certificates)
}

fn parse_key(pem: &[u8], path: &Path) -> Result<PrivateKeyDer<'static>, Error> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|error| Error::BadPem {
        path: path.into(),
        reason: match error {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".into(),
            other => other.to_string(),
        },
    })
}

impl TlsCredentials {
    /// Reads and checks the three files: each must exist and hold PEM of the
    /// right kind, the certificate must be signed by the CA, and the key must
    /// match the certificate. Every error names the file at fault.
    pub fn load(files: &TlsFiles) -> Result<TlsCredentials, Error> {
        let ca_pem = read_file(&files.ca_cert)?;
        let cert_pem = read_file(&files.cert)?;
        let key_pem = read_file(&files.key)?;
        TlsCredentials::from_pem_parts(
            (&ca_pem, &files.ca_cert),
            (&cert_pem, &files.cert),
            (&key_pem, &files.key),
        )
    }

    /// Like [`TlsCredentials::load`], from PEM text in memory. Errors name
    /// the parts `<ca>`, `<cert>` and `<key>`.
    pub fn from_pem(ca_pem: &str, cert_pem: &str, key_pem: &str) -> Result<TlsCredentials, Error> {
        TlsCredentials::from_pem_parts(
            (ca_pem.as_bytes(), Path::new("<ca>")),
            (cert_pem.as_bytes(), Path::new("<cert>")),
            (key_pem.as_bytes(), Path::new("<key>")),
        )
    }

    fn from_pem_parts(
        (ca_pem, ca_path): (&[u8], &Path),
        (cert_pem, cert_path): (&[u8], &Path),
        (key_pem, key_path): (&[u8], &Path),
    ) -> Result<TlsCredentials, Error> {
        let mut ca_certs = parse_certificates(ca_pem, ca_path)?;
        if ca_certs.len() != 1 {
            return Err(Error::BadPem {
                path: ca_path.into(),
                reason: format!("expected one CA certificate, found {}", ca_certs.len()),
            });
        }
        let ca_cert = ca_certs.remove(0);
        let cert_chain = parse_certificates(cert_pem, cert_path)?;
        let key = parse_key(key_pem, key_path)?;

        // The CA must be usable as a trust anchor, and must have signed the
        // certificate.
        let roots = root_store(&ca_cert).map_err(|reason| Error::CertificateRejected {
            path: ca_path.into(),
            reason,
        })?;
        verify_chain(&roots, &cert_chain).map_err(|reason| Error::CertificateRejected {
            path: cert_path.into(),
            reason: format!(
                "not valid under the cluster CA {}: {reason}",
                ca_path.display()
            ),
        })?;

        // The key must be the certificate's.
        CertifiedKey::from_der(cert_chain.clone(), key.clone_key(), &crypto_provider()).map_err(
            |error| Error::CertificateRejected {
                path: key_path.into(),
                reason: format!(
                    "private key does not match certificate {}: {error}",
                    cert_path.display()
                ),
            },
        )?;

        Ok(TlsCredentials {
            ca_cert,
            cert_chain,
            key,
        })
    }

    /// Whether this party's certificate proves `identity`.
    pub fn has_identity(&self, identity: &Identity) -> bool {
        certificate_has_identity(&self.cert_chain[0], identity)
    }

    /// The cluster CA certificate.
    pub fn ca_cert(&self) -> &CertificateDer<'static> {
        &self.ca_cert
    }

    /// A rustls server configuration: this party's certificate, client
    /// certificates required and checked against the cluster CA, TLS 1.3,
    /// and the given ALPN protocols.
    pub fn server_config(
        &self,
        alpn_protocols: Vec<Vec<u8>>,
    ) -> Result<rustls::ServerConfig, Error> {
        let roots = root_store(&self.ca_cert).map_err(Error::Tls)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
                .build()
                .map_err(|error| Error::Tls(error.to_string()))?;
        let mut config = rustls::ServerConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| Error::Tls(error.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|error| Error::Tls(error.to_string()))?;
        config.alpn_protocols = alpn_protocols;
        Ok(config)
    }

    /// A rustls client configuration: trusts only the cluster CA, presents
    /// this party's certificate, TLS 1.3, and the given ALPN protocols.
    pub fn client_config(
        &self,
        alpn_protocols: Vec<Vec<u8>>,
    ) -> Result<rustls::ClientConfig, Error> {
        let roots = root_store(&self.ca_cert).map_err(Error::Tls)?;
        let mut config = rustls::ClientConfig::builder_with_provider(crypto_provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|error| Error::Tls(error.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(self.cert_chain.clone(), self.key.clone_key())
            .map_err(|error| Error::Tls(error.to_string()))?;
        config.alpn_protocols = alpn_protocols;
        Ok(config)
    }
}

fn root_store(ca_cert: &CertificateDer<'static>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    roots
        .add(ca_cert.clone())
        .map_err(|error| format!("not a usable CA certificate: {error}"))?;
    Ok(roots)
}

/// Checks that the chain's end-entity certificate is signed by the CA and
/// allowed for client authentication, which every certificate of the
/// cluster is.
fn verify_chain(roots: &RootCertStore, chain: &[CertificateDer<'static>]) -> Result<(), String> {
    let verifier =
        WebPkiClientVerifier::builder_with_provider(Arc::new(roots.clone()), crypto_provider())
            .build()
            .map_err(|error| error.to_string())?;
    verifier
        .verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
        .map(|_| ())
        .map_err(|error| error.to_string())
}

/// Whether `certificate` names `identity` among its DNS subject alternative
/// names. This checks the name only: the chain must have been verified
/// already (a TLS handshake with this crate's configurations does that).
pub fn certificate_has_identity(certificate: &CertificateDer<'_>, identity: &Identity) -> bool {
    let Ok(parsed) = ParsedCertificate::try_from(certificate) else {
        return false;
    };
    let Ok(name) = ServerName::try_from(identity.dns_name()) else {
        return false;
    };
    verify_server_name(&parsed, &name).is_ok()
}

/// The certificate chain a connection's peer presented, end-entity first
/// (empty if it presented none, which the trust rules here never allow
/// through a completed handshake).
pub fn peer_certificates(connection: &quinn::Connection) -> Vec<CertificateDer<'static>> {
    connection
        .peer_identity()
        .and_then(|identity| identity.downcast::<Vec<CertificateDer<'static>>>().ok())
        .map(|certificates| *certificates)
        .unwrap_or_default()
}

// FIXME(client-names): the names a certificate carries cannot be listed,
// only checked one by one, because rustls does not expose its parsed
// subject alternative names. Right: parse the certificate (x509-parser or
// rustls-webpki directly) and return the client's name.
/// Whether the peer of `connection` proved `identity` with its certificate.
/// Use it on client connections to learn which client connected, for
/// example `peer_has_identity(&connection, &Identity::client("alice")?)`.
pub fn peer_has_identity(connection: &quinn::Connection, identity: &Identity) -> bool {
    peer_certificates(connection)
        .first()
        .is_some_and(|certificate| certificate_has_identity(certificate, identity))
}
