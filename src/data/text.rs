//! Labelled text: reading (columns of a table, a file per label, a folder per label),
//! cleaning, augmentation, label mapping, tokenization and batching.

use std::collections::HashSet;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use rand::seq::SliceRandom;
use rand::Rng;

use super::{split_indices, Batch, Split, TextTokenizer};
use crate::error::{bail, Error, Result};
use crate::uploads::{self, Upload};

/// Class names in index order. Integer labels sort numerically, others alphabetically.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LabelSet {
    /// Names, index = class id.
    pub names: Vec<String>,
}

impl LabelSet {
    /// The classes seen in `labels`.
    pub fn from_values(labels: &[String]) -> LabelSet {
        let mut names: Vec<String> = labels.iter().cloned().collect::<HashSet<_>>().into_iter().collect();
        if names.iter().all(|n| n.parse::<i64>().is_ok()) {
            names.sort_by_key(|n| n.parse::<i64>().unwrap_or(0));
        } else {
            names.sort();
        }
        LabelSet { names }
    }

    /// The class id of `name`.
    pub fn id(&self, name: &str) -> Option<u32> {
        self.names.iter().position(|n| n == name).map(|i| i as u32)
    }

    /// Class ids of `labels`; a label not in the set is an error naming it and `origin`.
    pub fn ids(&self, labels: &[String], origin: &str) -> Result<Vec<u32>> {
        labels
            .iter()
            .map(|l| {
                self.id(l).ok_or_else(|| {
                    Error::invalid(format!(
                        "label '{l}' in {origin} is not one of the training labels ({}); fix the file or retrain",
                        self.names.join(", ")
                    ))
                })
            })
            .collect()
    }

    /// `neg → 0, pos → 1`.
    pub fn describe(&self) -> String {
        self.names.iter().enumerate().map(|(i, n)| format!("{n} → {i}")).collect::<Vec<_>>().join(", ")
    }
}

/// What `clean` removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CleanReport {
    /// Rows whose text was empty after trimming.
    pub empty: usize,
    /// Rows whose text repeated an earlier row's.
    pub duplicates: usize,
    /// Rows added by augmentation.
    pub augmented: usize,
    /// How the training split was evened out, with its rows before and after.
    pub rebalanced: Option<(super::Balance, usize, usize)>,
}

/// Trims every text and drops empty ones and exact duplicates (keeping the first).
pub fn clean(texts: Vec<String>, labels: Vec<String>) -> (Vec<String>, Vec<String>, CleanReport) {
    let mut seen = HashSet::new();
    let mut report = CleanReport::default();
    let mut out = (Vec::new(), Vec::new());
    for (t, l) in texts.into_iter().zip(labels) {
        let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
        if t.is_empty() {
            report.empty += 1;
        } else if !seen.insert(t.clone()) {
            report.duplicates += 1;
        } else {
            out.0.push(t);
            out.1.push(l);
        }
    }
    (out.0, out.1, report)
}

/// A noisy copy of `text` (walkthrough 1's augmentation, no synonym list needed): each word
/// is deleted with probability `p`, then `p`·words random pairs of words are swapped. Text
/// without spaces (Chinese) is treated character by character.
pub fn augment(text: &str, p: f64, rng: &mut impl Rng) -> String {
    let spaced = text.contains(' ');
    let mut units: Vec<String> = if spaced {
        text.split(' ').map(str::to_string).collect()
    } else {
        text.chars().map(String::from).collect()
    };
    if units.len() > 1 {
        let kept: Vec<String> = units.iter().filter(|_| rng.random::<f64>() >= p).cloned().collect();
        if !kept.is_empty() {
            units = kept;
        }
        let swaps = ((units.len() as f64) * p).round() as usize;
        for _ in 0..swaps {
            let (a, b) = (rng.random_range(0..units.len()), rng.random_range(0..units.len()));
            units.swap(a, b);
        }
    }
    units.join(if spaced { " " } else { "" })
}

/// Token ids of every row on the device, padded to `max_len`.
#[derive(Clone, Debug)]
struct Encoded {
    /// Which tokenizer and length produced it.
    key: String,
    ids: Tensor,
    labels: Tensor,
    lens: Vec<u32>,
    truncated: usize,
    unknown: usize,
    /// Packed language-model data: the block rows of each split.
    blocks: Option<Box<[Vec<u32>; 3]>>,
    /// Long texts cut into windows (`stride=`): which rows belong to which text.
    windows: Option<Box<Windows>>,
}

/// Rows of a data set whose long texts were cut into overlapping windows: every row is a
/// window that keeps its text's label; predictions pool a text's windows.
#[derive(Clone, Debug)]
struct Windows {
    /// The windows of text `i` are rows `starts[i]..starts[i + 1]`.
    starts: Vec<u32>,
    /// The text each row (window) belongs to.
    owner: Vec<u32>,
    /// The window rows of each split.
    splits: [Vec<u32>; 3],
}

/// Labelled texts, split into train/valid/test, tokenized once a model provides a tokenizer.
#[derive(Clone, Debug)]
pub struct TextData {
    /// Where it came from.
    pub source: String,
    /// The texts, after cleaning and augmentation.
    pub texts: Vec<String>,
    /// Class id of each text.
    pub labels: Vec<u32>,
    /// The classes.
    pub label_set: LabelSet,
    /// Longest token sequence kept (longer texts are truncated).
    pub max_len: usize,
    /// What cleaning and augmentation did.
    pub report: CleanReport,
    /// The text and label columns it was read from (tables only), to read `eval file=`
    /// the same way.
    pub columns: Option<(String, String)>,
    /// Language modelling: tokens per packed block (rows become blocks once tokenized).
    pub block: Option<usize>,
    /// Long texts: tokens shared by consecutive windows of `max_len` tokens; `None`
    /// truncates instead (rows become windows once tokenized).
    pub stride: Option<usize>,
    splits: [Vec<u32>; 3],
    encoded: Option<Encoded>,
}

/// Texts and label strings read from one source.
pub struct Labelled {
    /// The texts.
    pub texts: Vec<String>,
    /// Their labels, as written.
    pub labels: Vec<String>,
}

impl Labelled {
    /// Lines of each file, labelled by the file's stem (`pos.txt` → `pos`).
    pub fn from_files(paths: &[&Path]) -> Result<Labelled> {
        let mut out = Labelled { texts: Vec::new(), labels: Vec::new() };
        for path in paths {
            let text = read_utf8(path)?;
            let label = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
            for line in text.lines() {
                out.texts.push(line.to_string());
                out.labels.push(label.clone());
            }
        }
        Ok(out)
    }

    /// A folder with a sub-folder per label (each file one sample, as IMDB's `pos/`, `neg/`),
    /// or with a `.txt` file per label (one sample per line).
    pub fn from_folder(dir: &Path) -> Result<Labelled> {
        let mut entries: Vec<_> = std::fs::read_dir(dir)
            .map_err(|e| Error::Read { path: dir.to_path_buf(), reason: e.to_string() })?
            .flatten()
            .map(|e| e.path())
            .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
            .collect();
        entries.sort();
        let subdirs: Vec<&std::path::PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
        if !subdirs.is_empty() {
            let mut out = Labelled { texts: Vec::new(), labels: Vec::new() };
            for sub in subdirs {
                let label = sub.file_name().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                let mut files: Vec<_> = std::fs::read_dir(sub)
                    .map_err(|e| Error::Read { path: sub.to_path_buf(), reason: e.to_string() })?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_file())
                    .collect();
                files.sort();
                for f in files {
                    out.texts.push(read_utf8(&f)?);
                    out.labels.push(label.clone());
                }
            }
            return Ok(out);
        }
        let files: Vec<&Path> = entries
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "txt"))
            .map(|p| p.as_path())
            .collect();
        if files.is_empty() {
            bail!(
                "'{}' has no sub-folders and no .txt files; put one folder or one .txt file per label in it",
                dir.display()
            )
        }
        Labelled::from_files(&files)
    }
}

fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        reason: if e.kind() == std::io::ErrorKind::NotFound {
            "no such file; check the path".into()
        } else {
            e.to_string()
        },
    })?;
    String::from_utf8(bytes).map_err(|e| Error::Read {
        path: path.to_path_buf(),
        reason: format!(
            "not UTF-8 text (bad byte at offset {}); save it as UTF-8",
            e.utf8_error().valid_up_to()
        ),
    })
}

/// Options for building a [`TextData`].
pub struct TextOptions<'a> {
    /// train/valid/test fractions (ignored for parts given as separate files).
    pub fractions: &'a [f64],
    /// Shuffle before splitting.
    pub shuffle: bool,
    /// Trim, drop empties and duplicates.
    pub clean: bool,
    /// Augmented copies per training text (0 = none) and the noise probability.
    pub augment: (usize, f64),
    /// Token limit.
    pub max_len: usize,
    /// Keep only this many randomly chosen texts of the main source.
    pub limit: Option<usize>,
    /// Class names to use (a loaded classifier's), instead of those seen in the data.
    pub labels: Option<&'a LabelSet>,
    /// Language modelling: pack each split's tokens into blocks of this many tokens.
    pub block: Option<usize>,
    /// Resample the training split so its classes are even (after augmentation).
    pub balance: Option<super::Balance>,
}

impl TextData {
    /// Builds a data set from a main source and optional separate validation and test
    /// sources; `fractions` split the main source when the others are absent.
    pub fn new(
        source: String,
        main: Labelled,
        valid: Option<Labelled>,
        test: Option<Labelled>,
        opts: &TextOptions,
        rng: &mut impl Rng,
    ) -> Result<TextData> {
        let mut report = CleanReport::default();
        let mut prepare = |l: Labelled| {
            if opts.clean {
                let (t, lab, r) = clean(l.texts, l.labels);
                report.empty += r.empty;
                report.duplicates += r.duplicates;
                (t, lab)
            } else {
                (l.texts, l.labels)
            }
        };
        let (mut texts, mut labels) = prepare(main);
        if let Some(limit) = opts.limit.filter(|l| *l < texts.len()) {
            let mut keep: Vec<usize> = (0..texts.len()).collect();
            keep.shuffle(rng);
            keep.truncate(limit);
            keep.sort_unstable();
            texts = keep.iter().map(|&i| std::mem::take(&mut texts[i])).collect();
            labels = keep.iter().map(|&i| std::mem::take(&mut labels[i])).collect();
        }
        if texts.is_empty() {
            bail!("'{source}' has no texts (after removing empty lines); is it the right file?")
        }
        let label_set = match opts.labels {
            Some(l) => l.clone(),
            None => LabelSet::from_values(&labels),
        };
        let mut ids = label_set.ids(&labels, &source)?;
        // Splits: the main source by fractions unless separate files are given.
        let n_main = texts.len();
        // A separate file replaces its split; the main source's fractions are renormalised
        // over the splits it still provides.
        let f = |i: usize| opts.fractions.get(i).copied().unwrap_or(0.0);
        let fr: Vec<f64> = match (&valid, &test) {
            (None, None) => opts.fractions.to_vec(),
            (Some(_), Some(_)) => vec![1.0, 0.0],
            (Some(_), None) if f(2) > 0.0 => vec![f(0) / (f(0) + f(2)), 0.0, f(2) / (f(0) + f(2))],
            (Some(_), None) => vec![1.0, 0.0],
            (None, Some(_)) => vec![f(0) / (f(0) + f(1)), f(1) / (f(0) + f(1))],
        };
        let [mut train, mut val, mut tst] = split_indices(n_main, &fr, opts.shuffle, rng)?;
        for (extra, split, name) in [(valid, &mut val, "the valid= file"), (test, &mut tst, "the test= file")]
        {
            if let Some(extra) = extra {
                let (t, l) = prepare(extra);
                let extra_ids = label_set.ids(&l, name)?;
                split.clear();
                split.extend((texts.len() as u32)..(texts.len() + t.len()) as u32);
                texts.extend(t);
                ids.extend(extra_ids);
            }
        }
        // Augmentation adds noisy copies of training texts only.
        let (copies, p) = opts.augment;
        if copies > 0 {
            let originals = train.clone();
            for _ in 0..copies {
                for &i in &originals {
                    let noisy = augment(&texts[i as usize], p, rng);
                    train.push(texts.len() as u32);
                    texts.push(noisy);
                    ids.push(ids[i as usize]);
                    report.augmented += 1;
                }
            }
            train.shuffle(rng);
        }
        if let Some(how) = opts.balance {
            let before = train.len();
            train = super::balance(&train, &ids, how, rng);
            report.rebalanced = Some((how, before, train.len()));
        }
        labels.clear();
        Ok(TextData {
            source,
            texts,
            labels: ids,
            label_set,
            max_len: opts.max_len,
            report,
            columns: None,
            block: opts.block,
            stride: None,
            splits: [train, val, tst],
            encoded: None,
        })
    }

    /// Number of texts.
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Row indices of a split: texts, or blocks once packed language-model data is
    /// tokenized, or windows once long texts are cut (`stride=`).
    pub fn split(&self, s: Split) -> &[u32] {
        let enc = self.encoded.as_ref();
        if let Some(blocks) = enc.and_then(|e| e.blocks.as_ref()) {
            return &blocks[s as usize];
        }
        match enc.and_then(|e| e.windows.as_ref()) {
            Some(w) => &w.splits[s as usize],
            None => &self.splits[s as usize],
        }
    }

    /// The text each row belongs to, when long texts were cut into windows (`stride=`).
    pub fn window_owner(&self) -> Option<&[u32]> {
        self.encoded.as_ref().and_then(|e| e.windows.as_ref()).map(|w| w.owner.as_slice())
    }

    /// The rows of `texts`: their windows when texts were cut, else the texts themselves.
    pub fn rows_of_texts(&self, texts: &[u32]) -> Vec<u32> {
        match self.encoded.as_ref().and_then(|e| e.windows.as_ref()) {
            Some(w) => texts.iter().flat_map(|&t| w.starts[t as usize]..w.starts[t as usize + 1]).collect(),
            None => texts.to_vec(),
        }
    }

    /// Texts that were cut into more than one window, and all windows, once tokenized with
    /// `stride=`.
    pub fn window_stats(&self) -> Option<(usize, usize)> {
        let w = self.encoded.as_ref()?.windows.as_ref()?;
        let split = w.starts.windows(2).filter(|p| p[1] - p[0] > 1).count();
        Some((split, w.owner.len()))
    }

    /// Texts of a split (before any packing into blocks).
    pub fn text_split(&self, s: Split) -> &[u32] {
        &self.splits[s as usize]
    }

    /// Rows per class in a split.
    pub fn class_counts(&self, s: Split) -> Vec<usize> {
        let mut counts = vec![0; self.label_set.names.len()];
        for &i in self.text_split(s) {
            counts[self.labels[i as usize] as usize] += 1;
        }
        counts
    }

    /// Whether the data is tokenized for `tokenizer`.
    pub fn is_encoded_for(&self, tokenizer: &TextTokenizer) -> bool {
        self.encoded.as_ref().is_some_and(|e| e.key == key(tokenizer, self.max_len, self.block, self.stride))
    }

    /// Tokenizes every text once (truncating to `max_len`, or packing into blocks for
    /// language modelling) and keeps the ids on `device`.
    pub fn encode(&mut self, tokenizer: &TextTokenizer, device: &Device) -> Result<()> {
        if self.is_encoded_for(tokenizer) {
            return Ok(());
        }
        if let Some(block) = self.block {
            return self.encode_blocks(tokenizer, block, device);
        }
        if let Some(stride) = self.stride {
            return self.encode_windows(tokenizer, stride, device);
        }
        let (seqs, truncated) = tokenizer.encode_batch(&self.texts, self.max_len)?;
        let width = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = vec![tokenizer.pad_id; seqs.len() * width];
        let unk = tokenizer.unk_id;
        let mut unknown = 0;
        for (row, s) in seqs.iter().enumerate() {
            flat[row * width..row * width + s.len()].copy_from_slice(s);
            unknown += s.iter().filter(|t| Some(**t) == unk).count();
        }
        let lens: Vec<u32> = seqs.iter().map(|s| s.len() as u32).collect();
        uploads::note(Upload::Data, device, 2); // the id matrix and the labels
        self.encoded = Some(Encoded {
            key: key(tokenizer, self.max_len, self.block, self.stride),
            ids: Tensor::from_vec(flat, (seqs.len(), width), device)?,
            labels: Tensor::from_slice(&self.labels, self.labels.len(), device)?,
            lens,
            truncated,
            unknown,
            blocks: None,
            windows: None,
        });
        Ok(())
    }

    /// Long texts: every text cut into windows of `max_len` tokens sharing `stride` tokens;
    /// each window is a row with its text's label.
    fn encode_windows(&mut self, tokenizer: &TextTokenizer, stride: usize, device: &Device) -> Result<()> {
        let per_text = tokenizer.encode_windows(&self.texts, self.max_len, stride)?;
        let mut starts = vec![0u32];
        let (mut owner, mut labels, mut seqs) = (Vec::new(), Vec::new(), Vec::new());
        for (i, windows) in per_text.into_iter().enumerate() {
            for w in windows {
                owner.push(i as u32);
                labels.push(self.labels[i]);
                seqs.push(w);
            }
            starts.push(seqs.len() as u32);
        }
        let width = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
        let mut flat = vec![tokenizer.pad_id; seqs.len() * width];
        let mut unknown = 0;
        for (row, s) in seqs.iter().enumerate() {
            flat[row * width..row * width + s.len()].copy_from_slice(s);
            unknown += s.iter().filter(|t| Some(**t) == tokenizer.unk_id).count();
        }
        let of = |texts: &[u32]| -> Vec<u32> {
            texts.iter().flat_map(|&t| starts[t as usize]..starts[t as usize + 1]).collect()
        };
        let splits = [of(&self.splits[0]), of(&self.splits[1]), of(&self.splits[2])];
        uploads::note(Upload::Data, device, 2); // the id matrix and the labels
        self.encoded = Some(Encoded {
            key: key(tokenizer, self.max_len, self.block, self.stride),
            ids: Tensor::from_vec(flat, (seqs.len(), width), device)?,
            labels: Tensor::from_slice(&labels, labels.len(), device)?,
            lens: seqs.iter().map(|s| s.len() as u32).collect(),
            truncated: 0,
            unknown,
            blocks: None,
            windows: Some(Box::new(Windows { starts, owner, splits })),
        });
        Ok(())
    }

    /// Language modelling: each split's texts, each followed by the end-of-text token, are
    /// concatenated and cut into blocks of `block` tokens (a last shorter block is padded).
    fn encode_blocks(&mut self, tokenizer: &TextTokenizer, block: usize, device: &Device) -> Result<()> {
        let eos = tokenizer.eos_id;
        let mut flat = Vec::new();
        let mut lens = Vec::new();
        let mut blocks: [Vec<u32>; 3] = Default::default();
        let mut unknown = 0;
        for s in Split::ALL {
            let mut stream = Vec::new();
            for &i in &self.splits[s as usize] {
                let ids = tokenizer.encode_plain(&self.texts[i as usize])?;
                unknown += ids.iter().filter(|t| Some(**t) == tokenizer.unk_id).count();
                stream.extend(ids);
                stream.extend(eos);
            }
            for chunk in stream.chunks(block).filter(|c| c.len() >= 2) {
                blocks[s as usize].push(lens.len() as u32);
                lens.push(chunk.len() as u32);
                flat.extend_from_slice(chunk);
                flat.extend(std::iter::repeat_n(tokenizer.pad_id, block - chunk.len()));
            }
        }
        if blocks[Split::Train as usize].is_empty() {
            bail!("the training texts make no block of 2 or more tokens; add text or lower block=")
        }
        let n = lens.len();
        uploads::note(Upload::Data, device, 2); // the id matrix and the labels
        self.encoded = Some(Encoded {
            key: key(tokenizer, self.max_len, self.block, self.stride),
            ids: Tensor::from_vec(flat, (n, block), device)?,
            labels: Tensor::zeros(n, DType::U32, device)?,
            lens,
            truncated: 0,
            unknown,
            blocks: Some(Box::new(blocks)),
            windows: None,
        });
        Ok(())
    }

    /// Texts truncated to `max_len` and unknown tokens, once tokenized.
    pub fn token_stats(&self) -> Option<(usize, usize)> {
        self.encoded.as_ref().map(|e| (e.truncated, e.unknown))
    }

    /// How often each token id occurs in the rows of split `s` (padding excluded), indexed
    /// by id up to the largest one seen, once tokenized.
    pub fn token_counts(&self, s: Split) -> Result<Vec<u64>> {
        let Some(enc) = &self.encoded else {
            bail!("the text is not tokenized yet: load a text model first")
        };
        let ids = enc.ids.to_device(&Device::Cpu)?.to_vec2::<u32>()?;
        let mut counts = Vec::new();
        for &row in self.split(s) {
            let len = enc.lens[row as usize] as usize;
            for &id in &ids[row as usize][..len] {
                if counts.len() <= id as usize {
                    counts.resize(id as usize + 1, 0);
                }
                counts[id as usize] += 1;
            }
        }
        Ok(counts)
    }

    /// Token counts of every text, once tokenized.
    pub fn token_lens(&self) -> Option<&[u32]> {
        self.encoded.as_ref().map(|e| e.lens.as_slice())
    }

    /// The rows `idx` as a batch padded to its longest text.
    pub fn batch(&self, idx: &[u32]) -> Result<Batch> {
        let Some(enc) = &self.encoded else {
            bail!("the text is not tokenized yet: load a text model (e.g. `load DIR task=classify`) first")
        };
        let device = enc.ids.device();
        let longest = idx.iter().map(|&i| enc.lens[i as usize]).max().unwrap_or(1).max(1) as usize;
        let rows = Tensor::from_slice(idx, idx.len(), device)?;
        let ids = enc.ids.index_select(&rows, 0)?.narrow(1, 0, longest)?;
        let mut mask = vec![0u32; idx.len() * longest];
        for (r, &i) in idx.iter().enumerate() {
            mask[r * longest..r * longest + enc.lens[i as usize] as usize].fill(1);
        }
        let mask = Tensor::from_vec(mask, (idx.len(), longest), device)?;
        Ok(Batch::Text { ids, mask, labels: Some(enc.labels.index_select(&rows, 0)?) })
    }

    /// The same data on another device.
    pub fn to_device(&self, device: &Device) -> Result<TextData> {
        let mut out = self.clone();
        if let Some(e) = out.encoded.as_mut() {
            e.ids = uploads::to_device(&e.ids, device, Upload::Data)?;
            e.labels = uploads::to_device(&e.labels, device, Upload::Data)?;
        }
        Ok(out)
    }

    /// Bytes held on the device.
    pub fn device_bytes(&self) -> usize {
        self.encoded
            .as_ref()
            .map_or(0, |e| (e.ids.elem_count() + e.labels.elem_count()) * DType::U32.size_in_bytes())
    }
}

fn key(tokenizer: &TextTokenizer, max_len: usize, block: Option<usize>, stride: Option<usize>) -> String {
    format!("{}#{}#{max_len}#{block:?}#{stride:?}", tokenizer.source, tokenizer.vocab_size())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn labelled(rows: &[(&str, &str)]) -> Labelled {
        Labelled {
            texts: rows.iter().map(|r| r.0.to_string()).collect(),
            labels: rows.iter().map(|r| r.1.to_string()).collect(),
        }
    }

    #[test]
    fn labels_sort_numerically_or_alphabetically() {
        let l = LabelSet::from_values(&["10".into(), "2".into(), "2".into()]);
        assert_eq!(l.names, ["2", "10"]);
        let l = LabelSet::from_values(&["pos".into(), "neg".into()]);
        assert_eq!(l.describe(), "neg → 0, pos → 1");
        assert!(l
            .ids(&["neutral".into()], "x.csv")
            .unwrap_err()
            .to_string()
            .contains("label 'neutral' in x.csv"));
    }

    #[test]
    fn cleaning_reports_what_it_removed() {
        let (t, l, r) = clean(
            vec!["  good  film ".into(), "".into(), "good film".into(), "bad".into()],
            vec!["pos".into(), "neg".into(), "pos".into(), "neg".into()],
        );
        assert_eq!(t, ["good film", "bad"]);
        assert_eq!(l, ["pos", "neg"]);
        assert_eq!(r, CleanReport { empty: 1, duplicates: 1, ..Default::default() });
    }

    #[test]
    fn augmentation_is_seeded_and_noisy() {
        let mut a = rand::rngs::StdRng::seed_from_u64(1);
        let mut b = rand::rngs::StdRng::seed_from_u64(1);
        let text = "the quick brown fox jumps over the lazy dog again";
        let x = augment(text, 0.3, &mut a);
        assert_eq!(x, augment(text, 0.3, &mut b));
        assert_ne!(x, text);
        let zh = augment("这个手机非常好用", 0.3, &mut a);
        assert!(!zh.contains(' ') && !zh.is_empty());
    }

    #[test]
    fn splits_and_separate_files() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let rows: Vec<(String, &str)> =
            (0..20).map(|i| (format!("text {i}"), if i % 2 == 0 { "a" } else { "b" })).collect();
        let main = Labelled {
            texts: rows.iter().map(|r| r.0.clone()).collect(),
            labels: rows.iter().map(|r| r.1.to_string()).collect(),
        };
        let opts = TextOptions {
            fractions: &[0.8, 0.1, 0.1],
            shuffle: true,
            clean: true,
            augment: (1, 0.1),
            max_len: 16,
            limit: None,
            labels: None,
            block: None,
            balance: None,
        };
        let test = labelled(&[("held out", "a"), ("other", "b")]);
        let d = TextData::new("x".into(), main, None, Some(test), &opts, &mut rng).unwrap();
        assert_eq!(d.split(Split::Test).len(), 2);
        assert_eq!(d.split(Split::Train).len(), 18 * 2, "18 originals + 18 augmented copies");
        assert_eq!(d.report.augmented, 18);
        let bad = labelled(&[("x", "c")]);
        let main = labelled(&[("1", "a"), ("2", "b")]);
        let e = TextData::new("x".into(), main, Some(bad), None, &opts, &mut rng).unwrap_err().to_string();
        assert!(e.contains("label 'c' in the valid= file"), "{e}");
    }
}
