//! The connection file Jupyter hands a kernel, and incoming messages off the wire.
//!
//! A message is a list of ZeroMQ frames: routing identities, the `<IDS|MSG>` delimiter, the
//! HMAC-SHA256 signature (hex) of the next four frames, then header, parent header, metadata
//! and content as JSON (and optional binary buffers). [`Incoming::decode`] checks the
//! signature with the connection file's key before it parses anything; a message that fails
//! is never handled. Outgoing messages are signed by `jupyter_zmq_client::Connection::send`.
//!
//! Requests are read leniently: the header must be complete, but content fields are read
//! one by one with defaults ([`Incoming::str`], [`Incoming::bool`]), so a client that omits
//! an optional field still gets an answer.

use std::path::Path;

use jupyter_protocol::{ConnectionInfo, Header, JupyterMessage, JupyterMessageContent, UnknownMessage};
use jupyter_zmq_client::{RawMessage, RuntimeError};
use ring::hmac;
use serde_json::Value;

use super::KernelError;

/// Reads and checks a connection file (`{"ip", "transport", "shell_port", …, "key",
/// "signature_scheme"}`). Only `hmac-sha256` signing (or none, with an empty key) is supported.
pub fn read_connection_file(path: &Path) -> Result<ConnectionInfo, KernelError> {
    let fail = |reason: String| KernelError::ConnectionFile { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("{e}; check the path")))?;
    let info: ConnectionInfo = serde_json::from_str(&text)
        .map_err(|e| fail(format!("{e}; it must be the JSON file Jupyter writes when it starts a kernel")))?;
    if !info.key.is_empty() && info.signature_scheme != "hmac-sha256" {
        return Err(fail(format!(
            "signature scheme '{}' is not supported; use hmac-sha256 (Jupyter's default)",
            info.signature_scheme
        )));
    }
    Ok(info)
}

/// Why an incoming message was dropped.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The signature is missing or does not match the key.
    #[error("bad or missing signature")]
    BadSignature,
    /// The frames are not a Jupyter message.
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A verified request: its header and identities (to address replies to) and its content.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// The request as the parent of replies and outputs (routing identities + header; its
    /// content is not parsed into a typed message).
    pub parent: JupyterMessage,
    /// The content as JSON.
    pub content: Value,
}

impl Incoming {
    /// Verifies the signature of `frames` with `key` (`None` when the connection file's key
    /// is empty) and parses the header and content.
    pub fn decode(frames: zeromq::ZmqMessage, key: &Option<hmac::Key>) -> Result<Incoming, WireError> {
        let raw = RawMessage::from_multipart(frames, key).map_err(|e| match e {
            RuntimeError::MissingHmac | RuntimeError::VerifyError(_) | RuntimeError::DecodeError(_) => {
                WireError::BadSignature
            }
            other => WireError::Malformed(other.to_string()),
        })?;
        let header: Header = serde_json::from_slice(&raw.jparts[0])
            .map_err(|e| WireError::Malformed(format!("header: {e}")))?;
        let content: Value = serde_json::from_slice(&raw.jparts[3])
            .map_err(|e| WireError::Malformed(format!("content of {}: {e}", header.msg_type)))?;
        if !content.is_object() {
            return Err(WireError::Malformed(format!("content of {} is not a JSON object", header.msg_type)));
        }
        let parent = JupyterMessage {
            zmq_identities: raw.zmq_identities,
            parent_header: None,
            metadata: Value::Object(Default::default()),
            content: JupyterMessageContent::UnknownMessage(UnknownMessage {
                msg_type: header.msg_type.clone(),
                content: Value::Null,
            }),
            header,
            buffers: Vec::new(),
            channel: None,
        };
        Ok(Incoming { parent, content })
    }

    /// The message type (`execute_request`, …).
    pub fn msg_type(&self) -> &str {
        &self.parent.header.msg_type
    }

    /// A string field of the content, or `""`.
    pub fn str(&self, key: &str) -> &str {
        self.content.get(key).and_then(Value::as_str).unwrap_or("")
    }

    /// A boolean field of the content, or `default`.
    pub fn bool(&self, key: &str, default: bool) -> bool {
        self.content.get(key).and_then(Value::as_bool).unwrap_or(default)
    }

    /// An integer field of the content, if present.
    pub fn int(&self, key: &str) -> Option<i64> {
        self.content.get(key).and_then(Value::as_i64)
    }
}
