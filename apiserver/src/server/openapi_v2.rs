//! `/openapi/v2`: the Swagger 2.0 document, kept to its frame.
//!
//! kubectl reads it in one case today: applying a file of `kind: List`. Its field-validation check
//! treats `v1 List` as a kind the server cannot validate and validates the file itself against
//! `/openapi/v2`, asked for as gnostic's protobuf encoding (`openapi.v2.Document`); then it sends
//! each item with `fieldValidation=Strict`, which the server enforces as for any other request. Our
//! document has no definitions (the schemas are in `/openapi/v3`, which `kubectl explain` and the
//! validation check of every other request read), so kubectl's own pass finds nothing to check and
//! the server's strict decoding of each item is what rejects unknown fields.

use axum::{
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

use super::KUBERNETES_MINOR;

/// The media type the protobuf document is sent as. Clients ask for
/// `…spec.v2@v1.0+protobuf`, but `@` is not allowed in a media type and Go's parser (kubectl's)
/// rejects it in a response; upstream's handler answers with this spelling.
pub const PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `GET /openapi/v2`: protobuf when asked for it (kubectl does), JSON otherwise.
pub async fn document(headers: HeaderMap) -> Response {
    let version = format!("v1.{KUBERNETES_MINOR}.0");
    let wants_protobuf = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|accept| accept.contains("com.github.proto-openapi.spec.v2"));
    if wants_protobuf {
        (
            [(header::CONTENT_TYPE, PROTOBUF)],
            encode_document("Kubernetes", &version),
        )
            .into_response()
    } else {
        axum::Json(json!({
            "swagger": "2.0",
            "info": { "title": "Kubernetes", "version": version },
            "paths": {},
            "definitions": {},
        }))
        .into_response()
    }
}

/// `openapi.v2.Document { swagger: "2.0", info: { title, version }, paths: {}, definitions: {} }` in
/// protobuf wire format (fields 1, 2, 8 and 9 of gnostic's OpenAPIv2.proto).
fn encode_document(title: &str, version: &str) -> Vec<u8> {
    let mut info = Vec::new();
    length_delimited(&mut info, 1, title.as_bytes());
    length_delimited(&mut info, 2, version.as_bytes());
    let mut doc = Vec::new();
    length_delimited(&mut doc, 1, b"2.0");
    length_delimited(&mut doc, 2, &info);
    length_delimited(&mut doc, 8, &[]);
    length_delimited(&mut doc, 9, &[]);
    doc
}

/// Appends field `number` with wire type 2 (length-delimited) and `bytes`.
fn length_delimited(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_is_gnostic_protobuf() {
        let doc = encode_document("Kubernetes", "v1.36.0");
        // swagger = "2.0"
        assert_eq!(&doc[..5], &[0x0a, 3, b'2', b'.', b'0']);
        // info { title = "Kubernetes", version = "v1.36.0" }: 12 + 9 bytes.
        assert_eq!(&doc[5..7], &[0x12, 21]);
        assert_eq!(&doc[7..9], &[0x0a, 10]);
        assert_eq!(&doc[9..19], b"Kubernetes");
        assert_eq!(&doc[19..21], &[0x12, 7]);
        assert_eq!(&doc[21..28], b"v1.36.0");
        // empty paths (8) and definitions (9).
        assert_eq!(&doc[28..], &[0x42, 0, 0x4a, 0]);
    }

    #[test]
    fn long_fields_get_multi_byte_lengths() {
        let mut out = Vec::new();
        length_delimited(&mut out, 1, &[b'x'; 300]);
        assert_eq!(&out[..3], &[0x0a, 0xac, 0x02]);
        assert_eq!(out.len(), 303);
    }
}
