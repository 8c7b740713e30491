//! Random and mutated bytes fed to the frame decoder: it returns a value,
//! asks for more, or refuses with an error, and never panics.

use bytes::BytesMut;
use raft_core::Message;
use raft_transport::frame::{self, FrameReader, HEADER_LEN, VERSION};
use raft_transport::Error;

use crate::support::*;

/// raft-core's seeded generator, so a failure replays.
struct Rng(raft_core::Rng);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(raft_core::Rng::new(seed))
    }

    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }

    fn bytes(&mut self, length: usize) -> Vec<u8> {
        (0..length).map(|_| self.next() as u8).collect()
    }
}

const PAYLOAD_MAX: usize = 1 << 16;

/// Decodes `bytes` every way the crate offers and checks the answers agree.
fn check(bytes: &[u8], seed: u64, case: usize) {
    let context = || format!("seed {seed} case {case} bytes {bytes:02x?}");
    match frame::decode::<Message>(bytes, PAYLOAD_MAX) {
        Ok(Some((_, used))) => {
            assert!(used >= HEADER_LEN && used <= bytes.len(), "{}", context());
            assert!(
                frame::decode_exact::<Message>(&bytes[..used], PAYLOAD_MAX).is_ok(),
                "{}",
                context()
            );
        }
        Ok(None) => {
            let truncated = frame::decode_exact::<Message>(bytes, PAYLOAD_MAX);
            assert!(
                matches!(truncated, Err(Error::FrameTruncated { .. })),
                "{}",
                context()
            );
        }
        Err(error) => {
            let typed = matches!(
                error,
                Error::FrameVersion { .. } | Error::FrameTooLarge { .. } | Error::Decode(_)
            );
            assert!(typed, "{}: {error}", context());
        }
    }
}

#[test]
fn random_bytes_never_panic_the_decoder() {
    let seed = 0x5eed_0001;
    let mut rng = Rng::new(seed);
    for case in 0..20_000 {
        let length = rng.below(300) as usize;
        let mut bytes = rng.bytes(length);
        // Half the cases get a valid version byte and a plausible length, so
        // the payload decoder sees random input too.
        if case % 2 == 0 && bytes.len() >= HEADER_LEN {
            bytes[0] = VERSION;
            let payload = (bytes.len() - HEADER_LEN) as u32;
            bytes[1..HEADER_LEN].copy_from_slice(&payload.to_be_bytes());
        }
        check(&bytes, seed, case);
    }
}

#[test]
fn mutated_frames_never_panic_the_decoder() {
    let seed = 0x5eed_0002;
    let mut rng = Rng::new(seed);
    let originals: Vec<Vec<u8>> = [
        append(1, 2, 3, b"some command"),
        heartbeat(2, 1, 9),
        snapshot_chunk(1, 3, 64),
    ]
    .iter()
    .map(|message| frame::encode(message, PAYLOAD_MAX).unwrap().to_vec())
    .collect();

    for case in 0..20_000 {
        let mut bytes = originals[case % originals.len()].clone();
        match rng.below(4) {
            // Flip a few bytes of the payload (not the header).
            0 | 1 => {
                for _ in 0..=rng.below(4) {
                    let at = HEADER_LEN + rng.below((bytes.len() - HEADER_LEN) as u64) as usize;
                    bytes[at] = rng.next() as u8;
                }
            }
            // Cut it anywhere.
            2 => bytes.truncate(rng.below(bytes.len() as u64) as usize),
            // Give the header a random length.
            _ => {
                let length = rng.below(PAYLOAD_MAX as u64 * 2) as u32;
                bytes[1..HEADER_LEN].copy_from_slice(&length.to_be_bytes());
            }
        }
        check(&bytes, seed, case);
    }
}

#[tokio::test]
async fn frame_reader_survives_random_streams() {
    let seed = 0x5eed_0003;
    let mut rng = Rng::new(seed);
    for case in 0..2_000 {
        // Some valid frames, then random bytes.
        let mut stream = BytesMut::new();
        for term in 0..rng.below(3) {
            frame::encode_into(&heartbeat(1, 2, term), PAYLOAD_MAX, &mut stream).unwrap();
        }
        let valid_frames = stream.len();
        let noise_len = rng.below(200) as usize;
        let noise = rng.bytes(noise_len);
        stream.extend_from_slice(&noise);

        let mut reader = FrameReader::new(&stream[..], PAYLOAD_MAX);
        let mut frames_read = 0;
        loop {
            match reader.read::<Message>().await {
                Ok(Some(_)) => frames_read += 1,
                Ok(None) => break,
                Err(_) => break,
            }
            assert!(
                frames_read < 1000,
                "seed {seed} case {case}: reader does not stop"
            );
        }
        if noise.is_empty() {
            assert!(
                valid_frames == 0 || frames_read > 0,
                "seed {seed} case {case}"
            );
        }
    }
}
