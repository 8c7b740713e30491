//! quinn configurations shared by node endpoints and the client helper.

use std::sync::Arc;
use std::time::Duration;

use quinn::crypto::rustls::{QuicClientConfig, QuicServerConfig};

use crate::error::Error;
use crate::tls::TlsCredentials;

/// Stream limits and timers of every connection this crate makes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Timers {
    /// Concurrent bidirectional streams the remote may open.
    pub(crate) bidi_streams_max: u32,
    /// Concurrent unidirectional streams the remote may open.
    pub(crate) uni_streams_max: u32,
    /// QUIC keep-alive period.
    pub(crate) keep_alive_interval: Duration,
    /// Silence after which a connection is lost.
    pub(crate) idle_timeout: Duration,
    /// RTT assumed before one is measured.
    pub(crate) initial_rtt: Duration,
}

impl Timers {
    /// Defaults for a client: many requests in flight, quick loss detection.
    pub(crate) fn client_default() -> Timers {
        Timers {
            bidi_streams_max: 1024,
            uni_streams_max: 256,
            keep_alive_interval: Duration::from_millis(500),
            idle_timeout: Duration::from_secs(5),
            initial_rtt: Duration::from_millis(100),
        }
    }

    fn transport_config(&self) -> Result<quinn::TransportConfig, Error> {
        let idle_timeout = quinn::IdleTimeout::try_from(self.idle_timeout)
            .map_err(|_| Error::InvalidConfig("idle_timeout is too long for QUIC".into()))?;
        let mut config = quinn::TransportConfig::default();
        config
            .max_concurrent_bidi_streams(self.bidi_streams_max.into())
            .max_concurrent_uni_streams(self.uni_streams_max.into())
            .keep_alive_interval(Some(self.keep_alive_interval))
            .max_idle_timeout(Some(idle_timeout))
            .initial_rtt(self.initial_rtt);
        Ok(config)
    }
}

/// A quinn server configuration offering `alpn_protocols`, requiring client
/// certificates from the cluster CA.
pub(crate) fn server_config(
    credentials: &TlsCredentials,
    alpn_protocols: Vec<Vec<u8>>,
    timers: Timers,
) -> Result<quinn::ServerConfig, Error> {
    let tls = credentials.server_config(alpn_protocols)?;
    let crypto = QuicServerConfig::try_from(tls).map_err(|error| Error::Tls(error.to_string()))?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(crypto));
    config.transport_config(Arc::new(timers.transport_config()?));
    Ok(config)
}

/// A quinn client configuration for `alpn`, presenting our certificate and
/// trusting only the cluster CA.
pub(crate) fn client_config(
    credentials: &TlsCredentials,
    alpn: &[u8],
    timers: Timers,
) -> Result<quinn::ClientConfig, Error> {
    let tls = credentials.client_config(vec![alpn.to_vec()])?;
    let crypto = QuicClientConfig::try_from(tls).map_err(|error| Error::Tls(error.to_string()))?;
    let mut config = quinn::ClientConfig::new(Arc::new(crypto));
    config.transport_config(Arc::new(timers.transport_config()?));
    Ok(config)
}
