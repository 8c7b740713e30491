//! Generating a cluster CA and the certificates of nodes and clients (rcgen).

use std::path::{Path, PathBuf};

use quinn::rustls::pki_types::CertificateDer;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::{Identity, TlsCredentials, CLUSTER_DNS_NAME};
use crate::error::Error;

// FIXME(ca-name): every CA made here has the same subject name, so that a
// CA read back from PEM signs exactly like the original without parsing its
// certificate. A certificate from another such CA therefore fails with
// "BadSignature" rather than "UnknownIssuer", and an externally made CA
// cannot issue through `from_pem`. Right: parse the CA certificate's
// subject (rcgen's `x509-parser` feature) and give each CA a unique name.
/// The common name of every CA this module makes. [`CertificateAuthority::from_pem`]
/// relies on it: certificates it issues name this CA as their issuer.
const CA_COMMON_NAME: &str = "raft-kv cluster CA";

/// How long generated certificates are valid.
const VALIDITY_DAYS: i64 = 3650;

/// A cluster certificate authority that can issue node and client
/// certificates.
pub struct CertificateAuthority {
    /// The CA's self-signed certificate, in PEM.
    cert_pem: String,
    /// The CA's private key, in PEM (PKCS#8).
    key_pem: String,
    /// What rcgen needs to sign with this CA.
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key stays out of logs.
        formatter
            .debug_struct("CertificateAuthority")
            .field("cert_pem", &self.cert_pem)
            .finish_non_exhaustive()
    }
}

/// A certificate and its private key, in PEM.
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// Whom the certificate speaks for.
    pub identity: Identity,
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn validity_window() -> (time::OffsetDateTime, time::OffsetDateTime) {
    let now = time::OffsetDateTime::now_utc();
    // A day of slack before now tolerates clocks that lag a little.
    (
        now - time::Duration::days(1),
        now + time::Duration::days(VALIDITY_DAYS),
    )
}

/// The CA's parameters, identical each time so that a CA read back from
/// files signs exactly as the one that was generated.
fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params
}

impl CertificateAuthority {
    /// Generates a new CA with a fresh ECDSA P-256 key.
    pub fn generate() -> Result<CertificateAuthority, Error> {
        let key = KeyPair::generate()?;
        let mut params = ca_params();
        (params.not_before, params.not_after) = validity_window();
        let cert = params.self_signed(&key)?;
        Ok(CertificateAuthority {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// Takes back a CA this module generated earlier, from its certificate
    /// and key. Certificates it issues are checked against `cert_pem`, so a
    /// CA made by other means fails on the first [`CertificateAuthority::issue`].
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<CertificateAuthority, Error> {
        let key = KeyPair::from_pem(key_pem).map_err(|error| Error::BadPem {
            path: "<ca key>".into(),
            reason: error.to_string(),
        })?;
        Ok(CertificateAuthority {
            cert_pem: cert_pem.into(),
            key_pem: key_pem.into(),
            issuer: Issuer::new(ca_params(), key),
        })
    }

    /// The CA certificate in PEM, to hand to every party.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA private key in PEM. Keep it off the nodes in production.
    pub fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// Issues a certificate for `identity` with a fresh key, and checks that
    /// it verifies under this CA.
    ///
    /// A node certificate carries `node-<id>.raft` and
    /// [`CLUSTER_DNS_NAME`] and may serve and dial; a client certificate
    /// carries `client-<name>.raft` and may only dial.
    pub fn issue(&self, identity: &Identity) -> Result<IssuedCertificate, Error> {
        if let Identity::Client(name) = identity {
            Identity::client(name)?;
        }
        let mut names = vec![identity.dns_name()];
        let mut extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if let Identity::Node(_) = identity {
            names.push(CLUSTER_DNS_NAME.into());
            extended_key_usages.push(ExtendedKeyUsagePurpose::ServerAuth);
        }

        let mut params = CertificateParams::new(names)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::CommonName, identity.file_stem());
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = extended_key_usages;
        params.use_authority_key_identifier_extension = true;
        (params.not_before, params.not_after) = validity_window();
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;

        let issued = IssuedCertificate {
            identity: identity.clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        // Postcondition: the certificate works under this CA.
        issued.credentials(self)?;
        Ok(issued)
    }
}

impl IssuedCertificate {
    /// The credentials of this certificate's holder under `ca`.
    pub fn credentials(&self, ca: &CertificateAuthority) -> Result<TlsCredentials, Error> {
        TlsCredentials::from_pem(ca.cert_pem(), &self.cert_pem, &self.key_pem)
    }

    /// The certificate in DER.
    pub fn cert_der(&self) -> Result<CertificateDer<'static>, Error> {
        use quinn::rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).map_err(|error| Error::BadPem {
            path: "<issued cert>".into(),
            reason: error.to_string(),
        })
    }
}

/// What [`generate_cluster_files`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterFiles {
    /// The CA certificate's path.
    pub ca_cert: PathBuf,
    /// Whether an existing CA in the directory was used instead of a new one.
    pub ca_reused: bool,
    /// Every file written, in order.
    pub written: Vec<PathBuf>,
}

fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), Error> {
    let to_error = |source| Error::WriteFile {
        path: path.into(),
        source,
    };
    std::fs::write(path, contents).map_err(to_error)?;
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(to_error)?;
    }
    #[cfg(not(unix))]
    let _ = private;
    Ok(())
}

/// Writes a CA and certificates for `nodes` and `clients` into `dir`
/// (created if missing), with the file names of [`super::TlsFiles::in_dir`].
///
/// When `dir` already holds `ca.pem` and `ca.key.pem`, that CA issues the
/// new certificates, so that a client or node can be added to a running
/// cluster; one without the other is an error. Existing certificates of the
/// same names are overwritten. Key files are readable by the owner only.
pub fn generate_cluster_files(
    dir: &Path,
    nodes: &[raft_core::NodeId],
    clients: &[String],
) -> Result<ClusterFiles, Error> {
    if nodes.contains(&0) {
        return Err(Error::InvalidConfig("node id 0 is reserved".into()));
    }
    let identities = nodes
        .iter()
        .map(|&id| Ok(Identity::Node(id)))
        .chain(clients.iter().map(|name| Identity::client(name)))
        .collect::<Result<Vec<_>, Error>>()?;
    std::fs::create_dir_all(dir).map_err(|source| Error::WriteFile {
        path: dir.into(),
        source,
    })?;

    let ca_cert_path = dir.join("ca.pem");
    let ca_key_path = dir.join("ca.key.pem");
    let mut written = Vec::new();
    let (ca, ca_reused) = match (ca_cert_path.exists(), ca_key_path.exists()) {
        (true, true) => {
            let read = |path: &Path| {
                std::fs::read_to_string(path).map_err(|source| Error::ReadFile {
                    path: path.into(),
                    source,
                })
            };
            let ca = CertificateAuthority::from_pem(&read(&ca_cert_path)?, &read(&ca_key_path)?)
                .map_err(|error| Error::BadPem {
                    path: ca_key_path.clone(),
                    reason: error.to_string(),
                })?;
            (ca, true)
        }
        (false, false) => {
            let ca = CertificateAuthority::generate()?;
            write_file(&ca_cert_path, ca.cert_pem(), false)?;
            write_file(&ca_key_path, ca.key_pem(), true)?;
            written.extend([ca_cert_path.clone(), ca_key_path.clone()]);
            (ca, false)
        }
        (true, false) | (false, true) => {
            return Err(Error::InvalidConfig(format!(
                "{} holds only one of ca.pem and ca.key.pem",
                dir.display()
            )))
        }
    };

    for identity in &identities {
        let issued = ca
            .issue(identity)
            .map_err(|error| Error::CertificateRejected {
                path: ca_cert_path.clone(),
                reason: format!("cannot issue a certificate for {identity}: {error}"),
            })?;
        let files = super::TlsFiles::in_dir(dir, identity);
        write_file(&files.cert, &issued.cert_pem, false)?;
        write_file(&files.key, &issued.key_pem, true)?;
        written.extend([files.cert, files.key]);
    }
    Ok(ClusterFiles {
        ca_cert: ca_cert_path,
        ca_reused,
        written,
    })
}
