//! The server side of SPDY/3.1 framing, as much as `kubectl port-forward` uses of it (client-go
//! speaks SPDY through moby/spdystream): control frames SYN_STREAM, SYN_REPLY, RST_STREAM,
//! SETTINGS, PING, GOAWAY, HEADERS and WINDOW_UPDATE, data frames, and header blocks compressed
//! with zlib over SPDY/3's preset dictionary (one compression context per direction per session).
//! Flow control is not enforced, as spdystream does not enforce it either.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// A frame with FIN set ends its sender's half of the stream.
pub const FLAG_FIN: u8 = 0x01;

/// SPDY/3's zlib dictionary (draft 3, section 2.6.10.1): length-prefixed header names and values,
/// then common text.
pub fn dictionary() -> Vec<u8> {
    const WORDS: &[&str] = &[
        "options",
        "head",
        "post",
        "put",
        "delete",
        "trace",
        "accept",
        "accept-charset",
        "accept-encoding",
        "accept-language",
        "accept-ranges",
        "age",
        "allow",
        "authorization",
        "cache-control",
        "connection",
        "content-base",
        "content-encoding",
        "content-language",
        "content-length",
        "content-location",
        "content-md5",
        "content-range",
        "content-type",
        "date",
        "etag",
        "expect",
        "expires",
        "from",
        "host",
        "if-match",
        "if-modified-since",
        "if-none-match",
        "if-range",
        "if-unmodified-since",
        "last-modified",
        "location",
        "max-forwards",
        "pragma",
        "proxy-authenticate",
        "proxy-authorization",
        "range",
        "referer",
        "retry-after",
        "server",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "user-agent",
        "vary",
        "via",
        "warning",
        "www-authenticate",
        "method",
        "get",
        "status",
        "200 OK",
        "version",
        "HTTP/1.1",
        "url",
        "public",
        "set-cookie",
        "keep-alive",
        "origin",
    ];
    const TAIL: &str = "100101201202205206300302303304305306307402405406407408409410411412413414415416417\
        502504505203 Non-Authoritative Information204 No Content301 Moved Permanently\
        400 Bad Request401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error\
        501 Not Implemented503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec \
        00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,\
        image/gif,application/xml,application/xhtml+xml,text/plain,text/javascript,\
        publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
    let mut dict = Vec::with_capacity(1423);
    for word in WORDS {
        dict.extend_from_slice(&(word.len() as u32).to_be_bytes());
        dict.extend_from_slice(word.as_bytes());
    }
    dict.extend_from_slice(TAIL.as_bytes());
    dict
}

/// A frame, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// A new stream from the peer, with its headers (names lower case).
    SynStream {
        /// Its id.
        stream_id: u32,
        /// Its headers.
        headers: Vec<(String, String)>,
        /// FIN: the peer will send nothing on it.
        fin: bool,
    },
    /// The answer to a stream we opened (a client opens them all here).
    SynReply {
        /// Its id.
        stream_id: u32,
        /// FIN.
        fin: bool,
    },
    /// A stream reset.
    RstStream {
        /// Its id.
        stream_id: u32,
        /// Why.
        status: u32,
    },
    /// A ping, to be echoed.
    Ping(u32),
    /// The peer is going away.
    GoAway,
    /// Bytes of a stream.
    Data {
        /// Its id.
        stream_id: u32,
        /// FIN: the last the peer sends on it.
        fin: bool,
        /// The bytes.
        data: Vec<u8>,
    },
    /// Anything else (SETTINGS, WINDOW_UPDATE, HEADERS): nothing to do.
    Other,
}

/// A frame that cannot be understood.
#[derive(Debug, thiserror::Error)]
#[error("SPDY: {0}")]
pub struct SpdyError(pub String);

/// The header blocks of one direction of a session: one zlib stream for all of them.
pub struct HeaderCodec {
    inflate: Decompress,
    deflate: Compress,
    dictionary: Vec<u8>,
}

impl Default for HeaderCodec {
    fn default() -> Self {
        let dictionary = dictionary();
        let mut deflate = Compress::new(Compression::default(), true);
        // A fresh compressor takes a dictionary before its first byte.
        let _ = deflate.set_dictionary(&dictionary);
        Self {
            inflate: Decompress::new(true),
            deflate,
            dictionary,
        }
    }
}

impl HeaderCodec {
    /// Decompresses one header block.
    pub fn decode(&mut self, block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
        let mut out = Vec::with_capacity(block.len() * 4 + 64);
        let mut input = block;
        loop {
            let before_in = self.inflate.total_in();
            if out.capacity() - out.len() < 256 {
                out.reserve(4096);
            }
            match self
                .inflate
                .decompress_vec(input, &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) if e.needs_dictionary().is_some() => {
                    self.inflate
                        .set_dictionary(&self.dictionary)
                        .map_err(|e| SpdyError(format!("header dictionary: {e}")))?;
                }
                Err(e) => return Err(SpdyError(format!("header block: {e}"))),
            }
            let used = (self.inflate.total_in() - before_in) as usize;
            input = &input[used..];
            if input.is_empty() && out.capacity() > out.len() {
                break;
            }
        }
        parse_headers(&out)
    }

    /// Compresses one header block.
    pub fn encode(&mut self, headers: &[(&str, &str)]) -> Result<Vec<u8>, SpdyError> {
        let mut plain = Vec::new();
        plain.extend_from_slice(&(headers.len() as u32).to_be_bytes());
        for (name, value) in headers {
            for s in [name, value] {
                plain.extend_from_slice(&(s.len() as u32).to_be_bytes());
                plain.extend_from_slice(s.as_bytes());
            }
        }
        let mut out = Vec::with_capacity(plain.len() + 64);
        let mut input = plain.as_slice();
        loop {
            let before_in = self.deflate.total_in();
            out.reserve(256);
            let status = self
                .deflate
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| SpdyError(format!("compressing headers: {e}")))?;
            input = &input[(self.deflate.total_in() - before_in) as usize..];
            // A sync flush is complete once there is output room left over.
            if input.is_empty() && out.capacity() > out.len() && status != Status::BufError {
                break;
            }
        }
        Ok(out)
    }
}

fn parse_headers(block: &[u8]) -> Result<Vec<(String, String)>, SpdyError> {
    let mut at = 0usize;
    let mut next = |n: usize| -> Result<&[u8], SpdyError> {
        let slice = block
            .get(at..at + n)
            .ok_or_else(|| SpdyError("truncated header block".into()))?;
        at += n;
        Ok(slice)
    };
    let be = |b: &[u8]| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize;
    let count = be(next(4)?);
    let mut headers = Vec::with_capacity(count.min(64));
    for _ in 0..count {
        let n = be(next(4)?);
        let name = String::from_utf8_lossy(next(n)?).to_ascii_lowercase();
        let n = be(next(4)?);
        let value = String::from_utf8_lossy(next(n)?).into_owned();
        headers.push((name, value));
    }
    Ok(headers)
}

/// Reads one frame from `r` (None at a clean end of the connection).
pub async fn read_frame(
    r: &mut (impl tokio::io::AsyncRead + Unpin),
    codec: &mut HeaderCodec,
) -> Result<Option<Frame>, SpdyError> {
    use tokio::io::AsyncReadExt;
    let mut head = [0u8; 8];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(SpdyError(e.to_string())),
    }
    let flags = head[4];
    let length = u32::from_be_bytes([0, head[5], head[6], head[7]]) as usize;
    let mut body = vec![0u8; length];
    r.read_exact(&mut body)
        .await
        .map_err(|e| SpdyError(e.to_string()))?;
    let fin = flags & FLAG_FIN != 0;
    let word = |at: usize| -> Result<u32, SpdyError> {
        body.get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
            .ok_or_else(|| SpdyError("truncated frame".into()))
    };
    if head[0] & 0x80 == 0 {
        let stream_id = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) & 0x7fff_ffff;
        return Ok(Some(Frame::Data {
            stream_id,
            fin,
            data: body,
        }));
    }
    let kind = u16::from_be_bytes([head[2], head[3]]);
    Ok(Some(match kind {
        1 => {
            let stream_id = word(0)? & 0x7fff_ffff;
            let headers = codec.decode(body.get(10..).unwrap_or_default())?;
            Frame::SynStream {
                stream_id,
                headers,
                fin,
            }
        }
        2 => {
            let stream_id = word(0)? & 0x7fff_ffff;
            codec.decode(body.get(4..).unwrap_or_default())?;
            Frame::SynReply { stream_id, fin }
        }
        3 => Frame::RstStream {
            stream_id: word(0)? & 0x7fff_ffff,
            status: word(4)?,
        },
        6 => Frame::Ping(word(0)?),
        7 => Frame::GoAway,
        8 => {
            // HEADERS keep the compression context in step even though nothing reads them.
            codec.decode(body.get(4..).unwrap_or_default())?;
            Frame::Other
        }
        _ => Frame::Other,
    }))
}

fn control(kind: u16, flags: u8, body: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + body.len());
    frame.extend_from_slice(&(0x8000u16 | 3).to_be_bytes());
    frame.extend_from_slice(&kind.to_be_bytes());
    frame.push(flags);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(body);
    frame
}

/// SYN_REPLY for `stream_id`, with no headers.
pub fn syn_reply(codec: &mut HeaderCodec, stream_id: u32) -> Result<Vec<u8>, SpdyError> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend(codec.encode(&[])?);
    Ok(control(2, 0, &body))
}

/// PING with `id` (the answer to the peer's).
pub fn ping(id: u32) -> Vec<u8> {
    control(6, 0, &id.to_be_bytes())
}

/// RST_STREAM of `stream_id` with `status` (1: protocol error, 5: cancel).
pub fn rst_stream(stream_id: u32, status: u32) -> Vec<u8> {
    let mut body = stream_id.to_be_bytes().to_vec();
    body.extend_from_slice(&status.to_be_bytes());
    control(3, 0, &body)
}

/// DATA on `stream_id` (at most 16 MiB - 1 per frame; callers send less).
pub fn data(stream_id: u32, payload: &[u8], fin: bool) -> Vec<u8> {
    let mut frame = Vec::with_capacity(8 + payload.len());
    frame.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
    frame.push(if fin { FLAG_FIN } else { 0 });
    frame.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    frame.extend_from_slice(payload);
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dictionary_is_spdy3s() {
        let dict = dictionary();
        assert_eq!(dict.len(), 1423);
        assert_eq!(&dict[..11], b"\0\0\0\x07options");
        assert!(dict.ends_with(b",enq=0."));
    }

    #[test]
    fn header_blocks_round_trip_through_one_context() {
        // What one side compresses the other decompresses, frame after frame.
        let (mut a, mut b) = (HeaderCodec::default(), HeaderCodec::default());
        for i in 0..3 {
            let id = i.to_string();
            let block = a
                .encode(&[("streamtype", "data"), ("port", "8080"), ("requestid", &id)])
                .unwrap();
            let headers = b.decode(&block).unwrap();
            assert_eq!(
                headers,
                vec![
                    ("streamtype".to_owned(), "data".to_owned()),
                    ("port".to_owned(), "8080".to_owned()),
                    ("requestid".to_owned(), id.clone()),
                ]
            );
        }
    }

    #[tokio::test]
    async fn frames_decode_as_they_were_encoded() {
        let mut codec = HeaderCodec::default();
        let mut wire = Vec::new();
        wire.extend(data(3, b"hello", true));
        wire.extend(ping(7));
        wire.extend(rst_stream(5, 5));
        wire.extend(syn_reply(&mut codec, 1).unwrap());
        let mut reader = HeaderCodec::default();
        let mut r = wire.as_slice();
        assert_eq!(
            read_frame(&mut r, &mut reader).await.unwrap(),
            Some(Frame::Data {
                stream_id: 3,
                fin: true,
                data: b"hello".to_vec()
            })
        );
        assert_eq!(
            read_frame(&mut r, &mut reader).await.unwrap(),
            Some(Frame::Ping(7))
        );
        assert_eq!(
            read_frame(&mut r, &mut reader).await.unwrap(),
            Some(Frame::RstStream {
                stream_id: 5,
                status: 5
            })
        );
        assert_eq!(
            read_frame(&mut r, &mut reader).await.unwrap(),
            Some(Frame::SynReply {
                stream_id: 1,
                fin: false
            })
        );
        assert_eq!(read_frame(&mut r, &mut reader).await.unwrap(), None);
    }
}
