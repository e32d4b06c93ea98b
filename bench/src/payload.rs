//! The benchmark `msg`: `{"data":{"t":<send time ns>,"p":"<padding>"},"s":<storage>}`,
//! pre-serialized once as a frame template; sending fills in the 19 digits
//! of the timestamp and, for inserts waiting for acks, an ack id.

use serde::Deserialize;
use serde_json::value::RawValue;

/// Digits of a Unix timestamp in nanoseconds (fixed from 2001 to 2286).
pub const TS_DIGITS: usize = 19;
const HEAD: &str = "[\"msg\",{\"data\":{\"t\":";
const MID: &str = ",\"p\":\"";

/// A pre-serialized `msg` event frame with a slot for the timestamp.
#[derive(Debug, Clone)]
pub struct MsgTemplate {
    /// `","p":"<pad>"},"s":N}]`: everything after the timestamp.
    tail: String,
    /// `"},"s":N}]`: everything after the padding.
    tail_end: String,
    pad: usize,
    len: usize,
}

impl MsgTemplate {
    /// A template whose frames (without an ack id) are `frame_bytes` long, or
    /// as short as possible when that is less than the fixed part.
    pub fn new(frame_bytes: usize, storage: u8) -> Self {
        let mut tail_end = String::from("\"},\"s\":");
        tail_end.push_str(&storage.to_string());
        tail_end.push_str("}]");
        let fixed = 2 + HEAD.len() + TS_DIGITS + MID.len() + tail_end.len();
        let pad = frame_bytes.saturating_sub(fixed);
        let mut tail = String::with_capacity(MID.len() + pad + tail_end.len());
        tail.push_str(MID);
        tail.extend(padding(pad, 0x9e37_79b9_7f4a_7c15));
        tail.push_str(&tail_end);
        Self {
            len: fixed + pad,
            tail,
            tail_end,
            pad,
        }
    }

    /// Length of a frame without an ack id, in bytes.
    pub fn frame_len(&self) -> usize {
        self.len
    }

    /// The frame for send time `t_ns`, asking for ack `ack` if given.
    pub fn render(&self, t_ns: u64, ack: Option<u64>) -> String {
        let mut s = String::with_capacity(self.len + 20);
        s.push_str("42");
        if let Some(id) = ack {
            s.push_str(&id.to_string());
        }
        s.push_str(HEAD);
        push_fixed_digits(&mut s, t_ns);
        s.push_str(&self.tail);
        s
    }

    /// Like [`MsgTemplate::render`] with padding of its own drawn from
    /// `seed`, so that stored messages do not compress better than real ones
    /// (the stored history is what `sync` with gzip compresses).
    pub fn render_varied(&self, t_ns: u64, ack: Option<u64>, seed: u64) -> String {
        let mut s = String::with_capacity(self.len + 20);
        s.push_str("42");
        if let Some(id) = ack {
            s.push_str(&id.to_string());
        }
        s.push_str(HEAD);
        push_fixed_digits(&mut s, t_ns);
        s.push_str(MID);
        s.extend(padding(self.pad, seed));
        s.push_str(&self.tail_end);
        s
    }
}

/// `len` pseudo-random letters and digits (xorshift64*), JSON-safe.
fn padding(len: usize, seed: u64) -> impl Iterator<Item = char> {
    const ALPHABET: &[u8; 62] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut x = seed | 1;
    (0..len).map(move |_| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 32;
        char::from(ALPHABET[(r % 62) as usize])
    })
}

/// Appends `v` as exactly [`TS_DIGITS`] decimal digits (clamped into range,
/// so that the JSON number never has a leading zero).
fn push_fixed_digits(out: &mut String, v: u64) {
    let v = v.clamp(1_000_000_000_000_000_000, 9_999_999_999_999_999_999);
    let mut buf = [0u8; TS_DIGITS];
    let mut rest = v;
    for slot in buf.iter_mut().rev() {
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
    out.extend(buf.iter().map(|&b| char::from(b)));
}

/// The send time inside a relayed benchmark `msg` (`data.t`), if it is one.
pub fn stamp_of(msg: &RawValue) -> Option<u64> {
    #[derive(Deserialize)]
    struct Relayed {
        data: Stamp,
    }
    #[derive(Deserialize)]
    struct Stamp {
        t: u64,
    }
    serde_json::from_str::<Relayed>(msg.get())
        .ok()
        .map(|r| r.data.t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engineio::as_event;

    #[test]
    fn frames_have_the_requested_size_and_parse_back() {
        let t = 1_700_000_000_123_456_789u64;
        for size in [200usize, 512, 1024] {
            let tpl = MsgTemplate::new(size, 2);
            let frame = tpl.render(t, None);
            assert_eq!(frame.len(), size);
            assert_eq!(tpl.frame_len(), size);
            let (args, ack) = as_event(&frame).expect("valid event");
            assert_eq!((args.name.as_ref(), ack), ("msg", None));
            let arg = args.arg.expect("payload");
            assert_eq!(stamp_of(arg), Some(t));
            let v: serde_json::Value = serde_json::from_str(arg.get()).expect("json");
            assert_eq!(v["s"], 2);
        }
    }

    #[test]
    fn varied_frames_differ_only_in_padding() {
        let tpl = MsgTemplate::new(200, 0);
        let a = tpl.render_varied(1_700_000_000_000_000_000, Some(1), 1);
        let b = tpl.render_varied(1_700_000_000_000_000_000, Some(1), 2);
        assert_ne!(a, b);
        assert_eq!(a.len(), tpl.frame_len() + 1);
        for f in [&a, &b] {
            let (args, ack) = as_event(f).expect("valid event");
            assert_eq!(ack, Some(1));
            assert_eq!(
                stamp_of(args.arg.expect("arg")),
                Some(1_700_000_000_000_000_000)
            );
        }
    }

    #[test]
    fn tiny_sizes_give_the_shortest_frame() {
        let tpl = MsgTemplate::new(10, 0);
        let frame = tpl.render(1_700_000_000_000_000_000, Some(42));
        let (args, ack) = as_event(&frame).expect("valid event");
        assert_eq!(ack, Some(42));
        assert!(args.arg.is_some());
        assert_eq!(tpl.frame_len(), frame.len() - 2);
    }

    #[test]
    fn relayed_copy_with_sender_stamp_parses() {
        let relayed =
            r#"42["msg",{"data":{"t":1700000000000000001,"p":"xx"},"s":2,"2":"u-1","seq":4}]"#;
        let (args, _) = as_event(relayed).expect("event");
        assert_eq!(
            stamp_of(args.arg.expect("arg")),
            Some(1_700_000_000_000_000_001)
        );
        let (other, _) = as_event(r#"42["msg",{"data":"hello","2":"u"}]"#).expect("event");
        assert_eq!(stamp_of(other.arg.expect("arg")), None);
    }
}
