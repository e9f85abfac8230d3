//! A socket's write buffer: queued frames coalesced into few chunks, large payloads shared.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes, BytesMut};

use crate::wire::Frame;

/// Payloads shorter than this are copied next to their header, so many small frames
/// leave in one contiguous chunk; longer ones are queued as the shared `Bytes`.
const COPY_BELOW: usize = 4096;

/// The most the tail holds before it joins `chunks` and a new one starts: a queue that
/// only grows (its peer does not read) is then a list of chunks this size, not one
/// buffer doubling as it grows, which would hold up to twice what is queued.
const TAIL_CHUNK: usize = 64 * 1024;

/// Payloads sent to many peers are shared from this size on; shorter ones are copied
/// like any small payload. Sharing one costs a reference count, a chunk for its
/// header, an iovec for each of the two, and holds the payload's whole allocation (and
/// the header chunk's) until written: about 170 bytes for a 49-byte frame, more than
/// the queue counts and more instructions than the copy.
const SHARE_FROM: usize = 256;

/// Bytes waiting to be written, in order: `chunks` first, then `tail`.
#[derive(Debug, Default)]
pub(crate) struct OutQueue {
    chunks: VecDeque<Bytes>,
    tail: BytesMut,
    len: usize,
}

impl OutQueue {
    /// Bytes queued.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Moves a full tail to the chunks before `more` bytes join it.
    fn seal_tail_before(&mut self, more: usize) {
        if !self.tail.is_empty() && self.tail.len() + more > TAIL_CHUNK {
            // A fresh buffer of one chunk, not `split`: the rest of the old one would
            // be reallocated by half again as the next tail grows into it (1.3 bytes
            // held a byte queued, against 1.01 this way).
            let fresh = BytesMut::with_capacity(TAIL_CHUNK);
            let full = std::mem::replace(&mut self.tail, fresh).freeze();
            self.chunks.push_back(full);
        }
    }

    /// Queues raw bytes (preamble, handshake).
    pub(crate) fn push_slice(&mut self, bytes: &[u8]) {
        self.seal_tail_before(bytes.len());
        self.tail.extend_from_slice(bytes);
        self.len += bytes.len();
    }

    /// Queues one frame; a large payload is shared, not copied.
    pub(crate) fn push_frame(&mut self, frame: &Frame) {
        self.push(frame, COPY_BELOW);
    }

    /// Queues one frame whose payload goes to many peers: shared unless it is tiny.
    pub(crate) fn push_frame_shared(&mut self, frame: &Frame) {
        self.push(frame, SHARE_FROM);
    }

    fn push(&mut self, frame: &Frame, copy_below: usize) {
        let copied = frame.payload().map_or(0, |p| p.len()).min(copy_below);
        self.seal_tail_before(frame.wire_len() - frame.payload().map_or(0, |p| p.len()) + copied);
        let before = self.tail.len();
        frame.encode_head(&mut self.tail);
        self.len += self.tail.len() - before;
        if let Some(payload) = frame.payload() {
            self.len += payload.len();
            if payload.len() < copy_below {
                self.tail.extend_from_slice(payload);
            } else {
                let head = self.tail.split().freeze();
                self.chunks.push_back(head);
                self.chunks.push_back(payload.clone());
            }
        }
    }

    /// Fills `dst` with the queued bytes in order; returns how many slices were used.
    pub(crate) fn slices<'a>(&'a self, dst: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for chunk in &self.chunks {
            if n == dst.len() {
                return n;
            }
            dst[n] = IoSlice::new(chunk);
            n += 1;
        }
        if n < dst.len() && !self.tail.is_empty() {
            dst[n] = IoSlice::new(&self.tail);
            n += 1;
        }
        n
    }

    /// Drops the first `n` bytes, which were written.
    pub(crate) fn advance(&mut self, mut n: usize) {
        debug_assert!(n <= self.len);
        n = n.min(self.len);
        self.len -= n;
        while n > 0 {
            match self.chunks.front_mut() {
                Some(chunk) => {
                    let take = n.min(chunk.len());
                    chunk.advance(take);
                    n -= take;
                    if chunk.is_empty() {
                        self.chunks.pop_front();
                    }
                }
                None => {
                    self.tail.advance(n);
                    n = 0;
                }
            }
        }
    }

    /// Appends a copy of the first `n` bytes queued in `src` (at most what it holds;
    /// `src` keeps them), lets `edit` change the copy in place, and returns what `edit`
    /// returns. The record layer seals frames this way: one copy, then encryption in
    /// place.
    #[cfg_attr(not(feature = "noise"), allow(dead_code))]
    pub(crate) fn push_copy_of_front<R>(
        &mut self,
        src: &OutQueue,
        n: usize,
        edit: impl FnOnce(&mut [u8]) -> R,
    ) -> R {
        self.seal_tail_before(n.min(src.len));
        let start = self.tail.len();
        let mut left = n.min(src.len);
        self.tail.reserve(left);
        for chunk in src.chunks.iter().map(|c| &c[..]).chain(Some(&src.tail[..])) {
            if left == 0 {
                break;
            }
            let take = chunk.len().min(left);
            self.tail.extend_from_slice(&chunk[..take]);
            left -= take;
        }
        self.len += self.tail.len() - start;
        edit(&mut self.tail[start..])
    }

    /// Drops everything queued.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.tail.clear();
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(q: &mut OutQueue, step: usize) -> Vec<u8> {
        let mut out = Vec::new();
        while !q.is_empty() {
            let mut slices = [IoSlice::new(&[]); 4];
            let n = q.slices(&mut slices);
            let mut budget = step;
            let mut taken = 0;
            for s in &slices[..n] {
                let t = s.len().min(budget);
                out.extend_from_slice(&s[..t]);
                budget -= t;
                taken += t;
            }
            q.advance(taken);
        }
        out
    }

    #[test]
    fn small_frames_coalesce_large_payloads_are_shared() {
        let mut q = OutQueue::default();
        let big = Bytes::from(vec![7u8; 10_000]);
        q.push_frame(&Frame::Message(Bytes::from_static(b"hi")));
        q.push_frame(&Frame::Ping(9));
        assert_eq!(q.chunks.len(), 0, "small frames stay in one buffer");
        q.push_frame(&Frame::Message(big.clone()));
        assert_eq!(q.chunks.len(), 2);
        assert_eq!(q.chunks[1].as_ptr(), big.as_ptr(), "payload not copied");
        let mut expect = BytesMut::new();
        Frame::Message(Bytes::from_static(b"hi")).encode(&mut expect);
        Frame::Ping(9).encode(&mut expect);
        Frame::Message(big).encode(&mut expect);
        assert_eq!(q.len(), expect.len());
        // A copy of the front crosses chunk boundaries and leaves the source whole.
        let mut copy = OutQueue::default();
        copy.push_slice(b"#");
        for n in [3, 9, expect.len(), expect.len() + 10] {
            let seen = copy.push_copy_of_front(&q, n, |region| region.to_vec());
            assert_eq!(&seen[..], &expect[..n.min(expect.len())]);
        }
        assert_eq!(q.len(), expect.len());
        let copied = 3 + 9 + 2 * expect.len();
        assert_eq!(copy.len(), 1 + copied);
        assert_eq!(drain(&mut copy, usize::MAX).len(), 1 + copied);
        // A shared payload is shared from SHARE_FROM bytes on, copied below.
        let shared = Bytes::from(vec![1u8; SHARE_FROM]);
        q.push_frame_shared(&Frame::Message(shared.clone()));
        assert_eq!(q.chunks.back().map(|c| c.as_ptr()), Some(shared.as_ptr()));
        let chunks = q.chunks.len();
        let tiny = Bytes::from(vec![2u8; SHARE_FROM - 1]);
        q.push_frame_shared(&Frame::Message(tiny.clone()));
        assert_eq!(q.chunks.len(), chunks, "tiny shared payload not copied");
        assert!(q.tail.ends_with(&tiny));
        for step in [1, 7, 4096, usize::MAX] {
            let mut q2 = OutQueue::default();
            q2.push_frame(&Frame::Message(Bytes::from_static(b"hi")));
            q2.push_frame(&Frame::Ping(9));
            q2.push_frame(&Frame::Message(Bytes::from(vec![7u8; 10_000])));
            assert_eq!(drain(&mut q2, step), expect.to_vec(), "step {step}");
        }
    }
}
