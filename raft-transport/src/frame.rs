//! Length-prefixed, versioned rmp-serde frames: the wire format of every
//! stream this crate opens, reusable for any serde type and any byte stream.
//!
//! # Layout
//!
//! ```text
//! +---------+----------------------+------------------------------+
//! | version | payload length       | payload                      |
//! | 1 byte  | 4 bytes, big-endian  | `length` bytes of rmp-serde  |
//! +---------+----------------------+------------------------------+
//! ```
//!
//! The version byte is [`VERSION`]; a frame with another version is refused
//! with [`Error::FrameVersion`] before its length is even looked at. The
//! length counts payload bytes only and may not exceed the reader's
//! `payload_bytes_max` ([`Error::FrameTooLarge`]), which is checked before
//! any payload byte is buffered, so a hostile length cannot make the reader
//! allocate. The payload is one value in rmp-serde's compact encoding
//! (structs as arrays); trailing bytes after the value are an error.
//!
//! # Use
//!
//! - [`encode`] / [`encode_into`] and [`decode`] work on memory.
//! - [`write_frame`] and [`read_frame`] work on any tokio
//!   `AsyncWrite` / `AsyncRead`, which includes `quinn::SendStream` and
//!   `quinn::RecvStream` (and `tokio::net::TcpStream`).
//! - [`FrameReader`] buffers a stream and returns frame after frame; its
//!   [`FrameReader::read`] is cancel-safe, so it may sit in `tokio::select!`.
//!
//! ```
//! use raft_transport::frame;
//!
//! let bytes = frame::encode(&("put", 7u32), 1024).unwrap();
//! let (value, used): ((String, u32), usize) = frame::decode(&bytes, 1024).unwrap().unwrap();
//! assert_eq!(value, ("put".to_string(), 7));
//! assert_eq!(used, bytes.len());
//! ```

use bytes::{Buf, BufMut, Bytes, BytesMut};
use serde::de::DeserializeOwned;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::Error;

/// The frame format version this build writes and accepts.
pub const VERSION: u8 = 1;

/// Bytes before the payload: the version byte and the 4-byte length.
pub const HEADER_LEN: usize = 5;

/// A default payload limit: 64 MiB, room for a 1 MiB snapshot chunk or an
/// append of many entries, far below what would hurt a node's memory.
pub const DEFAULT_PAYLOAD_BYTES_MAX: usize = 64 << 20;

/// The largest limit the 4-byte length field can express.
pub const PAYLOAD_BYTES_LIMIT: usize = u32::MAX as usize;

/// Encodes `value` as one frame.
///
/// Fails with [`Error::FrameTooLarge`] when the payload would exceed
/// `payload_bytes_max`, and with [`Error::Encode`] when serde fails.
pub fn encode<T: Serialize + ?Sized>(value: &T, payload_bytes_max: usize) -> Result<Bytes, Error> {
    let mut buffer = BytesMut::new();
    encode_into(value, payload_bytes_max, &mut buffer)?;
    Ok(buffer.freeze())
}

/// Appends one frame holding `value` to `buffer`, so that several frames can
/// go out in one write. On error `buffer` is left as it was.
pub fn encode_into<T: Serialize + ?Sized>(
    value: &T,
    payload_bytes_max: usize,
    buffer: &mut BytesMut,
) -> Result<(), Error> {
    let frame_start = buffer.len();
    buffer.put_u8(VERSION);
    buffer.put_u32(0); // Patched below, once the payload length is known.

    // Serialize straight into the buffer, then write the length in front.
    let mut writer = buffer.writer();
    let result = rmp_serde::encode::write(&mut writer, value);
    let buffer = writer.into_inner();
    if let Err(error) = result {
        buffer.truncate(frame_start);
        return Err(error.into());
    }
    let payload_len = buffer.len() - frame_start - HEADER_LEN;
    if payload_len > payload_bytes_max.min(PAYLOAD_BYTES_LIMIT) {
        buffer.truncate(frame_start);
        return Err(Error::FrameTooLarge {
            length: payload_len as u64,
            max: payload_bytes_max,
        });
    }
    let length_field = &mut buffer[frame_start + 1..frame_start + HEADER_LEN];
    length_field.copy_from_slice(&(payload_len as u32).to_be_bytes());
    Ok(())
}

/// Reads the header at the start of `bytes`: `Ok(None)` when fewer than
/// [`HEADER_LEN`] bytes are there, otherwise the payload length, checked
/// against the version and the limit.
fn parse_header(bytes: &[u8], payload_bytes_max: usize) -> Result<Option<usize>, Error> {
    let Some(&version) = bytes.first() else {
        return Ok(None);
    };
    // The version is checked first, so that a peer speaking another format
    // gets the most telling error even from a short read.
    if version != VERSION {
        return Err(Error::FrameVersion {
            found: version,
            expected: VERSION,
        });
    }
    let Some(header) = bytes.get(..HEADER_LEN) else {
        return Ok(None);
    };
    checked_length(header, payload_bytes_max).map(Some)
}

/// The payload length a complete header announces, refused above the limit.
fn checked_length(header: &[u8], payload_bytes_max: usize) -> Result<usize, Error> {
    debug_assert_eq!(header.len(), HEADER_LEN);
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > payload_bytes_max {
        return Err(Error::FrameTooLarge {
            length: length as u64,
            max: payload_bytes_max,
        });
    }
    Ok(length)
}

/// Decodes one payload, refusing trailing bytes.
fn decode_payload<T: DeserializeOwned>(payload: &[u8]) -> Result<T, Error> {
    let mut deserializer = rmp_serde::Deserializer::new(std::io::Cursor::new(payload));
    let value = T::deserialize(&mut deserializer).map_err(|e| Error::Decode(e.to_string()))?;
    let used = deserializer.position() as usize;
    if used != payload.len() {
        return Err(Error::Decode(format!(
            "{} trailing bytes after the value",
            payload.len() - used
        )));
    }
    Ok(value)
}

/// Decodes the frame at the start of `bytes`.
///
/// Returns `Ok(None)` when `bytes` holds only the beginning of a frame (read
/// more and call again), or the value and the number of bytes the frame
/// used. Errors are final: the stream is not in this format.
pub fn decode<T: DeserializeOwned>(
    bytes: &[u8],
    payload_bytes_max: usize,
) -> Result<Option<(T, usize)>, Error> {
    let Some(payload_len) = parse_header(bytes, payload_bytes_max)? else {
        return Ok(None);
    };
    let frame_len = HEADER_LEN + payload_len;
    if bytes.len() < frame_len {
        return Ok(None);
    }
    let value = decode_payload(&bytes[HEADER_LEN..frame_len])?;
    Ok(Some((value, frame_len)))
}

/// Decodes `bytes` as exactly one frame: a short buffer is
/// [`Error::FrameTruncated`], extra bytes after the frame are an error.
pub fn decode_exact<T: DeserializeOwned>(
    bytes: &[u8],
    payload_bytes_max: usize,
) -> Result<T, Error> {
    match decode(bytes, payload_bytes_max)? {
        None => Err(Error::FrameTruncated {
            received: bytes.len(),
            expected: expected_len(bytes),
        }),
        Some((value, used)) if used == bytes.len() => Ok(value),
        Some((_, used)) => Err(Error::Decode(format!(
            "{} bytes after the end of the frame",
            bytes.len() - used
        ))),
    }
}

/// The full length of the frame that starts `bytes`, as far as the header
/// tells (the header length when the header itself is incomplete).
fn expected_len(bytes: &[u8]) -> usize {
    if bytes.len() < HEADER_LEN {
        return HEADER_LEN;
    }
    HEADER_LEN + u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize
}

/// Encodes `value` and writes it as one frame. Does not flush or finish the
/// stream.
pub async fn write_frame<W, T>(
    writer: &mut W,
    value: &T,
    payload_bytes_max: usize,
) -> Result<(), Error>
where
    W: AsyncWrite + Unpin + ?Sized,
    T: Serialize + ?Sized,
{
    let bytes = encode(value, payload_bytes_max)?;
    writer.write_all(&bytes).await?;
    Ok(())
}

/// Reads exactly one frame, without reading past it.
///
/// Returns `Ok(None)` when the stream ends cleanly before the first byte of
/// a frame, [`Error::FrameTruncated`] when it ends inside one. Not
/// cancel-safe (use [`FrameReader`] inside `select!`). Suited to streams
/// that carry one request or one answer.
pub async fn read_frame<R, T>(reader: &mut R, payload_bytes_max: usize) -> Result<Option<T>, Error>
where
    R: AsyncRead + Unpin + ?Sized,
    T: DeserializeOwned,
{
    let mut header = [0u8; HEADER_LEN];
    let mut received = 0;
    while received < HEADER_LEN {
        let count = reader.read(&mut header[received..]).await?;
        if count == 0 {
            if received == 0 {
                return Ok(None);
            }
            return Err(Error::FrameTruncated {
                received,
                expected: HEADER_LEN,
            });
        }
        received += count;
        // Refuse a wrong version as soon as its byte is in.
        parse_header(&header[..received], payload_bytes_max)?;
    }
    let payload_len = checked_length(&header, payload_bytes_max)?;

    let mut payload = vec![0u8; payload_len];
    let mut filled = 0;
    while filled < payload_len {
        let count = reader.read(&mut payload[filled..]).await?;
        if count == 0 {
            return Err(Error::FrameTruncated {
                received: HEADER_LEN + filled,
                expected: HEADER_LEN + payload_len,
            });
        }
        filled += count;
    }
    decode_payload(&payload).map(Some)
}

/// The most a [`FrameReader`] grows its buffer by before one read.
const READ_GROWTH_MAX: usize = 1 << 20;

/// Reads frame after frame from a byte stream, buffering what arrives.
///
/// Allocation is bounded by `payload_bytes_max` plus one read's worth of
/// bytes: a header that announces more is refused before its payload is
/// awaited.
#[derive(Debug)]
pub struct FrameReader<R> {
    /// The stream frames come from.
    inner: R,
    /// Bytes read but not yet returned as frames.
    buffer: BytesMut,
    /// Largest payload accepted.
    payload_bytes_max: usize,
}

impl<R: AsyncRead + Unpin> FrameReader<R> {
    /// Wraps `inner`, accepting payloads up to `payload_bytes_max` bytes.
    pub fn new(inner: R, payload_bytes_max: usize) -> FrameReader<R> {
        FrameReader {
            inner,
            buffer: BytesMut::with_capacity(16 * 1024),
            payload_bytes_max,
        }
    }

    /// Returns the next frame's value, or `Ok(None)` when the stream ended
    /// cleanly between frames.
    ///
    /// Cancel-safe: bytes already read stay buffered for the next call.
    pub async fn read<T: DeserializeOwned>(&mut self) -> Result<Option<T>, Error> {
        loop {
            if let Some((value, used)) = decode(&self.buffer, self.payload_bytes_max)? {
                self.buffer.advance(used);
                return Ok(Some(value));
            }

            // Make room for the rest of the frame at once when the header
            // tells its size, so a large frame needs few reads.
            // Growth is capped per read, so a header that announces a big
            // frame and then stalls does not pin the whole amount.
            let wanted = expected_len(&self.buffer).max(self.buffer.len() + 4096);
            let growth = (wanted - self.buffer.len()).min(READ_GROWTH_MAX);
            self.buffer.reserve(growth);
            let count = self.inner.read_buf(&mut self.buffer).await?;
            if count == 0 {
                if self.buffer.is_empty() {
                    return Ok(None);
                }
                return Err(Error::FrameTruncated {
                    received: self.buffer.len(),
                    expected: expected_len(&self.buffer),
                });
            }
        }
    }

    /// Changes the largest payload accepted from the next frame on (for
    /// example, a small limit for a handshake, then the normal one).
    pub fn set_payload_bytes_max(&mut self, payload_bytes_max: usize) {
        self.payload_bytes_max = payload_bytes_max;
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.inner
    }

    /// Gives the stream back; bytes buffered but not yet returned are lost.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_a_tuple_uses_the_whole_frame() {
        let bytes = encode(&(1u64, "two", vec![3u8; 3]), 100).unwrap();
        assert_eq!(bytes[0], VERSION);
        let length = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]) as usize;
        assert_eq!(length + HEADER_LEN, bytes.len());
        let value: (u64, String, Vec<u8>) = decode_exact(&bytes, 100).unwrap();
        assert_eq!(value, (1, "two".to_string(), vec![3, 3, 3]));
    }

    #[test]
    fn every_prefix_of_a_frame_asks_for_more_bytes() {
        let bytes = encode(&"hello frame", 100).unwrap();
        for cut in 0..bytes.len() {
            let partial: Option<(String, usize)> = decode(&bytes[..cut], 100).unwrap();
            assert!(partial.is_none(), "prefix of {cut} bytes decoded");
            let error = decode_exact::<String>(&bytes[..cut], 100).unwrap_err();
            assert!(matches!(error, Error::FrameTruncated { .. }), "{error}");
        }
    }

    #[test]
    fn unknown_version_is_refused_from_the_first_byte() {
        let mut bytes = encode(&5u8, 100).unwrap().to_vec();
        bytes[0] = 9;
        let error = decode::<u8>(&bytes[..1], 100).unwrap_err();
        assert!(matches!(
            error,
            Error::FrameVersion {
                found: 9,
                expected: VERSION
            }
        ));
    }

    #[test]
    fn oversized_length_is_refused_before_the_payload_arrives() {
        let header = [VERSION, 0xff, 0xff, 0xff, 0xff];
        let error = decode::<u8>(&header, 1000).unwrap_err();
        assert!(matches!(
            error,
            Error::FrameTooLarge {
                length: 0xffff_ffff,
                max: 1000
            }
        ));
    }

    #[test]
    fn encoding_a_value_above_the_limit_fails_and_leaves_the_buffer_alone() {
        let mut buffer = BytesMut::from(&b"kept"[..]);
        let error = encode_into(&vec![0u8; 100], 50, &mut buffer).unwrap_err();
        assert!(matches!(error, Error::FrameTooLarge { max: 50, .. }));
        assert_eq!(&buffer[..], b"kept");
    }

    #[test]
    fn trailing_bytes_inside_a_frame_are_refused() {
        // A payload holding two values where one is expected.
        let mut payload = rmp_serde::to_vec(&1u8).unwrap();
        payload.extend(rmp_serde::to_vec(&2u8).unwrap());
        let mut bytes = vec![VERSION];
        bytes.extend((payload.len() as u32).to_be_bytes());
        bytes.extend(payload);
        let error = decode::<u8>(&bytes, 100).unwrap_err();
        assert!(matches!(error, Error::Decode(_)), "{error}");
    }

    #[tokio::test]
    async fn frame_reader_returns_frames_written_back_to_back() {
        let mut bytes = BytesMut::new();
        for number in 0u32..50 {
            encode_into(&number, 100, &mut bytes).unwrap();
        }
        let mut reader = FrameReader::new(&bytes[..], 100);
        for number in 0u32..50 {
            assert_eq!(reader.read::<u32>().await.unwrap(), Some(number));
        }
        assert_eq!(reader.read::<u32>().await.unwrap(), None);
    }

    #[tokio::test]
    async fn read_frame_reports_a_stream_cut_inside_the_payload() {
        let bytes = encode(&"a longer string value", 100).unwrap();
        let mut cut = &bytes[..bytes.len() - 3];
        let error = read_frame::<_, String>(&mut cut, 100).await.unwrap_err();
        assert!(matches!(error, Error::FrameTruncated { .. }), "{error}");
        let mut whole = &bytes[..];
        let value: Option<String> = read_frame(&mut whole, 100).await.unwrap();
        assert_eq!(value.as_deref(), Some("a longer string value"));
        assert_eq!(
            read_frame::<_, String>(&mut whole, 100).await.unwrap(),
            None
        );
    }
}
