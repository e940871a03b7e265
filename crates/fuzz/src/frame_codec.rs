//! The frame codec target: `Message::decode` on arbitrary bytes.
//!
//! Decoding must never panic, and whatever decodes must survive a round trip: its encoding
//! decodes to the same message, and encoding that again gives the same bytes (the hub's own
//! frames are canonical, which is what keeps them byte-identical to the reference server's).

use fieldnotes_sync::DocumentId;
use fieldnotes_sync::protocol::Message;

pub fn frame_codec(data: &[u8]) {
    if let Ok(message) = Message::decode(data) {
        let encoded = message.encode();
        let again = match Message::decode(&encoded) {
            Ok(again) => again,
            Err(error) => panic!("the encoding of {message:?} does not decode: {error}"),
        };
        assert_eq!(again, message, "a decoded message changed in a round trip");
        assert_eq!(again.encode(), encoded, "encoding is not canonical");
    }
    // Every document-bearing message carries its id as base58check text: the same property for
    // the id on its own, which reaches the checksum paths that a whole frame rarely does.
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(id) = DocumentId::parse(text).or_else(|_| DocumentId::parse_url(text))
    {
        let printed = id.to_string();
        assert_eq!(DocumentId::parse(&printed).ok(), Some(id), "{printed}");
        assert_eq!(DocumentId::parse_url(&id.to_url()).ok(), Some(id));
    }
}
