//! The automerge-repo WebSocket protocol "1": one CBOR map per binary frame.
//!
//! Decoding is lenient where the JavaScript peers are loose (long-form map
//! headers, `undefined` for absent values, unknown keys, `join` without
//! `supportedProtocolVersions`) and strict everywhere else: an unknown message
//! type, a missing field or a field of the wrong CBOR type is a [`DecodeError`].
//!
//! Encoding writes keys in the order the JavaScript reference server writes
//! them and uses cbor-x's two-byte map headers (`b9 00 NN`), so a frame from
//! this crate is byte-for-byte the frame the reference server would send.

use std::fmt;

use minicbor::data::Type;
use minicbor::{Decoder, Encoder};

use crate::document_id::{DocumentId, DocumentIdError};

/// The only protocol version this crate speaks.
pub const PROTOCOL_VERSION: &str = "1";

/// The WebSocket close code for a connection whose session ended (revoked, expired, the user
/// disabled or taken out of the team): the client should ask the rep to sign in again. Ours,
/// not automerge-repo's: the server sends it and the web app reads it.
pub const SIGNED_OUT_CLOSE_CODE: u16 = 4401;

/// A peer's self-chosen name on the wire (`senderId` / `targetId`).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PeerId(String);

/// A peer's durable storage identity: stable across reconnects of the same
/// storage, so sync state can be kept per storage rather than per socket.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StorageId(String);

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl From<&str> for $name {
            fn from(value: &str) -> Self {
                Self(value.to_owned())
            }
        }
        impl From<String> for $name {
            fn from(value: String) -> Self {
                Self(value)
            }
        }
    };
}
string_newtype!(PeerId);
string_newtype!(StorageId);

/// What a peer says about itself in `join` and `peer`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PeerMetadata {
    /// Present for peers with durable storage; JS sends `undefined` otherwise.
    pub storage_id: Option<StorageId>,
    /// Ephemeral peers keep nothing, so nobody keeps sync state for them.
    /// Absent on the wire means `false`.
    pub is_ephemeral: bool,
}

/// `join`: the first message a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Join {
    pub sender_id: PeerId,
    pub peer_metadata: PeerMetadata,
    /// Absent on the wire means `["1"]`, as the JavaScript server assumes.
    pub supported_protocol_versions: Vec<String>,
}

/// `peer`: the server's answer to a `join`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub peer_metadata: PeerMetadata,
    pub selected_protocol_version: String,
}

/// `request` and `sync`: an automerge sync message about one document.
#[derive(Clone, PartialEq, Eq)]
pub struct DocumentMessage {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    /// An encoded `automerge::sync::Message`.
    pub data: Vec<u8>,
}

impl fmt::Debug for DocumentMessage {
    // Document contents stay out of logs: show only the size of the payload.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DocumentMessage")
            .field("sender_id", &self.sender_id)
            .field("target_id", &self.target_id)
            .field("document_id", &self.document_id)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// `doc-unavailable`: the sender has no such document (or may not show it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocUnavailable {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
}

/// `ephemeral`: application data that is relayed, never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct Ephemeral {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    /// Chosen at random by the sender per session; with `count` it names a message.
    pub session_id: String,
    pub count: u64,
    pub data: Vec<u8>,
}

impl fmt::Debug for Ephemeral {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ephemeral")
            .field("sender_id", &self.sender_id)
            .field("target_id", &self.target_id)
            .field("document_id", &self.document_id)
            .field("session_id", &self.session_id)
            .field("count", &self.count)
            .field("data_len", &self.data.len())
            .finish()
    }
}

/// `error`: the sender is about to close the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorMessage {
    pub sender_id: Option<PeerId>,
    pub target_id: Option<PeerId>,
    pub message: String,
}

/// `remote-subscription-change`: which storage ids' heads the sender wants to hear about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteSubscriptionChange {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub add: Vec<StorageId>,
    pub remove: Vec<StorageId>,
}

/// The heads one storage reported for a document, with the reporter's timestamp.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeads {
    pub storage_id: StorageId,
    /// Change hashes as hex text, as the JavaScript peers send them.
    pub heads: Vec<String>,
    /// Milliseconds since the epoch.
    pub timestamp: u64,
}

/// `remote-heads-changed`: gossip about other storages' heads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteHeadsChanged {
    pub sender_id: PeerId,
    pub target_id: PeerId,
    pub document_id: DocumentId,
    pub new_heads: Vec<RemoteHeads>,
}

/// One protocol message; one binary WebSocket frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    Join(Join),
    Peer(Peer),
    Request(DocumentMessage),
    Sync(DocumentMessage),
    DocUnavailable(DocUnavailable),
    Ephemeral(Ephemeral),
    Error(ErrorMessage),
    RemoteSubscriptionChange(RemoteSubscriptionChange),
    RemoteHeadsChanged(RemoteHeadsChanged),
}

/// Why a frame is not a protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("frame is not valid cbor: {0}")]
    Cbor(String),
    #[error("frame is not a cbor map")]
    NotAMap,
    #[error("frame has bytes after the message")]
    TrailingBytes,
    #[error("message has no type")]
    MissingType,
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    #[error("{message_type} message has no {field}")]
    MissingField {
        message_type: &'static str,
        field: &'static str,
    },
    #[error("field {field} has the wrong cbor type")]
    WrongFieldType { field: &'static str },
    #[error("field documentId is invalid: {0}")]
    DocumentId(#[from] DocumentIdError),
    #[error("field {field} is longer than {limit} bytes")]
    FieldTooLong { field: &'static str, limit: usize },
}

/// The longest peer id, storage id, session id or message type accepted. Real ones are UUIDs
/// or a few dozen characters; a peer's ids are kept for as long as it is connected.
pub const MAX_ID_BYTES: usize = 256;

impl From<minicbor::decode::Error> for DecodeError {
    fn from(error: minicbor::decode::Error) -> Self {
        DecodeError::Cbor(error.to_string())
    }
}

impl Message {
    /// The wire name of this message's type.
    pub fn type_name(&self) -> &'static str {
        match self {
            Message::Join(_) => "join",
            Message::Peer(_) => "peer",
            Message::Request(_) => "request",
            Message::Sync(_) => "sync",
            Message::DocUnavailable(_) => "doc-unavailable",
            Message::Ephemeral(_) => "ephemeral",
            Message::Error(_) => "error",
            Message::RemoteSubscriptionChange(_) => "remote-subscription-change",
            Message::RemoteHeadsChanged(_) => "remote-heads-changed",
        }
    }

    /// The `senderId`, for every type that must carry one.
    pub fn sender_id(&self) -> Option<&PeerId> {
        match self {
            Message::Join(m) => Some(&m.sender_id),
            Message::Peer(m) => Some(&m.sender_id),
            Message::Request(m) | Message::Sync(m) => Some(&m.sender_id),
            Message::DocUnavailable(m) => Some(&m.sender_id),
            Message::Ephemeral(m) => Some(&m.sender_id),
            Message::Error(m) => m.sender_id.as_ref(),
            Message::RemoteSubscriptionChange(m) => Some(&m.sender_id),
            Message::RemoteHeadsChanged(m) => Some(&m.sender_id),
        }
    }

    /// Decodes one frame.
    pub fn decode(frame: &[u8]) -> Result<Message, DecodeError> {
        let mut decoder = Decoder::new(frame);
        let fields = Fields::read(&mut decoder)?;
        if decoder.position() != frame.len() {
            return Err(DecodeError::TrailingBytes);
        }
        fields.into_message()
    }

    /// Encodes this message as one frame.
    pub fn encode(&self) -> Vec<u8> {
        let mut w = Writer::default();
        match self {
            Message::Join(m) => {
                w.map_header(4);
                w.entry_str("type", "join");
                w.entry_str("senderId", m.sender_id.as_str());
                w.key("peerMetadata");
                w.peer_metadata(&m.peer_metadata);
                w.key("supportedProtocolVersions");
                w.array_of_str(m.supported_protocol_versions.iter().map(String::as_str));
            }
            Message::Peer(m) => {
                w.map_header(5);
                w.entry_str("type", "peer");
                w.entry_str("senderId", m.sender_id.as_str());
                w.key("peerMetadata");
                w.peer_metadata(&m.peer_metadata);
                w.entry_str("selectedProtocolVersion", &m.selected_protocol_version);
                w.entry_str("targetId", m.target_id.as_str());
            }
            Message::Sync(m) => {
                w.map_header(5);
                w.entry_str("type", "sync");
                w.entry_str("targetId", m.target_id.as_str());
                w.entry_bytes("data", &m.data);
                w.entry_str("documentId", &m.document_id.to_string());
                w.entry_str("senderId", m.sender_id.as_str());
            }
            Message::Request(m) => {
                w.map_header(5);
                w.entry_str("type", "request");
                w.entry_str("targetId", m.target_id.as_str());
                w.entry_str("documentId", &m.document_id.to_string());
                w.entry_bytes("data", &m.data);
                w.entry_str("senderId", m.sender_id.as_str());
            }
            Message::DocUnavailable(m) => {
                w.map_header(4);
                w.entry_str("type", "doc-unavailable");
                w.entry_str("documentId", &m.document_id.to_string());
                w.entry_str("targetId", m.target_id.as_str());
                w.entry_str("senderId", m.sender_id.as_str());
            }
            Message::Ephemeral(m) => {
                w.map_header(7);
                w.entry_str("type", "ephemeral");
                w.entry_str("targetId", m.target_id.as_str());
                w.entry_str("documentId", &m.document_id.to_string());
                w.entry_bytes("data", &m.data);
                w.key("count");
                w.u64(m.count);
                w.entry_str("sessionId", &m.session_id);
                w.entry_str("senderId", m.sender_id.as_str());
            }
            Message::Error(m) => {
                let len = 2 + u16::from(m.sender_id.is_some()) + u16::from(m.target_id.is_some());
                w.map_header(len);
                w.entry_str("type", "error");
                if let Some(sender) = &m.sender_id {
                    w.entry_str("senderId", sender.as_str());
                }
                w.entry_str("message", &m.message);
                if let Some(target) = &m.target_id {
                    w.entry_str("targetId", target.as_str());
                }
            }
            Message::RemoteSubscriptionChange(m) => {
                let len = 3 + u16::from(!m.add.is_empty()) + u16::from(!m.remove.is_empty());
                w.map_header(len);
                w.entry_str("type", "remote-subscription-change");
                w.entry_str("senderId", m.sender_id.as_str());
                w.entry_str("targetId", m.target_id.as_str());
                if !m.add.is_empty() {
                    w.key("add");
                    w.array_of_str(m.add.iter().map(StorageId::as_str));
                }
                if !m.remove.is_empty() {
                    w.key("remove");
                    w.array_of_str(m.remove.iter().map(StorageId::as_str));
                }
            }
            Message::RemoteHeadsChanged(m) => {
                w.map_header(5);
                w.entry_str("type", "remote-heads-changed");
                w.entry_str("senderId", m.sender_id.as_str());
                w.entry_str("targetId", m.target_id.as_str());
                w.entry_str("documentId", &m.document_id.to_string());
                w.key("newHeads");
                w.map_header(m.new_heads.len().min(usize::from(u16::MAX)) as u16);
                for entry in m.new_heads.iter().take(usize::from(u16::MAX)) {
                    w.key(entry.storage_id.as_str());
                    w.map_header(2);
                    w.key("heads");
                    w.array_of_str(entry.heads.iter().map(String::as_str));
                    w.key("timestamp");
                    w.u64(entry.timestamp);
                }
            }
        }
        w.finish()
    }
}

/// A thin wrapper: writing into a `Vec` cannot fail, so the methods return nothing.
struct Writer {
    encoder: Encoder<Vec<u8>>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            encoder: Encoder::new(Vec::new()),
        }
    }
}

const VEC_WRITE: &str = "writing cbor into a Vec cannot fail";

impl Writer {
    /// cbor-x reserves a two-byte length for every map; copy it so our frames
    /// are byte-identical to the reference implementation's.
    fn map_header(&mut self, len: u16) {
        let [hi, lo] = len.to_be_bytes();
        self.encoder.writer_mut().extend_from_slice(&[0xb9, hi, lo]);
    }
    fn key(&mut self, key: &str) {
        self.encoder.str(key).expect(VEC_WRITE);
    }
    fn entry_str(&mut self, key: &str, value: &str) {
        self.key(key);
        self.encoder.str(value).expect(VEC_WRITE);
    }
    fn entry_bytes(&mut self, key: &str, value: &[u8]) {
        self.key(key);
        self.encoder.bytes(value).expect(VEC_WRITE);
    }
    fn u64(&mut self, value: u64) {
        self.encoder.u64(value).expect(VEC_WRITE);
    }
    fn array_of_str<'a>(&mut self, items: impl ExactSizeIterator<Item = &'a str>) {
        self.encoder.array(items.len() as u64).expect(VEC_WRITE);
        for item in items {
            self.encoder.str(item).expect(VEC_WRITE);
        }
    }
    fn peer_metadata(&mut self, metadata: &PeerMetadata) {
        self.map_header(1 + u16::from(metadata.storage_id.is_some()));
        if let Some(storage_id) = &metadata.storage_id {
            self.entry_str("storageId", storage_id.as_str());
        }
        self.key("isEphemeral");
        self.encoder.bool(metadata.is_ephemeral).expect(VEC_WRITE);
    }
    fn finish(self) -> Vec<u8> {
        self.encoder.into_writer()
    }
}

/// Every key any message type uses, read in one pass because the JavaScript
/// peers write keys in insertion order and `type` is not always first.
#[derive(Default)]
struct Fields {
    message_type: Option<String>,
    sender_id: Option<String>,
    target_id: Option<String>,
    document_id: Option<String>,
    data: Option<Vec<u8>>,
    peer_metadata: Option<PeerMetadata>,
    supported_protocol_versions: Option<Vec<String>>,
    selected_protocol_version: Option<String>,
    message: Option<String>,
    session_id: Option<String>,
    count: Option<u64>,
    add: Option<Vec<String>>,
    remove: Option<Vec<String>>,
    new_heads: Option<Vec<RemoteHeads>>,
}

/// Runs `body` once per map entry, for definite and indefinite maps alike.
fn for_each_entry<'b>(
    d: &mut Decoder<'b>,
    mut body: impl FnMut(&mut Decoder<'b>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    match d.map()? {
        Some(len) => {
            for _ in 0..len {
                body(d)?;
            }
        }
        None => {
            while d.datatype()? != Type::Break {
                body(d)?;
            }
            skip_break(d);
        }
    }
    Ok(())
}

fn for_each_item<'b>(
    d: &mut Decoder<'b>,
    field: &'static str,
    mut body: impl FnMut(&mut Decoder<'b>) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    if !matches!(d.datatype()?, Type::Array | Type::ArrayIndef) {
        return Err(DecodeError::WrongFieldType { field });
    }
    match d.array()? {
        Some(len) => {
            for _ in 0..len {
                body(d)?;
            }
        }
        None => {
            while d.datatype()? != Type::Break {
                body(d)?;
            }
            skip_break(d);
        }
    }
    Ok(())
}

/// Steps over the one-byte break that ends an indefinite map or array.
fn skip_break(d: &mut Decoder<'_>) {
    d.set_position(d.position() + 1);
}

fn is_map(d: &Decoder<'_>) -> Result<bool, DecodeError> {
    Ok(matches!(d.datatype()?, Type::Map | Type::MapIndef))
}

/// `undefined` and `null` stand for "absent" in the JavaScript peers.
fn take_absent(d: &mut Decoder<'_>) -> Result<bool, DecodeError> {
    match d.datatype()? {
        Type::Undefined | Type::Null => {
            d.skip()?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn read_text(d: &mut Decoder<'_>, field: &'static str) -> Result<String, DecodeError> {
    match d.datatype()? {
        Type::String => Ok(d.str()?.to_owned()),
        Type::StringIndef => {
            let mut text = String::new();
            for chunk in d.str_iter()? {
                text.push_str(chunk?);
            }
            Ok(text)
        }
        _ => Err(DecodeError::WrongFieldType { field }),
    }
}

/// [`read_text`] for ids, refusing text longer than `limit` bytes.
fn read_id(d: &mut Decoder<'_>, field: &'static str, limit: usize) -> Result<String, DecodeError> {
    let text = read_text(d, field)?;
    if text.len() > limit {
        return Err(DecodeError::FieldTooLong { field, limit });
    }
    Ok(text)
}

fn read_bytes(d: &mut Decoder<'_>, field: &'static str) -> Result<Vec<u8>, DecodeError> {
    match d.datatype()? {
        Type::Bytes => Ok(d.bytes()?.to_vec()),
        Type::BytesIndef => {
            let mut bytes = Vec::new();
            for chunk in d.bytes_iter()? {
                bytes.extend_from_slice(chunk?);
            }
            Ok(bytes)
        }
        _ => Err(DecodeError::WrongFieldType { field }),
    }
}

/// JavaScript numbers arrive as CBOR integers, or as floats when cbor-x chooses to.
fn read_uint(d: &mut Decoder<'_>, field: &'static str) -> Result<u64, DecodeError> {
    match d.datatype()? {
        Type::U8 | Type::U16 | Type::U32 | Type::U64 => Ok(d.u64()?),
        Type::F16 | Type::F32 | Type::F64 => {
            let value = d.f64()?;
            if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value < 1.9e19 {
                Ok(value as u64)
            } else {
                Err(DecodeError::WrongFieldType { field })
            }
        }
        _ => Err(DecodeError::WrongFieldType { field }),
    }
}

fn read_bool(d: &mut Decoder<'_>, field: &'static str) -> Result<bool, DecodeError> {
    match d.datatype()? {
        Type::Bool => Ok(d.bool()?),
        _ => Err(DecodeError::WrongFieldType { field }),
    }
}

fn read_text_array(d: &mut Decoder<'_>, field: &'static str) -> Result<Vec<String>, DecodeError> {
    let mut items = Vec::new();
    for_each_item(d, field, |d| {
        items.push(read_text(d, field)?);
        Ok(())
    })?;
    Ok(items)
}

fn read_peer_metadata(d: &mut Decoder<'_>) -> Result<PeerMetadata, DecodeError> {
    if !is_map(d)? {
        return Err(DecodeError::WrongFieldType {
            field: "peerMetadata",
        });
    }
    let mut metadata = PeerMetadata::default();
    for_each_entry(d, |d| {
        let key = read_text(d, "peerMetadata")?;
        if take_absent(d)? {
            return Ok(());
        }
        match key.as_str() {
            "storageId" => {
                metadata.storage_id = Some(StorageId(read_id(d, "storageId", MAX_ID_BYTES)?))
            }
            "isEphemeral" => metadata.is_ephemeral = read_bool(d, "isEphemeral")?,
            _ => d.skip()?,
        }
        Ok(())
    })?;
    Ok(metadata)
}

fn read_new_heads(d: &mut Decoder<'_>) -> Result<Vec<RemoteHeads>, DecodeError> {
    const FIELD: &str = "newHeads";
    if !is_map(d)? {
        return Err(DecodeError::WrongFieldType { field: FIELD });
    }
    let mut entries = Vec::new();
    for_each_entry(d, |d| {
        let storage_id = StorageId(read_text(d, FIELD)?);
        if !is_map(d)? {
            return Err(DecodeError::WrongFieldType { field: FIELD });
        }
        let mut heads = Vec::new();
        let mut timestamp = 0;
        for_each_entry(d, |d| {
            let key = read_text(d, FIELD)?;
            match key.as_str() {
                "heads" => heads = read_text_array(d, "heads")?,
                "timestamp" => timestamp = read_uint(d, "timestamp")?,
                _ => d.skip()?,
            }
            Ok(())
        })?;
        entries.push(RemoteHeads {
            storage_id,
            heads,
            timestamp,
        });
        Ok(())
    })?;
    Ok(entries)
}

impl Fields {
    fn read(d: &mut Decoder<'_>) -> Result<Fields, DecodeError> {
        if !is_map(d)? {
            return Err(DecodeError::NotAMap);
        }
        let mut f = Fields::default();
        for_each_entry(d, |d| {
            // Non-text keys are not part of the protocol; skip them like unknown keys.
            if !matches!(d.datatype()?, Type::String | Type::StringIndef) {
                d.skip()?;
                d.skip()?;
                return Ok(());
            }
            let key = read_text(d, "key")?;
            if take_absent(d)? {
                return Ok(());
            }
            match key.as_str() {
                "type" => f.message_type = Some(read_id(d, "type", MAX_ID_BYTES)?),
                "senderId" => f.sender_id = Some(read_id(d, "senderId", MAX_ID_BYTES)?),
                "targetId" => f.target_id = Some(read_id(d, "targetId", MAX_ID_BYTES)?),
                "documentId" => {
                    f.document_id =
                        Some(read_id(d, "documentId", crate::document_id::MAX_TEXT_LEN)?)
                }
                "data" => f.data = Some(read_bytes(d, "data")?),
                "peerMetadata" => f.peer_metadata = Some(read_peer_metadata(d)?),
                "supportedProtocolVersions" => {
                    f.supported_protocol_versions =
                        Some(read_text_array(d, "supportedProtocolVersions")?)
                }
                "selectedProtocolVersion" => {
                    f.selected_protocol_version = Some(read_text(d, "selectedProtocolVersion")?)
                }
                "message" => f.message = Some(read_text(d, "message")?),
                "sessionId" => f.session_id = Some(read_id(d, "sessionId", MAX_ID_BYTES)?),
                "count" => f.count = Some(read_uint(d, "count")?),
                "add" => f.add = Some(read_text_array(d, "add")?),
                "remove" => f.remove = Some(read_text_array(d, "remove")?),
                "newHeads" => f.new_heads = Some(read_new_heads(d)?),
                _ => d.skip()?,
            }
            Ok(())
        })?;
        Ok(f)
    }

    fn into_message(self) -> Result<Message, DecodeError> {
        let message_type = self.message_type.clone().ok_or(DecodeError::MissingType)?;
        let message = match message_type.as_str() {
            "join" => Message::Join(Join {
                sender_id: self.sender("join")?,
                peer_metadata: self.peer_metadata.clone().unwrap_or_default(),
                supported_protocol_versions: self
                    .supported_protocol_versions
                    .clone()
                    .unwrap_or_else(|| vec![PROTOCOL_VERSION.to_owned()]),
            }),
            "peer" => Message::Peer(Peer {
                sender_id: self.sender("peer")?,
                target_id: self.target("peer")?,
                peer_metadata: self.peer_metadata.clone().unwrap_or_default(),
                selected_protocol_version: self
                    .selected_protocol_version
                    .clone()
                    .ok_or(missing("peer", "selectedProtocolVersion"))?,
            }),
            "request" => Message::Request(self.document_message("request")?),
            "sync" => Message::Sync(self.document_message("sync")?),
            "doc-unavailable" => Message::DocUnavailable(DocUnavailable {
                sender_id: self.sender("doc-unavailable")?,
                target_id: self.target("doc-unavailable")?,
                document_id: self.document("doc-unavailable")?,
            }),
            "ephemeral" => Message::Ephemeral(Ephemeral {
                sender_id: self.sender("ephemeral")?,
                target_id: self.target("ephemeral")?,
                document_id: self.document("ephemeral")?,
                session_id: self
                    .session_id
                    .clone()
                    .ok_or(missing("ephemeral", "sessionId"))?,
                count: self.count.ok_or(missing("ephemeral", "count"))?,
                data: self.data.clone().ok_or(missing("ephemeral", "data"))?,
            }),
            "error" => Message::Error(ErrorMessage {
                sender_id: self.sender_id.clone().map(PeerId),
                target_id: self.target_id.clone().map(PeerId),
                message: self.message.clone().ok_or(missing("error", "message"))?,
            }),
            "remote-subscription-change" => {
                Message::RemoteSubscriptionChange(RemoteSubscriptionChange {
                    sender_id: self.sender("remote-subscription-change")?,
                    target_id: self.target("remote-subscription-change")?,
                    add: self
                        .add
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(StorageId)
                        .collect(),
                    remove: self
                        .remove
                        .clone()
                        .unwrap_or_default()
                        .into_iter()
                        .map(StorageId)
                        .collect(),
                })
            }
            "remote-heads-changed" => Message::RemoteHeadsChanged(RemoteHeadsChanged {
                sender_id: self.sender("remote-heads-changed")?,
                target_id: self.target("remote-heads-changed")?,
                document_id: self.document("remote-heads-changed")?,
                new_heads: self.new_heads.clone().unwrap_or_default(),
            }),
            _ => return Err(DecodeError::UnknownType(message_type)),
        };
        Ok(message)
    }

    fn sender(&self, message_type: &'static str) -> Result<PeerId, DecodeError> {
        self.sender_id
            .clone()
            .map(PeerId)
            .ok_or(missing(message_type, "senderId"))
    }
    fn target(&self, message_type: &'static str) -> Result<PeerId, DecodeError> {
        self.target_id
            .clone()
            .map(PeerId)
            .ok_or(missing(message_type, "targetId"))
    }
    fn document(&self, message_type: &'static str) -> Result<DocumentId, DecodeError> {
        let text = self
            .document_id
            .as_deref()
            .ok_or(missing(message_type, "documentId"))?;
        Ok(DocumentId::parse(text)?)
    }
    fn document_message(&self, message_type: &'static str) -> Result<DocumentMessage, DecodeError> {
        Ok(DocumentMessage {
            sender_id: self.sender(message_type)?,
            target_id: self.target(message_type)?,
            document_id: self.document(message_type)?,
            data: self.data.clone().ok_or(missing(message_type, "data"))?,
        })
    }
}

fn missing(message_type: &'static str, field: &'static str) -> DecodeError {
    DecodeError::MissingField {
        message_type,
        field,
    }
}
