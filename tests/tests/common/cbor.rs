//! A deliberately small CBOR codec (RFC 8949), written here rather than borrowed from the crates
//! under test, so the e2e tests are an independent check of the wire format.
//!
//! Encoding follows what the JavaScript peer (cbor-x with `useRecords: false`) sends: maps with a
//! 16-bit length header (`0xb9 0x00 0x04`), text keys, byte strings untagged.

use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Uint(u64),
    Nint(i128),
    Bytes(Vec<u8>),
    Text(String),
    Array(Vec<Value>),
    Map(Vec<(Value, Value)>),
    Tag(u64, Box<Value>),
    Bool(bool),
    Null,
    Undefined,
    Float(f64),
    Simple(u8),
}

impl Value {
    pub fn text(s: impl Into<String>) -> Value {
        Value::Text(s.into())
    }
    /// A map with text keys, in the given order.
    pub fn map<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
        Value::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Value::Text(k.into()), v))
                .collect(),
        )
    }
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Map(entries) => entries
                .iter()
                .find(|(k, _)| matches!(k, Value::Text(t) if t == key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Text(t)) => Some(t),
            _ => None,
        }
    }
    pub fn get_bytes(&self, key: &str) -> Option<&[u8]> {
        match self.get(key) {
            Some(Value::Bytes(b)) => Some(b),
            _ => None,
        }
    }
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Uint(n) => write!(f, "{n}"),
            Value::Nint(n) => write!(f, "{n}"),
            Value::Bytes(b) if b.len() > 24 => {
                write!(f, "h'{}…'({} bytes)", hex(&b[..24]), b.len())
            }
            Value::Bytes(b) => write!(f, "h'{}'", hex(b)),
            Value::Text(t) => write!(f, "{t:?}"),
            Value::Array(a) => {
                write!(f, "[")?;
                for (i, v) in a.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, "]")
            }
            Value::Map(m) => {
                write!(f, "{{")?;
                for (i, (k, v)) in m.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{k}: {v}")?;
                }
                write!(f, "}}")
            }
            Value::Tag(t, v) => write!(f, "{t}({v})"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Null => write!(f, "null"),
            Value::Undefined => write!(f, "undefined"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Simple(s) => write!(f, "simple({s})"),
        }
    }
}

pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

fn head(out: &mut Vec<u8>, major: u8, n: u64) {
    let m = major << 5;
    if n < 24 {
        out.push(m | n as u8);
    } else if n <= 0xff {
        out.extend([m | 24, n as u8]);
    } else if n <= 0xffff {
        out.push(m | 25);
        out.extend((n as u16).to_be_bytes());
    } else if n <= 0xffff_ffff {
        out.push(m | 26);
        out.extend((n as u32).to_be_bytes());
    } else {
        out.push(m | 27);
        out.extend(n.to_be_bytes());
    }
}

pub fn encode(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    encode_into(&mut out, v);
    out
}

fn encode_into(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::Uint(n) => head(out, 0, *n),
        Value::Nint(n) => {
            assert!(*n < 0);
            head(out, 1, (-1 - *n) as u64)
        }
        Value::Bytes(b) => {
            head(out, 2, b.len() as u64);
            out.extend(b);
        }
        Value::Text(t) => {
            head(out, 3, t.len() as u64);
            out.extend(t.as_bytes());
        }
        Value::Array(a) => {
            head(out, 4, a.len() as u64);
            a.iter().for_each(|x| encode_into(out, x));
        }
        Value::Map(m) => {
            // like cbor-x: always the 16-bit length form for maps
            assert!(m.len() <= 0xffff);
            out.push(0xb9);
            out.extend((m.len() as u16).to_be_bytes());
            for (k, x) in m {
                encode_into(out, k);
                encode_into(out, x);
            }
        }
        Value::Tag(t, x) => {
            head(out, 6, *t);
            encode_into(out, x);
        }
        Value::Bool(false) => out.push(0xf4),
        Value::Bool(true) => out.push(0xf5),
        Value::Null => out.push(0xf6),
        Value::Undefined => out.push(0xf7),
        Value::Float(x) => {
            out.push(0xfb);
            out.extend(x.to_bits().to_be_bytes());
        }
        Value::Simple(s) => {
            if *s < 24 {
                out.push(0xe0 | s)
            } else {
                out.extend([0xf8, *s])
            }
        }
    }
}

#[derive(Debug)]
pub struct DecodeError(pub String);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CBOR decode error: {}", self.0)
    }
}

/// Decode exactly one CBOR item spanning the whole input.
pub fn decode(input: &[u8]) -> Result<Value, DecodeError> {
    let mut pos = 0;
    let v = item(input, &mut pos, 0)?;
    if pos != input.len() {
        return Err(DecodeError(format!("{} trailing bytes", input.len() - pos)));
    }
    Ok(v)
}

fn take<'a>(input: &'a [u8], pos: &mut usize, n: usize) -> Result<&'a [u8], DecodeError> {
    if input.len() - *pos < n {
        return Err(DecodeError("unexpected end of input".into()));
    }
    let s = &input[*pos..*pos + n];
    *pos += n;
    Ok(s)
}

fn arg(input: &[u8], pos: &mut usize, info: u8) -> Result<Option<u64>, DecodeError> {
    Ok(Some(match info {
        0..=23 => info as u64,
        24 => take(input, pos, 1)?[0] as u64,
        25 => u16::from_be_bytes(take(input, pos, 2)?.try_into().unwrap()) as u64,
        26 => u32::from_be_bytes(take(input, pos, 4)?.try_into().unwrap()) as u64,
        27 => u64::from_be_bytes(take(input, pos, 8)?.try_into().unwrap()),
        31 => return Ok(None),
        _ => return Err(DecodeError(format!("reserved additional info {info}"))),
    }))
}

fn item(input: &[u8], pos: &mut usize, depth: usize) -> Result<Value, DecodeError> {
    if depth > 64 {
        return Err(DecodeError("nesting too deep".into()));
    }
    let b = take(input, pos, 1)?[0];
    let (major, info) = (b >> 5, b & 0x1f);
    if major == 7 {
        return Ok(match info {
            20 => Value::Bool(false),
            21 => Value::Bool(true),
            22 => Value::Null,
            23 => Value::Undefined,
            24 => Value::Simple(take(input, pos, 1)?[0]),
            25 => {
                let h = u16::from_be_bytes(take(input, pos, 2)?.try_into().unwrap());
                Value::Float(half_to_f64(h))
            }
            26 => Value::Float(f32::from_be_bytes(take(input, pos, 4)?.try_into().unwrap()) as f64),
            27 => Value::Float(f64::from_be_bytes(take(input, pos, 8)?.try_into().unwrap())),
            0..=19 => Value::Simple(info),
            _ => return Err(DecodeError(format!("unexpected simple/break 0x{b:02x}"))),
        });
    }
    let n = arg(input, pos, info)?;
    Ok(match (major, n) {
        (0, Some(n)) => Value::Uint(n),
        (1, Some(n)) => Value::Nint(-1 - n as i128),
        (2 | 3, Some(n)) => {
            let n = usize::try_from(n).map_err(|_| DecodeError("length".into()))?;
            let s = take(input, pos, n)?.to_vec();
            if major == 2 {
                Value::Bytes(s)
            } else {
                Value::Text(String::from_utf8(s).map_err(|_| DecodeError("invalid utf-8".into()))?)
            }
        }
        (2 | 3, None) => {
            let mut acc = Vec::new();
            loop {
                if take(input, pos, 1)?[0] == 0xff {
                    break;
                }
                *pos -= 1;
                match item(input, pos, depth + 1)? {
                    Value::Bytes(c) if major == 2 => acc.extend(c),
                    Value::Text(c) if major == 3 => acc.extend(c.into_bytes()),
                    _ => return Err(DecodeError("bad chunk in indefinite string".into())),
                }
            }
            if major == 2 {
                Value::Bytes(acc)
            } else {
                Value::Text(
                    String::from_utf8(acc).map_err(|_| DecodeError("invalid utf-8".into()))?,
                )
            }
        }
        (4, n) => {
            let mut a = Vec::new();
            match n {
                Some(n) => {
                    for _ in 0..n {
                        a.push(item(input, pos, depth + 1)?);
                    }
                }
                None => loop {
                    if take(input, pos, 1)?[0] == 0xff {
                        break;
                    }
                    *pos -= 1;
                    a.push(item(input, pos, depth + 1)?);
                },
            }
            Value::Array(a)
        }
        (5, n) => {
            let mut m = Vec::new();
            match n {
                Some(n) => {
                    for _ in 0..n {
                        let k = item(input, pos, depth + 1)?;
                        let v = item(input, pos, depth + 1)?;
                        m.push((k, v));
                    }
                }
                None => loop {
                    if take(input, pos, 1)?[0] == 0xff {
                        break;
                    }
                    *pos -= 1;
                    let k = item(input, pos, depth + 1)?;
                    let v = item(input, pos, depth + 1)?;
                    m.push((k, v));
                },
            }
            Value::Map(m)
        }
        (6, Some(t)) => Value::Tag(t, Box::new(item(input, pos, depth + 1)?)),
        _ => return Err(DecodeError(format!("invalid initial byte 0x{b:02x}"))),
    })
}

fn half_to_f64(h: u16) -> f64 {
    let exp = (h >> 10) & 0x1f;
    let mant = (h & 0x3ff) as f64;
    let v = if exp == 0 {
        mant * 2f64.powi(-24)
    } else if exp != 31 {
        (mant + 1024.0) * 2f64.powi(exp as i32 - 25)
    } else if mant == 0.0 {
        f64::INFINITY
    } else {
        f64::NAN
    };
    if h & 0x8000 != 0 { -v } else { v }
}
