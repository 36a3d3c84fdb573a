//! The codec's bounds on untrusted sizes: a writer that stops a serializer once the size limit
//! is passed (so a huge state is never encoded whole), and a scan of MessagePack that bounds
//! the nesting depth before anything recursive runs on it.

use std::io;

/// The default most nested arrays and maps a decoded body may have: 128, what `serde_json`
/// accepts by default, so any state that came from JSON fits, and deep enough for any state
/// type written by hand; shallow enough that decoding never comes near a thread's stack limit.
pub const DEFAULT_MAX_DEPTH: usize = 128;

/// Past the limit, how many more bytes an encoding counts before it stops: the limit again,
/// at least 64 KiB. A refused state's size is exact up to there, a lower bound beyond.
pub(crate) fn counting_cap(limit: usize) -> usize {
    limit.saturating_add(limit.max(64 * 1024))
}

/// Collects an encoding up to `max_len` bytes; past it keeps only counting, and fails the
/// serializer (an I/O error) once the count reaches the cap. No more than `max_len` bytes are
/// ever held.
pub(crate) struct LimitedWriter {
    buf: Vec<u8>,
    max_len: usize,
    cap: usize,
    /// Bytes written in all, once past `max_len` (`None`: not past it; `buf.len()` counts).
    over: Option<usize>,
}

impl LimitedWriter {
    /// A writer whose buffer starts with `prefix` zero bytes (room for a header filled in
    /// later), holding at most `max_len` bytes in all and counting up to `cap` (more than
    /// `max_len`; the caller's [`counting_cap`], less what it adds itself).
    pub(crate) fn new(prefix: usize, max_len: usize, cap: usize) -> Self {
        let mut buf = Vec::with_capacity(prefix.saturating_add(256).min(max_len.max(prefix)));
        buf.resize(prefix, 0);
        let over = (prefix > max_len).then_some(prefix);
        Self {
            buf,
            max_len,
            cap: cap.max(max_len.saturating_add(1)),
            over,
        }
    }

    /// Whether more than `max_len` bytes were written.
    pub(crate) fn over(&self) -> bool {
        self.over.is_some()
    }

    /// How many bytes were written, the prefix included (counting stopped at the cap).
    pub(crate) fn counted(&self) -> usize {
        self.over.unwrap_or(self.buf.len())
    }

    /// The bytes, prefix included; only meaningful when not [`over`](Self::over).
    pub(crate) fn into_inner(self) -> Vec<u8> {
        self.buf
    }

    /// Counts `n` more bytes past the limit; an error once the cap is reached.
    #[cold]
    fn count_over(&mut self, n: usize) -> io::Result<()> {
        let counted = match self.over {
            Some(counted) => counted,
            None => {
                let counted = self.buf.len();
                // What was kept is useless now: give it back at once.
                self.buf = Vec::new();
                counted
            }
        }
        .saturating_add(n);
        if counted >= self.cap {
            self.over = Some(self.cap);
            return Err(io::Error::other("the encoded state is over the size limit"));
        }
        self.over = Some(counted);
        Ok(())
    }
}

impl io::Write for LimitedWriter {
    #[inline]
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.write_all(data).map(|()| data.len())
    }

    #[inline]
    fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        if self.over.is_none() && data.len() <= self.max_len - self.buf.len() {
            self.buf.extend_from_slice(data);
            Ok(())
        } else {
            self.count_over(data.len())
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Walks the MessagePack value at the start of `body` without recursion and checks that its
/// arrays and maps are nested at most `max_depth` deep (an array of scalars is depth 1).
/// Returns where the value ends. The reason of an error is for [`Error::Corrupt`].
///
/// Every value takes at least one byte, so the walk takes at most `body.len()` steps whatever
/// lengths the markers declare, and holds one counter per open container.
///
/// [`Error::Corrupt`]: crate::Error::Corrupt
pub(crate) fn scan_depth(body: &[u8], max_depth: usize) -> Result<usize, String> {
    // Items still expected by each open array or map, innermost last.
    let mut open: Vec<u64> = Vec::new();
    let mut pos = 0usize;
    loop {
        let Some(&marker) = body.get(pos) else {
            return Err(format!(
                "the MessagePack ends at byte {pos}, inside a value (truncated)"
            ));
        };
        pos += 1;
        let fixed = |n: usize| Ok::<_, String>((n, None));
        let sized = |pos: usize, width: usize| -> Result<(usize, Option<u64>), String> {
            read_len(body, pos, width).map(|len| (width.saturating_add(len as usize), None))
        };
        let counted = |pos: usize, width: usize, per_item: u64| {
            read_len(body, pos, width).map(|len| (width, Some(len.saturating_mul(per_item))))
        };
        // (bytes to skip after the marker, items of a container it opens)
        let (skip, items) = match marker {
            0x00..=0x7f | 0xe0..=0xff | 0xc0 | 0xc2 | 0xc3 => fixed(0)?,
            0x80..=0x8f => (0, Some(u64::from(marker & 0x0f) * 2)),
            0x90..=0x9f => (0, Some(u64::from(marker & 0x0f))),
            0xa0..=0xbf => fixed(usize::from(marker & 0x1f))?,
            0xc1 => {
                return Err(format!(
                    "byte {} is 0xc1, which MessagePack never uses",
                    pos - 1
                ));
            }
            0xc4 | 0xd9 => sized(pos, 1)?,
            0xc5 | 0xda => sized(pos, 2)?,
            0xc6 | 0xdb => sized(pos, 4)?,
            // ext 8/16/32: the length, a type byte, the data
            0xc7 => sized(pos, 1).map(|(n, i)| (n + 1, i))?,
            0xc8 => sized(pos, 2).map(|(n, i)| (n + 1, i))?,
            0xc9 => sized(pos, 4).map(|(n, i)| (n + 1, i))?,
            0xca => fixed(4)?,
            0xcb => fixed(8)?,
            0xcc | 0xd0 => fixed(1)?,
            0xcd | 0xd1 => fixed(2)?,
            0xce | 0xd2 => fixed(4)?,
            0xcf | 0xd3 => fixed(8)?,
            // fixext 1/2/4/8/16: a type byte, the data
            0xd4 => fixed(2)?,
            0xd5 => fixed(3)?,
            0xd6 => fixed(5)?,
            0xd7 => fixed(9)?,
            0xd8 => fixed(17)?,
            0xdc => counted(pos, 2, 1)?,
            0xdd => counted(pos, 4, 1)?,
            0xde => counted(pos, 2, 2)?,
            0xdf => counted(pos, 4, 2)?,
        };
        pos = pos
            .checked_add(skip)
            .filter(|&end| end <= body.len())
            .ok_or_else(|| {
                format!(
                    "the MessagePack ends inside the value at byte {} (truncated)",
                    pos - 1
                )
            })?;
        if let Some(items) = items {
            if open.len() >= max_depth {
                return Err(format!(
                    "the state nests arrays and maps more than {max_depth} deep"
                ));
            }
            if items > 0 {
                open.push(items);
                continue;
            }
        }
        // A value is complete: count it off its container, and close the containers it
        // completes.
        loop {
            match open.last_mut() {
                None => return Ok(pos),
                Some(left) => {
                    *left -= 1;
                    if *left > 0 {
                        break;
                    }
                    open.pop();
                }
            }
        }
    }
}

/// The big-endian length of `width` bytes at `pos`.
fn read_len(body: &[u8], pos: usize, width: usize) -> Result<u64, String> {
    let bytes = pos
        .checked_add(width)
        .and_then(|end| body.get(pos..end))
        .ok_or_else(|| {
            format!(
                "the MessagePack ends inside a length at byte {} (truncated)",
                pos.saturating_sub(1)
            )
        })?;
    Ok(bytes.iter().fold(0u64, |n, &b| (n << 8) | u64::from(b)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn the_writer_keeps_up_to_the_limit_and_counts_past_it_up_to_the_cap() {
        let mut w = LimitedWriter::new(3, 10, counting_cap(10));
        w.write_all(b"1234567").unwrap();
        assert!(!w.over());
        assert_eq!(w.counted(), 10);
        w.write_all(b"x").unwrap();
        assert!(w.over());
        assert_eq!(w.counted(), 11);
        // The cap: the limit again, at least 64 KiB past it.
        let err = w.write_all(&vec![0; 128 * 1024]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::Other);
        assert_eq!(w.counted(), counting_cap(10));
        assert_eq!(counting_cap(10), 10 + 64 * 1024);
        assert_eq!(counting_cap(1 << 20), 2 << 20);
        assert_eq!(counting_cap(usize::MAX), usize::MAX);
    }

    fn nested_arrays(depth: usize) -> Vec<u8> {
        let mut v = vec![0x91; depth];
        v.push(0x01);
        v
    }

    #[test]
    fn the_scan_finds_the_end_and_bounds_the_depth() {
        let value = serde_json::json!({"a": [1, {"b": [true, null, "x"]}], "c": 1.5});
        let body = rmp_serde::to_vec_named(&value).unwrap();
        assert_eq!(scan_depth(&body, 4), Ok(body.len()));
        assert!(
            scan_depth(&body, 3)
                .unwrap_err()
                .contains("more than 3 deep")
        );
        assert_eq!(
            scan_depth(&[0x90, 0x80, 0xc0], 0).unwrap_err(),
            "the state nests arrays and maps more than 0 deep"
        );
        assert_eq!(scan_depth(&[0x90, 0x01], 1), Ok(1));
        assert_eq!(scan_depth(&nested_arrays(128), 128), Ok(129));
        assert!(scan_depth(&nested_arrays(129), 128).is_err());
        assert!(scan_depth(&nested_arrays(100_000), 128).is_err());
    }

    #[test]
    fn the_scan_refuses_truncated_and_reserved_input() {
        for bad in [
            &[][..],
            &[0x92, 0x01],
            &[0xa3, b'a'],
            &[0xdd, 0xff, 0xff, 0xff, 0xff, 0x01],
            &[0xdb, 0, 0],
            &[0xc1],
            &[0x91, 0xc1],
            &[0xd8, 1, 2],
            &[0xc7, 4, 1, 2],
        ] {
            assert!(scan_depth(bad, 16).is_err(), "{bad:?}");
        }
    }
}
