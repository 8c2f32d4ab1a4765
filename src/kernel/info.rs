//! `kernel_info_reply`: who this kernel is and the language it speaks.

use jupyter_protocol::{CodeMirrorMode, KernelInfoReply, LanguageInfo, ReplyStatus};

/// The Jupyter messaging protocol version this kernel implements.
pub const PROTOCOL_VERSION: &str = "5.3";
/// The MIME type of tunelab source.
pub const MIMETYPE: &str = "text/x-tunelab";
/// The extension of tunelab scripts.
pub const FILE_EXTENSION: &str = ".tune";

/// The reply to `kernel_info_request`.
pub fn reply() -> KernelInfoReply {
    let version = env!("CARGO_PKG_VERSION").to_string();
    KernelInfoReply {
        status: ReplyStatus::Ok,
        protocol_version: PROTOCOL_VERSION.into(),
        implementation: "tunelab".into(),
        implementation_version: version.clone(),
        language_info: LanguageInfo {
            name: "tunelab".into(),
            version,
            mimetype: Some(MIMETYPE.into()),
            file_extension: Some(FILE_EXTENSION.into()),
            // `verb args key=value  # comment`, quotes and `\` continuations: shell-like.
            pygments_lexer: Some("bash".into()),
            codemirror_mode: Some(CodeMirrorMode::Simple("shell".into())),
            nbconvert_exporter: Some("script".into()),
        },
        banner: format!(
            "tunelab {} — fine-tune neural networks interactively.\n\
             Type `help` for the commands, `help VERB` for one; Tab completes, Shift-Tab shows help.\n\
             Magics: %time, %%time, %who, %reset.",
            env!("CARGO_PKG_VERSION")
        ),
        help_links: Vec::new(),
        debugger: false,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_info_names_tunelab() {
        let v = serde_json::to_value(reply()).unwrap();
        assert_eq!(v["protocol_version"], "5.3");
        assert_eq!(v["language_info"]["name"], "tunelab");
        assert_eq!(v["language_info"]["file_extension"], ".tune");
        assert_eq!(v["language_info"]["mimetype"], "text/x-tunelab");
        assert_eq!(v["language_info"]["codemirror_mode"], "shell");
        assert!(v["help_links"].is_array());
    }
}
