//! Framing without I/O: a byte stream in, verified frames out.
//!
//! Every frame is a flatbuffers *size-prefixed* buffer: a little-endian `u32` with the number
//! of bytes that follow, then a `Frame` table whose identifier is `RFW1`. [`FrameReader`]
//! takes bytes as they arrive from any transport (a blocking socket, an async runtime, a
//! test) and hands back whole decoded frames; it refuses a length over its `frame_bytes_max`
//! as soon as the prefix is in, before buffering the body.

use crate::message::{Envelope, FrameError, decode_frame};

/// Bytes of the length prefix.
pub const LENGTH_PREFIX_BYTES: usize = 4;

/// Default for the longest frame, prefix excluded: a deployment may carry
/// 32 MiB of BPMN (`ringflow_core::limits::DEPLOYMENT_BYTES_MAX`), plus room for the
/// framing around it.
pub const FRAME_BYTES_MAX_DEFAULT: usize = 33 * 1024 * 1024;

/// The smallest useful frame (root offset, identifier, a table): anything shorter is refused.
pub const FRAME_BYTES_MIN: usize = 12;

/// Splits a byte stream into frames.
///
/// The bytes received and not yet handed out are `buffer[start..end]`; `buffer[end..]` is
/// room that earlier reads already zeroed, so that a read into [`FrameReader::spare`]
/// zeroes memory only when the buffer grows, not on every read (a read of a few small
/// requests into 64 KiB of room used to zero all of it: 6% of a shard's instructions at 64
/// requests in flight). The buffer keeps its largest size, as its capacity did before.
#[derive(Debug)]
pub struct FrameReader {
    buffer: Vec<u8>,
    start: usize,
    end: usize,
    max: usize,
}

impl FrameReader {
    /// A reader that refuses frames longer than `frame_bytes_max`.
    pub fn new(frame_bytes_max: usize) -> FrameReader {
        FrameReader {
            buffer: Vec::new(),
            start: 0,
            end: 0,
            max: frame_bytes_max,
        }
    }

    /// Appends bytes received from the peer.
    pub fn push(&mut self, bytes: &[u8]) {
        self.spare(bytes.len()).copy_from_slice(bytes);
        self.end += bytes.len();
    }

    /// Room for at least `at_least` more bytes, to read into directly; call
    /// [`FrameReader::filled`] with the number of bytes written.
    pub fn spare(&mut self, at_least: usize) -> &mut [u8] {
        self.compact();
        let needed = self.end + at_least;
        if self.buffer.len() < needed {
            self.buffer.resize(needed, 0);
        }
        &mut self.buffer[self.end..needed]
    }

    /// Keeps `count` bytes of the last [`FrameReader::spare`] of `spare` bytes; the rest
    /// stays room for the next read.
    pub fn filled(&mut self, spare: usize, count: usize) {
        assert!(
            count <= spare,
            "{count} bytes read into {spare} bytes of room"
        );
        self.end += count;
    }

    /// Bytes received and not yet handed out.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// The body length of the frame being received, once its prefix is in.
    pub fn announced(&self) -> Option<usize> {
        let pending = &self.buffer[self.start..self.end];
        let prefix: [u8; LENGTH_PREFIX_BYTES] =
            pending.get(..LENGTH_PREFIX_BYTES)?.try_into().ok()?;
        Some(u32::from_le_bytes(prefix) as usize)
    }

    /// The next whole frame, decoded, or `None` until more bytes arrive. An error leaves the
    /// stream unusable: the peer must close the connection.
    pub fn next_frame(&mut self) -> Result<Option<Vec<Envelope>>, FrameError> {
        let Some(length) = self.announced() else {
            return Ok(None);
        };
        if length > self.max {
            return Err(FrameError::TooLarge {
                length,
                max: self.max,
            });
        }
        if length < FRAME_BYTES_MIN {
            return Err(FrameError::Malformed(format!(
                "a frame of {length} bytes is shorter than any message ({FRAME_BYTES_MIN})"
            )));
        }
        let body_start = self.start + LENGTH_PREFIX_BYTES;
        if self.end - body_start < length {
            return Ok(None);
        }
        let frame = &self.buffer[self.start..body_start + length];
        self.start = body_start + length;
        decode_frame(frame).map(Some)
    }

    fn compact(&mut self) {
        if self.start > 0 && (self.start == self.end || self.start >= 64 * 1024) {
            self.buffer.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Message, Request, Response, request_frame, response_frame};

    #[test]
    fn frames_split_across_reads_come_out_whole() {
        let mut bytes = request_frame(&[(1, Request::Topology)]);
        bytes.extend(response_frame(
            2,
            &Response::Done {
                key: 9,
                incident_key: 0,
            },
        ));
        let mut reader = FrameReader::new(1024);
        let mut frames = Vec::new();
        for byte in &bytes {
            reader.push(std::slice::from_ref(byte));
            while let Some(frame) = reader.next_frame().expect("valid") {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 2);
        assert_eq!(frames[0][0].message, Message::Request(Request::Topology));
        assert_eq!(frames[1][0].request_id, 2);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn reads_into_spare_room_across_compactions_keep_every_frame_whole() {
        let mut stream = Vec::new();
        for id in 0..5000u64 {
            stream.extend(request_frame(&[(id, Request::Topology)]));
        }
        let mut reader = FrameReader::new(1024);
        let mut next_id = 0u64;
        // Odd read sizes, so frames straddle reads and compactions.
        for chunk in stream.chunks(997) {
            let room = reader.spare(4096);
            room[..chunk.len()].copy_from_slice(chunk);
            reader.filled(4096, chunk.len());
            while let Some(frame) = reader.next_frame().expect("valid") {
                assert_eq!(frame[0].request_id, next_id);
                next_id += 1;
            }
        }
        assert_eq!(next_id, 5000);
        assert_eq!(reader.buffered(), 0);
    }

    #[test]
    fn room_is_zeroed_once_and_reused_and_old_bytes_never_come_back() {
        let mut reader = FrameReader::new(1024);
        let frame = request_frame(&[(7, Request::Topology)]);
        // Fill the room with garbage each time: only the bytes declared filled count.
        for round in 0..100u64 {
            let room = reader.spare(4096);
            assert_eq!(room.len(), 4096);
            room.fill(0xee);
            room[..frame.len()].copy_from_slice(&frame);
            reader.filled(4096, frame.len());
            let got = reader.next_frame().expect("valid").expect("a frame");
            assert_eq!(got[0].request_id, 7, "round {round}");
            assert_eq!(reader.next_frame().expect("nothing more"), None);
            assert_eq!(reader.buffered(), 0);
        }
        // Every read fit the first room: the buffer never grew past it.
        assert_eq!(reader.buffer.len(), 4096);
        // Half a frame, then the rest through push: the garbage after the first half is
        // not part of it.
        let room = reader.spare(4096);
        room.fill(0xee);
        room[..5].copy_from_slice(&frame[..5]);
        reader.filled(4096, 5);
        assert_eq!(reader.next_frame().expect("incomplete"), None);
        reader.push(&frame[5..]);
        let got = reader.next_frame().expect("valid").expect("a frame");
        assert_eq!(got[0].request_id, 7);
    }

    #[test]
    #[should_panic(expected = "read into")]
    fn filling_more_than_the_room_is_a_bug() {
        let mut reader = FrameReader::new(1024);
        reader.spare(16);
        reader.filled(16, 17);
    }

    #[test]
    fn an_oversized_prefix_is_refused_before_the_body_arrives() {
        let mut reader = FrameReader::new(100);
        reader.push(&1000u32.to_le_bytes());
        let error = reader.next_frame().expect_err("too large");
        assert_eq!(
            error,
            FrameError::TooLarge {
                length: 1000,
                max: 100
            }
        );
        assert_eq!(
            error.to_string(),
            "frame of 1000 bytes is over frame_bytes_max (100)"
        );
    }

    #[test]
    fn garbage_and_tiny_frames_are_refused() {
        let mut reader = FrameReader::new(1024);
        reader.push(&3u32.to_le_bytes());
        reader.push(b"abc");
        assert!(matches!(reader.next_frame(), Err(FrameError::Malformed(_))));
        let mut reader = FrameReader::new(1024);
        reader.push(&16u32.to_le_bytes());
        reader.push(&[0xab; 16]);
        let error = reader.next_frame().expect_err("garbage");
        assert!(error.to_string().contains("RFW1"), "{error}");
    }
}
