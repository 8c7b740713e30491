//! Serves the client protocol on a node's QUIC endpoint.
//!
//! raft-transport accepts client connections (mutual TLS with the cluster
//! CA, the client ALPN) and hands them over; here each connection's
//! bidirectional streams carry one framed request and one framed response
//! each (see `kv_clerk::quic`). A malformed request closes that stream with
//! a logged reason; the connection and every other client go on.

use kv_clerk::protocol::{Request, Response, ServiceError};
use kv_clerk::quic::CLIENT_FRAME_BYTES_MAX;
use raft_transport::{frame, quinn, ClientConnections};
use tracing::{debug, info_span, warn, Instrument};

use crate::server::KvServer;

/// Serves every client connection `connections` yields, until it ends (the
/// transport shut down). Each connection and each request runs in its own
/// task.
pub async fn serve_clients(server: KvServer, mut connections: ClientConnections) {
    while let Some(connection) = connections.accept().await {
        let span = info_span!("client", node = server.id(), remote = %connection.remote_address());
        tokio::spawn(serve_connection(server.clone(), connection).instrument(span));
    }
}

async fn serve_connection(server: KvServer, connection: quinn::Connection) {
    loop {
        let (send, receive) = match connection.accept_bi().await {
            Ok(streams) => streams,
            Err(error) => {
                debug!(cause = %error, "client connection ended");
                return;
            }
        };
        tokio::spawn(serve_stream(server.clone(), send, receive).in_current_span());
    }
}

async fn serve_stream(
    server: KvServer,
    mut send: quinn::SendStream,
    mut receive: quinn::RecvStream,
) {
    let request = match frame::read_frame::<_, Request>(&mut receive, CLIENT_FRAME_BYTES_MAX).await
    {
        Ok(Some(request)) => request,
        Ok(None) => return,
        Err(error) => {
            warn!(cause = %error, "bad client request: closing the stream");
            let _ = receive.stop(quinn::VarInt::from_u32(1));
            let _ = send.reset(quinn::VarInt::from_u32(1));
            return;
        }
    };
    let response: Response = server.handle(request).await;
    let response = match frame::encode(&response, CLIENT_FRAME_BYTES_MAX) {
        Ok(_) => response,
        // Stored values stay under the limits, so this is a safety net.
        Err(_) => Err(ServiceError::TooLarge {
            what: kv_clerk::protocol::Limit::StoredValue,
            len: 0,
            max: CLIENT_FRAME_BYTES_MAX as u64,
        }),
    };
    if let Err(error) = frame::write_frame(&mut send, &response, CLIENT_FRAME_BYTES_MAX).await {
        debug!(cause = %error, "client went away before its answer");
        return;
    }
    let _ = send.finish();
}
