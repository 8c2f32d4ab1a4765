//! Tokenizers for text models, through the `tokenizers` crate: a `tokenizer.json`, or a
//! BERT WordPiece tokenizer built from `vocab.txt`.

use std::path::{Path, PathBuf};

use tokenizers::decoders::wordpiece::WordPiece as WordPieceDecoder;
use tokenizers::models::bpe::BPE;
use tokenizers::models::wordpiece::WordPiece;
use tokenizers::normalizers::bert::BertNormalizer;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::processors::bert::BertProcessing;
use tokenizers::{PostProcessor, Tokenizer, TruncationParams};

use crate::error::{bail, Error, Result};

/// A tokenizer plus the special tokens a model needs.
#[derive(Clone)]
pub struct TextTokenizer {
    inner: Tokenizer,
    /// Padding token id.
    pub pad_id: u32,
    /// Unknown-token id (`[UNK]`), to count unknown tokens.
    pub unk_id: Option<u32>,
    /// Mask token id (`[MASK]`), for masked-LM training.
    pub mask_id: Option<u32>,
    /// Classification token id (`[CLS]`).
    pub cls_id: Option<u32>,
    /// Separator token id (`[SEP]`).
    pub sep_id: Option<u32>,
    /// End-of-text token id (`<|endoftext|>`, `</s>`), which separates documents of a
    /// language-model corpus and ends a generation.
    pub eos_id: Option<u32>,
    /// Where it was read from, shown to the user.
    pub source: String,
    /// The `vocab.txt` it was built from, if any (written beside `tokenizer.json` on save).
    vocab_file: Option<PathBuf>,
    /// The `vocab.json` and `merges.txt` of a byte-level BPE, written back on save.
    bpe_files: Option<(PathBuf, PathBuf)>,
    /// The `tokenizer_config.json` of the directory it came from, written back on save.
    config: Option<serde_json::Value>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TextTokenizer({}, {} tokens)", self.source, self.vocab_size())
    }
}

fn tok_error(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::damaged(path, format!("not a usable tokenizer: {e}"))
}

impl TextTokenizer {
    /// The tokenizer of a model directory: `tokenizer.json` if present, else `vocab.txt`
    /// (BERT WordPiece, lower-cased unless `tokenizer_config.json` says `do_lower_case: false`).
    pub fn from_dir(dir: &Path) -> Result<TextTokenizer> {
        let config = std::fs::read_to_string(dir.join("tokenizer_config.json"))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok());
        let json = dir.join("tokenizer.json");
        let vocab = dir.join("vocab.txt");
        let mut tok = if json.is_file() {
            let mut t = TextTokenizer::from_json(&json)?;
            t.vocab_file = vocab.is_file().then_some(vocab);
            t
        } else if dir.join("vocab.json").is_file() && dir.join("merges.txt").is_file() {
            TextTokenizer::from_bpe(&dir.join("vocab.json"), &dir.join("merges.txt"))?
        } else if vocab.is_file() {
            let lowercase = config.as_ref().and_then(|v| v.get("do_lower_case")?.as_bool()).unwrap_or(true);
            TextTokenizer::from_vocab(&vocab, lowercase)?
        } else {
            bail!(
                "'{}' has no tokenizer.json, vocab.txt or vocab.json + merges.txt; a text model needs one of them",
                dir.display()
            )
        };
        tok.config = config;
        Ok(tok)
    }

    /// A `tokenizer.json`; its own padding and truncation settings are cleared (tunelab pads
    /// per batch and truncates to the data's `max_len`).
    pub fn from_json(path: &Path) -> Result<TextTokenizer> {
        let mut inner = Tokenizer::from_file(path).map_err(|e| tok_error(path, e))?;
        inner.with_padding(None);
        inner.with_truncation(None).map_err(|e| tok_error(path, e))?;
        TextTokenizer::wrap(inner, path.display().to_string(), None)
    }

    /// A BERT WordPiece tokenizer from a `vocab.txt` (one token per line).
    pub fn from_vocab(path: &Path, lowercase: bool) -> Result<TextTokenizer> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::Read {
            path: path.to_path_buf(),
            reason: format!("{e}; a vocab.txt is UTF-8 text, one token per line"),
        })?;
        let id = |tok: &str| text.lines().position(|l| l == tok).map(|i| i as u32);
        let (Some(cls), Some(sep)) = (id("[CLS]"), id("[SEP]")) else {
            bail!("'{}' has no [CLS] or [SEP] token; is it a BERT vocab.txt?", path.display())
        };
        let model = WordPiece::from_file(&path.to_string_lossy())
            .unk_token("[UNK]".into())
            .build()
            .map_err(|e| tok_error(path, e))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_normalizer(Some(BertNormalizer::new(true, true, None, lowercase)))
            .with_pre_tokenizer(Some(BertPreTokenizer))
            .with_post_processor(Some(BertProcessing::new(("[SEP]".into(), sep), ("[CLS]".into(), cls))))
            .with_decoder(Some(WordPieceDecoder::default()));
        TextTokenizer::wrap(inner, path.display().to_string(), Some(path.to_path_buf()))
    }

    /// GPT-2's byte-level BPE from `vocab.json` (token → id) and `merges.txt`.
    pub fn from_bpe(vocab: &Path, merges: &Path) -> Result<TextTokenizer> {
        let model = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .build()
            .map_err(|e| tok_error(vocab, e))?;
        let mut inner = Tokenizer::new(model);
        inner
            .with_pre_tokenizer(Some(ByteLevel::new(false, true, true)))
            .with_post_processor(Some(ByteLevel::new(false, true, true)))
            .with_decoder(Some(ByteLevel::new(false, true, true)));
        let mut tok = TextTokenizer::wrap(inner, vocab.display().to_string(), None)?;
        tok.bpe_files = Some((vocab.to_path_buf(), merges.to_path_buf()));
        Ok(tok)
    }

    /// A tokenizer built in memory (e.g. from a GGUF file's metadata); `source` says where it
    /// came from. Special ids are found by their usual names; set the public fields to
    /// override them.
    pub fn from_tokenizer(inner: Tokenizer, source: impl Into<String>) -> Result<TextTokenizer> {
        TextTokenizer::wrap(inner, source.into(), None)
    }

    /// The same tokenizer with `config` as its `tokenizer_config.json` (written on save).
    pub fn with_config(mut self, config: serde_json::Value) -> TextTokenizer {
        self.config = Some(config);
        self
    }

    fn wrap(inner: Tokenizer, source: String, vocab_file: Option<PathBuf>) -> Result<TextTokenizer> {
        let find = |names: &[&str]| names.iter().find_map(|n| inner.token_to_id(n));
        let pad_id = find(&["[PAD]", "<pad>", "<|endoftext|>"]).unwrap_or(0);
        Ok(TextTokenizer {
            pad_id,
            mask_id: find(&["[MASK]", "<mask>"]),
            unk_id: find(&["[UNK]", "<unk>"]),
            cls_id: find(&["[CLS]", "<s>"]),
            eos_id: find(&["<|endoftext|>", "</s>", "<|im_end|>", "[SEP]"]),
            bpe_files: None,
            sep_id: find(&["[SEP]", "</s>"]),
            inner,
            source,
            vocab_file,
            config: None,
        })
    }

    /// The id of `token` (a special token's name, or any vocabulary entry).
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Number of tokens, including added ones.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Token ids of each text, with special tokens, truncated to `max_len`. Returns the ids
    /// and how many texts were truncated.
    pub fn encode_batch(&self, texts: &[String], max_len: usize) -> Result<(Vec<Vec<u32>>, usize)> {
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() }))
            .map_err(|e| Error::invalid(format!("cannot truncate to max_len={max_len}: {e}")))?;
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings =
            tok.encode_batch(inputs, true).map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        let truncated = encodings.iter().filter(|e| !e.get_overflowing().is_empty()).count();
        Ok((encodings.iter().map(|e| e.get_ids().to_vec()).collect(), truncated))
    }

    /// Token ids of each text cut into overlapping windows of at most `max_len` tokens (special
    /// tokens included in every window); consecutive windows share `stride` tokens, as
    /// `transformers` does with `return_overflowing_tokens=True, stride=…`. A text that fits
    /// is one window.
    pub fn encode_windows(
        &self,
        texts: &[String],
        max_len: usize,
        stride: usize,
    ) -> Result<Vec<Vec<Vec<u32>>>> {
        let specials = self.inner.get_post_processor().map_or(0, |p| p.added_tokens(false));
        if stride + specials >= max_len {
            bail!(
                "stride={stride} must be below max_len={max_len} minus {specials} special token(s): it is the \
                 overlap between consecutive windows; use e.g. stride={}",
                max_len.saturating_sub(specials) / 2
            )
        }
        let mut tok = self.inner.clone();
        tok.with_truncation(Some(TruncationParams { max_length: max_len, stride, ..Default::default() }))
            .map_err(|e| {
                Error::invalid(format!("cannot cut windows of max_len={max_len}, stride={stride}: {e}"))
            })?;
        let inputs: Vec<&str> = texts.iter().map(String::as_str).collect();
        let encodings =
            tok.encode_batch(inputs, true).map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        Ok(encodings
            .iter()
            .map(|e| {
                std::iter::once(e.get_ids().to_vec())
                    .chain(e.get_overflowing().iter().map(|o| o.get_ids().to_vec()))
                    .collect()
            })
            .collect())
    }

    /// Token ids of one text without special tokens and without truncation (prompts,
    /// language-model corpora).
    pub fn encode_plain(&self, text: &str) -> Result<Vec<u32>> {
        let e =
            self.inner.encode(text, false).map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        Ok(e.get_ids().to_vec())
    }

    /// The text of token `ids` (special tokens kept, so an end-of-text shows).
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| Error::invalid(format!("decoding failed: {e}")))
    }

    /// The tokens of one text (for `show data`).
    pub fn tokens(&self, text: &str) -> Result<Vec<String>> {
        let e =
            self.inner.encode(text, true).map_err(|e| Error::invalid(format!("tokenizing failed: {e}")))?;
        Ok(e.get_tokens().to_vec())
    }

    /// Writes `tokenizer.json` (and `vocab.txt`, `tokenizer_config.json`,
    /// `special_tokens_map.json` for WordPiece) so `transformers.AutoTokenizer` loads `dir`.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let json = self
            .inner
            .to_string(true)
            .map_err(|e| Error::invalid(format!("cannot serialise the tokenizer: {e}")))?;
        crate::files::write_bytes_atomic(&dir.join("tokenizer.json"), json.as_bytes())?;
        if let Some(vocab) = &self.vocab_file {
            let bytes = std::fs::read(vocab)
                .map_err(|e| Error::Read { path: vocab.clone(), reason: e.to_string() })?;
            crate::files::write_bytes_atomic(&dir.join("vocab.txt"), &bytes)?;
        }
        if let Some((vocab, merges)) = &self.bpe_files {
            for (from, name) in [(vocab, "vocab.json"), (merges, "merges.txt")] {
                let bytes = std::fs::read(from)
                    .map_err(|e| Error::Read { path: from.clone(), reason: e.to_string() })?;
                crate::files::write_bytes_atomic(&dir.join(name), &bytes)?;
            }
        }
        let config = match (&self.config, &self.vocab_file) {
            (Some(c), _) => c.clone(),
            (None, Some(_)) => serde_json::json!({
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": true,
                "model_max_length": 512,
                "pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            }),
            (None, None) => return Ok(()),
        };
        let text = serde_json::to_string_pretty(&config).expect("plain JSON");
        crate::files::write_bytes_atomic(&dir.join("tokenizer_config.json"), text.as_bytes())?;
        Ok(())
    }
}
