//! The one table of verbs, their arguments, options, defaults and docs.
//!
//! The parser, `help`, completion and hints all read this table; a new verb starts here.
//! Every entry's examples are parsed by a test, and every default parses as its kind.

use super::value::{Bound, Kind};

/// Where a verb is listed in `help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// Device, seed, settings.
    Session,
    /// Loading and splitting data.
    Data,
    /// Loading, freezing and saving models.
    Model,
    /// Optimizers, schedules and training.
    Training,
    /// Evaluation, prediction, plots and inspection.
    Inspect,
    /// Snapshots and undo.
    History,
}

impl Group {
    /// All groups in the order `help` lists them.
    pub const ALL: [Group; 6] =
        [Group::Session, Group::Data, Group::Model, Group::Training, Group::Inspect, Group::History];

    /// The heading `help` prints.
    pub fn title(self) -> &'static str {
        match self {
            Group::Session => "session",
            Group::Data => "data",
            Group::Model => "model",
            Group::Training => "training",
            Group::Inspect => "results",
            Group::History => "snapshots",
        }
    }
}

/// A positional argument of a verb.
#[derive(Debug)]
pub struct ArgSpec {
    /// Name shown in usage lines (`NAME`, `FILE`).
    pub name: &'static str,
    /// Its type.
    pub kind: Kind,
    /// Whether the verb needs it.
    pub required: bool,
    /// Whether it takes any number of values (only the last argument).
    pub many: bool,
    /// Words offered by completion besides what the kind offers.
    pub suggest: &'static [&'static str],
    /// One line of documentation.
    pub doc: &'static str,
}

/// A `key=value` option of a verb.
#[derive(Debug)]
pub struct OptSpec {
    /// The key.
    pub name: &'static str,
    /// The value's type.
    pub kind: Kind,
    /// The default as written in the language; `None` when the default comes from the
    /// session (e.g. `fit epochs=` defaults to the `epochs` setting) or the doc explains it.
    pub default: Option<&'static str>,
    /// One line of documentation.
    pub doc: &'static str,
}

/// One verb of the language.
#[derive(Debug)]
pub struct VerbSpec {
    /// The verb.
    pub name: &'static str,
    /// Other spellings that mean the same verb.
    pub aliases: &'static [&'static str],
    /// Where `help` lists it.
    pub group: Group,
    /// One-line summary.
    pub summary: &'static str,
    /// A short paragraph for `help VERB`.
    pub details: &'static str,
    /// Positional arguments, in order.
    pub args: &'static [ArgSpec],
    /// `key=value` options.
    pub options: &'static [OptSpec],
    /// Example lines, each a valid command.
    pub examples: &'static [&'static str],
}

impl VerbSpec {
    /// The option named `name`.
    pub fn option(&self, name: &str) -> Option<&'static OptSpec>
    where
        Self: 'static,
    {
        self.options.iter().find(|o| o.name == name)
    }

    /// The usage line: `fit [epochs=N] [batch=N]`.
    pub fn usage(&self) -> String {
        let mut parts = vec![self.name.to_string()];
        for a in self.args {
            let name = match a.kind {
                Kind::Choice(c) => c.join("|"),
                _ => a.name.to_string(),
            };
            let name = if a.many { format!("{name}...") } else { name };
            parts.push(if a.required { name } else { format!("[{name}]") });
        }
        for o in self.options {
            parts.push(format!("[{}={}]", o.name, o.kind.placeholder()));
        }
        parts.join(" ")
    }
}

const POS_F: Kind = Kind::Float(Bound::Positive);
const NONNEG_F: Kind = Kind::Float(Bound::NonNegative);
const ANY_F: Kind = Kind::Float(Bound::Any);
const COUNT: Kind = Kind::Int(Bound::AtLeastOne);
static FLOAT: Kind = Kind::Float(Bound::Any);
static TEXT: Kind = Kind::Text;

/// Optimizer names.
pub const OPTIMIZERS: &[&str] = &["sgd", "adam", "adamw", "rmsprop"];
/// Learning-rate schedules.
pub const SCHEDULES: &[&str] = &["constant", "linear", "cosine", "step"];
/// What `plot` draws.
pub const PLOTS: &[&str] = &["loss", "lr", "surface", "fit", "confusion"];
/// What `show` shows.
pub const SHOWABLE: &[&str] =
    &["params", "grads", "config", "history", "data", "model", "optimizer", "snapshots", "device", "memory"];
/// Data splits.
pub const SPLITS: &[&str] = &["train", "valid", "test"];

/// The sampling options `generate` and `compare generate` share.
const SAMPLE_MAX_TOKENS: OptSpec =
    OptSpec { name: "max_tokens", kind: COUNT, default: Some("64"), doc: "tokens to generate at most" };
const SAMPLE_TEMPERATURE: OptSpec = OptSpec {
    name: "temperature",
    kind: Kind::Float(Bound::NonNegative),
    default: Some("0.8"),
    doc: "> 0: below 1 sharper, above 1 more random",
};
const SAMPLE_TOP_K: OptSpec = OptSpec {
    name: "top_k",
    kind: Kind::Int(Bound::NonNegative),
    default: Some("50"),
    doc: "keep the k most likely tokens (0: all)",
};
const SAMPLE_TOP_P: OptSpec = OptSpec {
    name: "top_p",
    kind: Kind::Float(Bound::Positive),
    default: Some("0.95"),
    doc: "nucleus: keep tokens up to this probability mass (1: all)",
};
const SAMPLE_GREEDY: OptSpec =
    OptSpec { name: "greedy", kind: Kind::Bool, default: Some("false"), doc: "always the most likely token" };
const SAMPLE_SEED: OptSpec = OptSpec {
    name: "seed",
    kind: Kind::Int(Bound::NonNegative),
    default: None,
    doc: "sampling seed (default: the session's)",
};
const SAMPLE_MIN_TOKENS: OptSpec = OptSpec {
    name: "min_tokens",
    kind: Kind::Int(Bound::NonNegative),
    default: Some("0"),
    doc: "no end-of-text before this many tokens",
};
const SAMPLE_N: OptSpec = OptSpec { name: "n", kind: COUNT, default: Some("1"), doc: "number of samples" };

/// Every verb of the language.
pub static VERBS: &[VerbSpec] = &[
    VerbSpec {
        name: "help",
        aliases: &["?"],
        group: Group::Session,
        summary: "list the verbs, or explain one",
        details: "Without an argument, lists every verb by group. With a verb, shows its usage, \
                  options with their defaults, and examples.",
        args: &[ArgSpec {
            name: "VERB",
            kind: Kind::Text,
            required: false,
            many: false,
            suggest: &[],
            doc: "the verb to explain",
        }],
        options: &[],
        examples: &["help", "help fit"],
    },
    VerbSpec {
        name: "quit",
        aliases: &["exit"],
        group: Group::Session,
        summary: "leave tunelab (Ctrl-D does the same)",
        details: "Ends the session. Nothing is saved automatically: use `save DIR` first.",
        args: &[],
        options: &[],
        examples: &["quit"],
    },
    VerbSpec {
        name: "device",
        aliases: &[],
        group: Group::Session,
        summary: "show or choose the compute device (cpu, cuda, cuda:N, auto)",
        details: "Without an argument, shows the current device (on the CPU also its threads and \
                  what runs the matrix products: the built-in gemm, or the BLAS library named by \
                  TUNELAB_BLAS, e.g. MKL's libmkl_rt.so). Choosing another device moves \
                  the model, its optimizer state and the data there. `auto` picks CUDA when this \
                  build has it and a GPU is present, else the CPU.",
        args: &[ArgSpec {
            name: "DEVICE",
            kind: Kind::Text,
            required: false,
            many: false,
            suggest: &["cpu", "cuda", "auto"],
            doc: "cpu, cuda, cuda:N or auto",
        }],
        options: &[],
        examples: &["device", "device cpu", "device auto"],
    },
    VerbSpec {
        name: "precision",
        aliases: &[],
        group: Group::Session,
        summary: "show or choose the compute precision (f32, bf16, f16)",
        details: "bf16 and f16 run forward and backward passes in half precision (matrix products \
                  and activations; norms, softmax and losses stay f32) while the weights and the \
                  optimizer state stay f32, so memory for activations halves and GPU tensor cores \
                  are used. f16 adds dynamic loss scaling: a step whose gradients overflow is \
                  skipped and the scale halved. Applies to the loaded model and any loaded later; \
                  `save` writes f32 weights either way.",
        args: &[ArgSpec {
            name: "PRECISION",
            kind: Kind::Choice(&["f32", "bf16", "f16"]),
            required: false,
            many: false,
            suggest: &["f32", "bf16", "f16"],
            doc: "f32 (default), bf16 or f16",
        }],
        options: &[],
        examples: &["precision bf16", "precision"],
    },
    VerbSpec {
        name: "seed",
        aliases: &[],
        group: Group::Session,
        summary: "show or set the random seed (data shuffling, splits, initialisation)",
        details: "Re-seeds the session's random generator. The same seed and the same commands \
                  give the same numbers.",
        args: &[ArgSpec {
            name: "N",
            kind: Kind::Int(Bound::NonNegative),
            required: false,
            many: false,
            suggest: &[],
            doc: "the seed",
        }],
        options: &[],
        examples: &["seed 42", "seed"],
    },
    VerbSpec {
        name: "batch",
        aliases: &[],
        group: Group::Training,
        summary: "show or set the default batch size",
        details: "The batch size `fit` and `step` use when not given one. A batch larger than the \
                  training split means full-batch gradient descent.",
        args: &[ArgSpec {
            name: "N",
            kind: COUNT,
            required: false,
            many: false,
            suggest: &[],
            doc: "samples per update",
        }],
        options: &[],
        examples: &["batch 32", "batch"],
    },
    VerbSpec {
        name: "epochs",
        aliases: &[],
        group: Group::Training,
        summary: "show or set the default number of epochs",
        details: "The number of passes over the training split `fit` makes when not told.",
        args: &[ArgSpec {
            name: "N",
            kind: COUNT,
            required: false,
            many: false,
            suggest: &[],
            doc: "passes over the training data",
        }],
        options: &[],
        examples: &["epochs 100", "epochs"],
    },
    VerbSpec {
        name: "data",
        aliases: &[],
        group: Group::Data,
        summary: "load a data set from files, or generate a synthetic one",
        details: "Text for classification: `data FILE text=COL label=COL` (csv, tsv or jsonl), \
                  `data pos.txt neg.txt` (a file per label, one text per line), or `data DIR` \
                  (a sub-folder per label with a file per text, or a .txt file per label). Texts \
                  are cleaned (trimmed, empty and duplicate rows dropped) and tokenized once a text \
                  model is loaded. Numbers for regression: `data FILE x=COLS y=COL`, or \
                  `data synthetic linear` (x from a standard normal, y = w·x + b + noise). Rows are \
                  shuffled with the session seed and split into train/valid/test.",
        args: &[
            ArgSpec {
                name: "SOURCE",
                kind: Kind::Path,
                required: true,
                many: false,
                suggest: &["synthetic"],
                doc: "a csv/tsv/jsonl file, a .txt file per label, a folder, or `synthetic`",
            },
            ArgSpec {
                name: "MORE",
                kind: Kind::Path,
                required: false,
                many: true,
                suggest: &["linear"],
                doc: "more .txt files (one per label); after `synthetic`: `linear`",
            },
        ],
        options: &[
            OptSpec {
                name: "text",
                kind: Kind::Text,
                default: None,
                doc: "text column of a table (default: a column named text)",
            },
            OptSpec {
                name: "label",
                kind: Kind::Text,
                default: None,
                doc: "label column of a table (default: a column named label)",
            },
            OptSpec {
                name: "max_len",
                kind: COUNT,
                default: Some("128"),
                doc: "text: tokens kept per text (longer ones are truncated and counted)",
            },
            OptSpec {
                name: "stride",
                kind: COUNT,
                default: None,
                doc: "text: cut texts longer than max_len into windows sharing this many tokens (instead of \
                      truncating); eval and predict average the windows' logits per text",
            },
            OptSpec {
                name: "clean",
                kind: Kind::Bool,
                default: Some("true"),
                doc: "text: trim, drop empty and duplicate texts (and say how many)",
            },
            OptSpec {
                name: "augment",
                kind: Kind::Int(Bound::NonNegative),
                default: Some("0"),
                doc: "text: noisy copies of each training text (random deletion and swaps)",
            },
            OptSpec {
                name: "augment_p",
                kind: Kind::Float(Bound::Unit),
                default: Some("0.1"),
                doc: "text: probability a word is deleted / fraction of words swapped",
            },
            OptSpec {
                name: "limit",
                kind: COUNT,
                default: None,
                doc: "text: keep this many randomly chosen texts (quick experiments)",
            },
            OptSpec {
                name: "format",
                kind: Kind::Choice(&["labelled", "text"]),
                default: Some("labelled"),
                doc: "text = an unlabelled corpus for language models (lines, blank-line blocks, \
                      or the text= field of json/jsonl/csv)",
            },
            OptSpec {
                name: "block",
                kind: COUNT,
                default: Some("128"),
                doc: "format=text: tokens per training block (texts are joined with end-of-text and packed)",
            },
            OptSpec {
                name: "balance",
                kind: Kind::Choice(&["none", "oversample", "undersample"]),
                default: Some("none"),
                doc: "text: even out the training labels by repeating minority rows or dropping majority rows (seeded)",
            },
            OptSpec {
                name: "valid",
                kind: Kind::Path,
                default: None,
                doc: "text: a separate validation file (same columns)",
            },
            OptSpec {
                name: "test",
                kind: Kind::Path,
                default: None,
                doc: "text: a separate test file (same columns)",
            },
            OptSpec {
                name: "x",
                kind: Kind::List(&TEXT),
                default: None,
                doc: "input column(s) of a file, comma-separated (default: all but y)",
            },
            OptSpec {
                name: "y",
                kind: Kind::Text,
                default: None,
                doc: "target column of a file (default: the last column)",
            },
            OptSpec { name: "n", kind: COUNT, default: Some("1000"), doc: "synthetic: number of samples" },
            OptSpec {
                name: "w",
                kind: Kind::List(&FLOAT),
                default: Some("3"),
                doc: "synthetic: true weight(s); several give several inputs",
            },
            OptSpec { name: "b", kind: ANY_F, default: Some("2"), doc: "synthetic: true bias" },
            OptSpec {
                name: "noise",
                kind: NONNEG_F,
                default: Some("0.1"),
                doc: "synthetic: standard deviation of the Gaussian noise on y",
            },
            OptSpec {
                name: "split",
                kind: Kind::Split,
                default: Some("0.8/0.1/0.1"),
                doc: "train/valid/test fractions",
            },
            OptSpec {
                name: "shuffle",
                kind: Kind::Bool,
                default: Some("true"),
                doc: "shuffle rows before splitting",
            },
        ],
        examples: &[
            "data reviews.csv text=review label=sentiment split=0.8/0.1/0.1",
            "data pos.txt neg.txt max_len=64 augment=1",
            "data reviews.csv max_len=128 stride=64",
            "data synthetic linear n=1000 w=3 b=2 noise=0.1",
            "data synthetic linear w=1.5,-2 b=0.5",
            "data houses.csv x=area,rooms y=price split=0.8/0.2",
        ],
    },
    VerbSpec {
        name: "load",
        aliases: &[],
        group: Group::Model,
        summary: "load a pretrained model, or build one",
        details: "`load NAME task=classify labels=N` loads a BERT-family encoder and puts a fresh \
                  classification head on it (pooler + dropout + linear). NAME is a directory \
                  (config.json, model.safetensors or pytorch_model.bin, tokenizer.json or \
                  vocab.txt), a Hugging Face id found in the local cache ($HF_HOME), or downloaded \
                  when online. `load bert config=base|small|mini|tiny|FILE vocab=FILE` builds a \
                  randomly initialised BERT. `task=mlm` puts a masked-LM head on instead (its first \
                  `fit` starts a fresh head's output bias at the data's log token frequencies). \
                  `load linear` builds y = w·x + b (torch.nn.Linear) with as many inputs as the \
                  data. A directory written by `save` resumes where it stopped; a LoRA adapter \
                  directory (adapter_config.json, as peft saves it) loads on its base model \
                  (base_model_name_or_path, or `base=`). Loading replaces \
                  the model and resets the optimizer state and history.",
        args: &[ArgSpec {
            name: "MODEL",
            kind: Kind::Path,
            required: true,
            many: false,
            suggest: &["linear", "bert", "gpt2"],
            doc: "`linear`, `bert`, `gpt2`, a model directory, a .gguf file, or a Hugging Face id",
        }],
        options: &[
            OptSpec {
                name: "task",
                kind: Kind::Choice(&["classify", "mlm", "lm"]),
                default: None,
                doc: "text models: classify (default for encoders), mlm (masked-LM pretraining), lm (causal LMs)",
            },
            OptSpec {
                name: "labels",
                kind: Kind::Int(Bound::AtLeastOne),
                default: None,
                doc: "classify: number of classes (default: the data's, else 2)",
            },
            OptSpec {
                name: "config",
                kind: Kind::Text,
                default: None,
                doc: "load bert / gpt2: a preset shape (bert: base, small, mini, tiny; gpt2: small, distil, mini, tiny) or a config.json (random weights)",
            },
            OptSpec {
                name: "vocab",
                kind: Kind::Path,
                default: None,
                doc: "load bert: the vocab.txt to build the WordPiece tokenizer from; load gpt2: a directory with vocab.json + merges.txt (or a tokenizer.json)",
            },
            OptSpec {
                name: "base",
                kind: Kind::Path,
                default: None,
                doc: "a LoRA adapter directory: its base model (default: adapter_config.json's)",
            },
            OptSpec {
                name: "inputs",
                kind: COUNT,
                default: None,
                doc: "linear: number of inputs (default: the data's, else 1)",
            },
            OptSpec {
                name: "init",
                kind: Kind::Choice(&["random", "zeros"]),
                default: Some("random"),
                doc: "linear: uniform ±1/√inputs as PyTorch does, or all zeros",
            },
        ],
        examples: &[
            "load bert-base-uncased task=classify labels=2",
            "load models/minilm task=classify",
            "load bert config=small vocab=vocab.txt task=mlm",
            "load gpt2 config=mini vocab=gpt2_tokenizer",
            "load linear",
            "load linear init=zeros",
            "load runs/linear-1",
            "load runs/lora-1 base=models/minilm",
        ],
    },
    VerbSpec {
        name: "freeze",
        aliases: &[],
        group: Group::Model,
        summary: "stop training some parameters (all when none named)",
        details: "Frozen parameters get no gradient and no optimizer state. Names match a \
                  parameter exactly, as a dotted prefix (`bert.encoder` matches \
                  `bert.encoder.layer.0…`), by glob (`*.bias`), or a group: embeddings, encoder, \
                  pooler, head, norms, biases for BERT; w, b for the linear model. \
                  `freeze all except head` freezes everything but the named ones; \
                  `freeze all except last=2 ln_f` keeps the last two blocks and the final norm \
                  of a language model trainable (GPT-2 groups: embeddings, head, ln_f, blocks, \
                  norms, biases).",
        args: &[ArgSpec {
            name: "PARAMS",
            kind: Kind::Text,
            required: false,
            many: true,
            suggest: &["all"],
            doc: "parameter names, prefixes, globs or groups",
        }],
        options: &[
            OptSpec {
                name: "layers",
                kind: Kind::Range,
                default: None,
                doc: "also the numbered layers in this range, e.g. 0..8",
            },
            OptSpec {
                name: "last",
                kind: COUNT,
                default: None,
                doc: "the last N numbered layers (after `except`: kept trainable)",
            },
        ],
        examples: &[
            "freeze embeddings layers=0..8",
            "freeze all except head",
            "freeze all except last=2 ln_f",
            "freeze b",
            "freeze",
        ],
    },
    VerbSpec {
        name: "unfreeze",
        aliases: &[],
        group: Group::Model,
        summary: "train some parameters again (all when none named)",
        details: "The opposite of `freeze`, with the same ways of naming parameters.",
        args: &[ArgSpec {
            name: "PARAMS",
            kind: Kind::Text,
            required: false,
            many: true,
            suggest: &["all"],
            doc: "parameter names, prefixes, globs or groups",
        }],
        options: &[
            OptSpec { name: "layers", kind: Kind::Range, default: None, doc: "also the numbered layers in this range" },
            OptSpec { name: "last", kind: COUNT, default: None, doc: "the last N numbered layers" },
        ],
        examples: &["unfreeze layers=10..12", "unfreeze last=2", "unfreeze", "unfreeze b"],
    },
    VerbSpec {
        name: "save",
        aliases: &[],
        group: Group::Model,
        summary: "write the model (and optimizer state) to a directory",
        details: "Writes config.json and model.safetensors (tensor names as PyTorch's \
                  state_dict), optimizer.safetensors and tunelab.json (the training record). \
                  The directory is built aside, flushed and swapped in whole, so a crash or a full \
                  disk mid-save leaves the previous save intact.",
        args: &[ArgSpec {
            name: "DIR",
            kind: Kind::Path,
            required: true,
            many: false,
            suggest: &[],
            doc: "directory to write (created if missing)",
        }],
        options: &[],
        examples: &["save runs/linear-1"],
    },
    VerbSpec {
        name: "optimizer",
        aliases: &["optim"],
        group: Group::Training,
        summary: "choose the optimizer and its settings",
        details: "sgd (with optional momentum/nesterov), adam, adamw (decoupled weight decay) or \
                  rmsprop, with PyTorch's update rules and defaults. Changing the optimizer \
                  starts from fresh state; changing only settings keeps the moments.",
        args: &[ArgSpec {
            name: "NAME",
            kind: Kind::Choice(OPTIMIZERS),
            required: false,
            many: false,
            suggest: &[],
            doc: "the optimizer (omit to show the current one)",
        }],
        options: &[
            OptSpec {
                name: "lr",
                kind: POS_F,
                default: None,
                doc: "learning rate (default: keep the current one)",
            },
            OptSpec {
                name: "momentum",
                kind: Kind::Float(Bound::Unit),
                default: None,
                doc: "sgd/rmsprop momentum (default 0)",
            },
            OptSpec {
                name: "nesterov",
                kind: Kind::Bool,
                default: None,
                doc: "sgd: Nesterov momentum (default false)",
            },
            OptSpec {
                name: "weight_decay",
                kind: NONNEG_F,
                default: None,
                doc: "L2 penalty; decoupled for adamw (default 0, adamw 0.01)",
            },
            OptSpec {
                name: "betas",
                kind: Kind::List(&FLOAT),
                default: None,
                doc: "adam/adamw moment decay rates (default 0.9,0.999)",
            },
            OptSpec {
                name: "eps",
                kind: POS_F,
                default: None,
                doc: "adam/adamw/rmsprop denominator term (default 1e-8)",
            },
            OptSpec {
                name: "alpha",
                kind: Kind::Float(Bound::Unit),
                default: None,
                doc: "rmsprop smoothing constant (default 0.99)",
            },
        ],
        examples: &[
            "optimizer sgd lr=0.01",
            "optimizer sgd lr=0.01 momentum=0.9 nesterov=true",
            "optimizer adamw lr=2e-5 weight_decay=0.01",
            "optimizer rmsprop lr=1e-3",
        ],
    },
    VerbSpec {
        name: "lr",
        aliases: &[],
        group: Group::Training,
        summary: "show or set the learning rate and its schedule, or find one (lr find)",
        details: "The schedule runs over each `fit`: constant, linear decay to min_lr, cosine \
                  decay to min_lr, or step decay (×gamma every step_size epochs), after an \
                  optional linear warm-up. warmup below 1 is a fraction of the fit's steps, \
                  1 or more a number of steps. `lr find` runs the range test: a few updates with \
                  the rate growing from start= to end=, a plot of the loss, a suggestion — then \
                  the weights and optimizer state are put back as they were.",
        args: &[ArgSpec {
            name: "VALUE",
            kind: Kind::Any,
            required: false,
            many: false,
            suggest: &["find"],
            doc: "the base learning rate, or `find`",
        }],
        options: &[
            OptSpec {
                name: "schedule",
                kind: Kind::Choice(SCHEDULES),
                default: None,
                doc: "how the rate changes over a fit (default: keep; initially constant)",
            },
            OptSpec {
                name: "warmup",
                kind: NONNEG_F,
                default: None,
                doc: "warm-up steps (≥ 1) or fraction of the fit (< 1) (default 0)",
            },
            OptSpec {
                name: "min_lr",
                kind: NONNEG_F,
                default: None,
                doc: "linear/cosine: rate at the end of the fit (default 0)",
            },
            OptSpec {
                name: "step_size",
                kind: COUNT,
                default: None,
                doc: "step: epochs between decays (default 1)",
            },
            OptSpec { name: "gamma", kind: POS_F, default: None, doc: "step: decay factor (default 0.1)" },
            OptSpec { name: "start", kind: POS_F, default: Some("1e-7"), doc: "lr find: first rate" },
            OptSpec { name: "end", kind: POS_F, default: Some("10"), doc: "lr find: last rate" },
            OptSpec { name: "steps", kind: COUNT, default: Some("100"), doc: "lr find: most updates" },
        ],
        examples: &[
            "lr 0.01",
            "lr 2e-5 schedule=linear warmup=0.1",
            "lr schedule=cosine",
            "lr find steps=100",
            "lr",
        ],
    },
    VerbSpec {
        name: "distill",
        aliases: &[],
        group: Group::Training,
        summary: "train the loaded classifier on a teacher's soft targets as well as the labels",
        details: "`distill teacher=DIR` loads a saved classifier as the teacher (read-only, never \
                  trained, run without dropout). Until `distill off` or the next `load`, every \
                  update of the loaded student minimises alpha·T²·KL(softmax(t/T) ‖ softmax(s/T)) \
                  + (1−alpha)·CE(s, labels), t and s the teacher's and the student's logits on the \
                  same batch, T the temperature (Hinton et al., 2015). The teacher must have the \
                  student's labels and tokenizer. `transfer=FILE` adds a transfer set: texts \
                  without labels (read as `data … format=text` reads a corpus), of which \
                  each update draws as many as its labelled batch holds; on them the student \
                  learns the teacher's soft targets alone, which is where a student with few \
                  labels gains most. Without options it shows the setting.",
        args: &[ArgSpec {
            name: "ACTION",
            kind: Kind::Choice(&["off"]),
            required: false,
            many: false,
            suggest: &["off"],
            doc: "off: train on the labels alone again",
        }],
        options: &[
            OptSpec {
                name: "teacher",
                kind: Kind::Path,
                default: None,
                doc: "a saved classifier directory (config.json with its labels, weights, tokenizer)",
            },
            OptSpec {
                name: "temperature",
                kind: POS_F,
                default: Some("2"),
                doc: "softmax temperature T of the soft targets (higher: softer)",
            },
            OptSpec {
                name: "alpha",
                kind: Kind::Float(Bound::Unit),
                default: Some("0.5"),
                doc: "weight of the teacher's term; 1 − alpha weighs the labels' cross-entropy",
            },
            OptSpec {
                name: "transfer",
                kind: Kind::Path,
                default: None,
                doc: "texts without labels the student matches the teacher on (a text file, one per line; json, jsonl, csv, tsv)",
            },
            OptSpec {
                name: "text",
                kind: Kind::Text,
                default: None,
                doc: "the transfer file's text field (default: the data's text column, else text)",
            },
        ],
        examples: &[
            "distill teacher=runs/teacher temperature=2 alpha=0.5",
            "distill teacher=runs/teacher alpha=0.7 transfer=unlabelled.txt",
            "distill",
            "distill off",
        ],
    },
    VerbSpec {
        name: "regularize",
        aliases: &["penalty"],
        group: Group::Training,
        summary: "add penalties to the loss: L1 / L2 on the weights, L2-SP and EWC against forgetting",
        details: "The penalty l1·Σ|w| + l2·Σw² over trainable weight matrices and embeddings (not \
                  biases or norms) is added to every update's loss. Unlike `optimizer adamw \
                  weight_decay=`, it passes through the optimizer's scaling. Against forgetting: \
                  `l2sp=α` adds α·Σ(θ−θ₀)² over trainable parameters, θ₀ a copy of the weights made \
                  when l2sp is first set (right after `load`: the pretrained weights); `ewc=λ` \
                  estimates the diagonal Fisher information F of the current model on a split of \
                  the current data (squared per-row gradients of the loss, up to 256 rows, scaled \
                  so its largest entry is 1) and adds λ/2·Σ F·(θ−θ*)², θ* the weights now — set it after fitting task A, then load task \
                  B's data and fit. 0 turns a penalty off; `load` clears l2sp and ewc.",
        args: &[],
        options: &[
            OptSpec {
                name: "l1",
                kind: NONNEG_F,
                default: None,
                doc: "weight of Σ|w| (default: keep; initially 0)",
            },
            OptSpec {
                name: "l2",
                kind: NONNEG_F,
                default: None,
                doc: "weight of Σw² (default: keep; initially 0)",
            },
            OptSpec {
                name: "l2sp",
                kind: NONNEG_F,
                default: None,
                doc: "weight of Σ(θ−θ₀)² toward the weights when first set (default: keep; initially 0)",
            },
            OptSpec {
                name: "ewc",
                kind: NONNEG_F,
                default: None,
                doc: "λ of λ/2·ΣF(θ−θ*)², F estimated now on data= (default: keep; initially 0)",
            },
            OptSpec {
                name: "data",
                kind: Kind::Choice(SPLITS),
                default: Some("train"),
                doc: "ewc: the split of the current data the Fisher information is estimated on",
            },
        ],
        examples: &[
            "regularize l2=1e-4",
            "regularize l1=1e-6 l2=0",
            "regularize l2sp=0.01",
            "regularize ewc=100 data=train",
            "regularize",
        ],
    },
    VerbSpec {
        name: "loss",
        aliases: &[],
        group: Group::Training,
        summary: "show or set class weights of the classifier loss (for imbalanced classes)",
        details: "`loss weights=auto` weights each class's cross-entropy by its inverse frequency \
                  in the training split, n / (k·n_c), so a minority class counts as much as the \
                  majority (as PyTorch's `cross_entropy(weight=)` with scikit-learn's balanced \
                  weights). `loss weights=[1,4]` gives the weights by class id; `loss weights=none` \
                  goes back to plain cross-entropy. Only training uses the weights; validation and \
                  `eval` losses stay unweighted. See also `data … balance=`.",
        args: &[],
        options: &[OptSpec {
            name: "weights",
            kind: Kind::Any,
            default: None,
            doc: "auto, none, or a list of one weight per class id (default: keep; initially none)",
        }],
        examples: &["loss weights=auto", "loss weights=[1,4]", "loss weights=none", "loss"],
    },
    VerbSpec {
        name: "dropout",
        aliases: &[],
        group: Group::Model,
        summary: "show or set the dropout probability of the loaded text model",
        details: "Sets every dropout of the model (hidden states, attention probabilities, before \
                  the classifier) to P during training; evaluation never drops. The value is \
                  written to config.json by `save`.",
        args: &[ArgSpec {
            name: "P",
            kind: Kind::Float(Bound::Unit),
            required: false,
            many: false,
            suggest: &[],
            doc: "probability of zeroing an activation",
        }],
        options: &[],
        examples: &["dropout 0.2", "dropout"],
    },
    VerbSpec {
        name: "adapter",
        aliases: &[],
        group: Group::Model,
        summary: "add bottleneck adapters (Houlsby); only they and the head train",
        details: "Puts a bottleneck h + up(silu(down(h))) after each attention output and each \
                  feed-forward output (BERT), with down `[size, hidden]` and up `[hidden, size]` \
                  starting at zero so outputs start unchanged. The base weights are frozen; a \
                  classifier's head trains fully. `save` writes the adapters to \
                  adapters.safetensors beside the base model (peft has no such adapters), and \
                  `load` of that directory puts them back. `adapter` alone shows them; `undo` \
                  removes them. One method at a time: not together with `lora`.",
        args: &[],
        options: &[OptSpec {
            name: "size",
            kind: COUNT,
            default: Some("64"),
            doc: "width of the bottleneck",
        }],
        examples: &["adapter size=64", "adapter"],
    },
    VerbSpec {
        name: "prompt",
        aliases: &[],
        group: Group::Model,
        summary: "prompt tuning: trainable virtual tokens before every text; only they and the head train",
        details: "`prompt tuning tokens=20` puts 20 trainable embedding vectors (started from \
                  random vocabulary embeddings) before every sequence of a BERT classifier, as \
                  peft's PROMPT_TUNING does: they take the first positions and the pooler reads \
                  the first of them. The base weights are frozen. `save DIR` writes peft's layout \
                  (adapter_config.json + adapter_model.safetensors with prompt_embeddings), and \
                  `load DIR` reads it back on its base. `undo` removes the prompt. One method at \
                  a time: not together with `lora` or `adapter`.",
        args: &[ArgSpec {
            name: "KIND",
            kind: Kind::Choice(&["tuning"]),
            required: true,
            many: false,
            suggest: &[],
            doc: "`tuning` (soft prompts; the only kind so far)",
        }],
        options: &[OptSpec {
            name: "tokens",
            kind: COUNT,
            default: Some("20"),
            doc: "number of virtual tokens",
        }],
        examples: &["prompt tuning tokens=20", "prompt tuning"],
    },
    VerbSpec {
        name: "lora",
        aliases: &[],
        group: Group::Model,
        summary: "attach LoRA adapters (only they and the head train), merge them, or toggle them",
        details: "`lora r=8 alpha=16 target=query,value` adds to each targeted linear weight W \
                  (`[out, in]`) a low-rank update scale·B·A with A `[r, in]` (Kaiming-uniform) \
                  and B `[out, r]` (zeros, so outputs start unchanged), scale = alpha/r. The \
                  base weights are frozen; a classifier's head trains fully (peft's \
                  modules_to_save). Targets are module names as peft matches them (`query` \
                  selects every `….query`), dotted prefixes or `*` globs; the default is the \
                  family's usual pair. `save DIR` then writes the PEFT layout \
                  (adapter_config.json + adapter_model.safetensors) that \
                  `PeftModel.from_pretrained(base, DIR)` loads, and `load DIR` reads it back on \
                  its base. `lora merge` folds B·A into the weights (a plain model again); \
                  `lora off` / `lora on` compare with the base model. `dropout=` is written to \
                  adapter_config.json for peft but not applied by tunelab, whose merged-weight \
                  form has no separate adapter input to drop (the model's dropout still \
                  applies). `lora` alone shows the adapters. `undo` reverts `lora` and `lora merge`.",
        args: &[ArgSpec {
            name: "ACTION",
            kind: Kind::Choice(&["merge", "on", "off"]),
            required: false,
            many: false,
            suggest: &[],
            doc: "merge the adapters into the weights, or switch them on/off",
        }],
        options: &[
            OptSpec { name: "r", kind: COUNT, default: Some("8"), doc: "rank of the update" },
            OptSpec { name: "alpha", kind: POS_F, default: Some("16"), doc: "scale = alpha / r" },
            OptSpec {
                name: "quantize",
                kind: Kind::Choice(&["none", "q8_0", "q4_0"]),
                default: Some("none"),
                doc: "keep the adapted base weights quantized (8- or 4-bit blocks, dequantized per use), as QLoRA",
            },
            OptSpec {
                name: "budget",
                kind: COUNT,
                default: None,
                doc: "AdaLoRA: total rank kept over all adapted weights once pruning ends (below r × weights)",
            },
            OptSpec {
                name: "prune_start",
                kind: COUNT,
                default: None,
                doc: "AdaLoRA: updates before pruning starts (default 20)",
            },
            OptSpec {
                name: "prune_end",
                kind: COUNT,
                default: None,
                doc: "AdaLoRA: the update by which the budget is reached (default 200)",
            },
            OptSpec {
                name: "dropout",
                kind: Kind::Float(Bound::Unit),
                default: Some("0"),
                doc: "peft's lora_dropout, saved for peft (not applied by tunelab)",
            },
            OptSpec {
                name: "target",
                kind: Kind::List(&TEXT),
                default: None,
                doc: "modules to adapt: names, prefixes or globs (default: query,value for BERT)",
            },
        ],
        examples: &[
            "lora r=8 alpha=16 dropout=0.05 target=query,value",
            "lora target=*.layer.5.*",
            "lora merge",
            "lora off",
            "lora",
        ],
    },
    VerbSpec {
        name: "fit",
        aliases: &["train"],
        group: Group::Training,
        summary: "train for some epochs (Ctrl-C stops after the current step)",
        details: "Runs the training loop: for each batch, forward, backward, optimizer update, \
                  then a validation pass at the end of each epoch. Before it starts, the weights \
                  and optimizer state are kept so `undo` can return to them. An interrupted fit \
                  keeps the last completed step.",
        args: &[],
        options: &[
            OptSpec {
                name: "epochs",
                kind: COUNT,
                default: None,
                doc: "passes over the training split (default: the `epochs` setting)",
            },
            OptSpec {
                name: "batch",
                kind: COUNT,
                default: None,
                doc: "batch size (default: the `batch` setting)",
            },
            OptSpec { name: "steps", kind: COUNT, default: None, doc: "stop after this many updates" },
            OptSpec { name: "log", kind: COUNT, default: Some("1"), doc: "print the losses every N epochs" },
            OptSpec {
                name: "accumulate",
                kind: COUNT,
                default: Some("1"),
                doc: "micro-batches whose gradients make one update (gradient accumulation)",
            },
            OptSpec {
                name: "clip",
                kind: POS_F,
                default: None,
                doc: "clip the global gradient norm to this (e.g. 1.0)",
            },
            OptSpec {
                name: "patience",
                kind: COUNT,
                default: None,
                doc: "early stopping: stop after N epochs without improvement, keep the best weights",
            },
            OptSpec {
                name: "monitor",
                kind: Kind::Choice(&["valid_loss", "valid_accuracy"]),
                default: Some("valid_loss"),
                doc: "what early stopping watches",
            },
        ],
        examples: &[
            "fit",
            "fit epochs=100",
            "fit epochs=3 batch=16",
            "fit steps=10",
            "fit epochs=10 patience=2 monitor=valid_accuracy",
            "fit batch=8 accumulate=4 clip=1.0",
        ],
    },
    VerbSpec {
        name: "step",
        aliases: &[],
        group: Group::Training,
        summary: "make ONE update and show parameters, gradients and the change",
        details: "Takes the next batch, computes the loss and its gradient, applies one optimizer \
                  update and prints each parameter's value, gradient, update and new value. The \
                  teaching view of gradient descent; `undo` reverts it.",
        args: &[],
        options: &[
            OptSpec {
                name: "n",
                kind: COUNT,
                default: Some("1"),
                doc: "number of updates (the table shows the last one)",
            },
            OptSpec {
                name: "batch",
                kind: COUNT,
                default: None,
                doc: "batch size (default: the `batch` setting)",
            },
        ],
        examples: &["step", "step n=5", "step batch=1000"],
    },
    VerbSpec {
        name: "eval",
        aliases: &["evaluate"],
        group: Group::Inspect,
        summary: "evaluate the model on a split or a file",
        details: "Classification: accuracy, precision/recall/F1 per class with macro and \
                  weighted averages (as scikit-learn's classification_report) and the confusion \
                  matrix. Regression: the mean squared and mean absolute errors beside those of \
                  the closed-form least-squares fit. Masked LM: loss and perplexity. \
                  `eval generate FILE` (causal LMs): continues each prompt of a csv/tsv/jsonl \
                  file greedily and scores the continuations against the references with corpus \
                  BLEU-4 (as sacrebleu) and mean ROUGE-L F1 (as rouge-score).",
        args: &[
            ArgSpec {
                name: "WHAT",
                kind: Kind::Choice(&["generate"]),
                required: false,
                many: false,
                suggest: &["generate"],
                doc: "generate: score generated text against references",
            },
            ArgSpec {
                name: "FILE",
                kind: Kind::Path,
                required: false,
                many: false,
                suggest: &[],
                doc: "eval generate: a csv/tsv/jsonl file of prompts and references",
            },
        ],
        options: &[
            OptSpec {
                name: "split",
                kind: Kind::Choice(SPLITS),
                default: None,
                doc: "which split to evaluate (default test, or valid when there is no test split)",
            },
            OptSpec {
                name: "file",
                kind: Kind::Path,
                default: None,
                doc: "evaluate on this file instead (same columns as the data)",
            },
            OptSpec {
                name: "prompt",
                kind: Kind::Text,
                default: Some("prompt"),
                doc: "eval generate: the column of prompts",
            },
            OptSpec {
                name: "reference",
                kind: Kind::Text,
                default: Some("reference"),
                doc: "eval generate: the column of reference continuations",
            },
            OptSpec {
                name: "max_tokens",
                kind: COUNT,
                default: Some("64"),
                doc: "eval generate: tokens to generate at most per prompt (greedy decoding)",
            },
            OptSpec {
                name: "tokenize",
                kind: Kind::Choice(&["words", "chars"]),
                default: Some("words"),
                doc: "eval generate: what BLEU and ROUGE-L count: words, or characters (Chinese)",
            },

        ],
        examples: &[
            "eval",
            "eval split=valid",
            "eval file=heldout.csv",
            "eval generate pairs.jsonl prompt=prompt reference=reference max_tokens=32",
        ],
    },
    VerbSpec {
        name: "generate",
        aliases: &[],
        group: Group::Inspect,
        summary: "continue a prompt with the loaded language model, streaming the tokens",
        details: "Samples up to max_tokens tokens after PROMPT with a key/value cache, printing \
                  them as they come (Ctrl-C stops early). Sampling divides the logits by \
                  temperature, keeps the top_k most likely tokens, then the smallest set whose \
                  probability reaches top_p; greedy=true always takes the most likely token. \
                  The same seed gives the same text; n=3 draws three samples.",
        args: &[ArgSpec {
            name: "PROMPT",
            kind: Kind::Text,
            required: true,
            many: false,
            suggest: &[],
            doc: "the text to continue (quote it)",
        }],
        options: &[
            SAMPLE_MAX_TOKENS,
            SAMPLE_MIN_TOKENS,
            SAMPLE_TEMPERATURE,
            SAMPLE_TOP_K,
            SAMPLE_TOP_P,
            SAMPLE_GREEDY,
            SAMPLE_SEED,
            SAMPLE_N,
        ],
        examples: &[
            "generate \"床前明月光\"",
            "generate \"The capital of France is\" greedy=true max_tokens=20",
            "generate \"Once upon a time\" temperature=0.8 top_k=50 top_p=0.95 seed=42 n=3",
        ],
    },
    VerbSpec {
        name: "compare",
        aliases: &[],
        group: Group::Inspect,
        summary: "generate from a snapshot and from the current model, side by side",
        details: "`compare generate \"PROMPT\"` samples the same prompt with the same seed from \
                  the weights of a snapshot (default: the most recent one, e.g. taken before \
                  fine-tuning) and from the current weights, and shows both in a table. Takes \
                  the options of `generate`.",
        args: &[
            ArgSpec {
                name: "WHAT",
                kind: Kind::Choice(&["generate"]),
                required: true,
                many: false,
                suggest: &["generate"],
                doc: "what to compare: generate",
            },
            ArgSpec {
                name: "PROMPT",
                kind: Kind::Text,
                required: true,
                many: false,
                suggest: &[],
                doc: "the text to continue (quote it)",
            },
        ],
        options: &[
            OptSpec { name: "snapshot", kind: Kind::Text, default: None, doc: "the snapshot to compare with (default: the latest)" },
            SAMPLE_MAX_TOKENS,
            SAMPLE_MIN_TOKENS,
            SAMPLE_TEMPERATURE,
            SAMPLE_TOP_K,
            SAMPLE_TOP_P,
            SAMPLE_GREEDY,
            SAMPLE_SEED,
        ],
        examples: &["compare generate \"床前明月光\" snapshot=before", "compare generate \"Once\" greedy=true"],
    },
    VerbSpec {
        name: "predict",
        aliases: &[],
        group: Group::Inspect,
        summary: "predict for given inputs, or the first rows of a split",
        details: "For a classifier each INPUT is a quoted text, and the answer is the label with \
                  the probability of every class. For regression each INPUT is a number, or a \
                  list [x1, x2] for several inputs. Without inputs, shows predictions next to the \
                  true values for the first rows of a split.",
        args: &[ArgSpec {
            name: "INPUT",
            kind: Kind::Any,
            required: false,
            many: true,
            suggest: &[],
            doc: "inputs to predict for",
        }],
        options: &[
            OptSpec {
                name: "split",
                kind: Kind::Choice(SPLITS),
                default: Some("test"),
                doc: "split to show when no input is given",
            },
            OptSpec { name: "rows", kind: COUNT, default: Some("10"), doc: "rows to show from the split" },
        ],
        examples: &[
            "predict \"a gripping, funny film\"",
            "predict 1.5",
            "predict 0 1 2",
            "predict split=valid rows=5",
        ],
    },
    VerbSpec {
        name: "plot",
        aliases: &[],
        group: Group::Inspect,
        summary: "draw a chart (loss, lr, surface, fit, confusion) to PNG and SVG",
        details: "loss: per-step training loss with per-epoch train and validation loss. \
                  lr: the learning rate per step. surface: the loss over (w, b) as filled \
                  contours with the descent path and the least-squares optimum (1-input linear \
                  model). fit: the data with the learned and closed-form lines. confusion: the \
                  confusion matrix of the last classification `eval`. `plot loss \
                  compare=a,b` overlays the training loss of snapshots instead, one smoothed \
                  curve each (take a `snapshot` after each run: full vs head-only fine-tuning, \
                  SGD vs Adam).",
        args: &[ArgSpec {
            name: "WHAT",
            kind: Kind::Choice(PLOTS),
            required: true,
            many: false,
            suggest: &[],
            doc: "the chart",
        }],
        options: &[
            OptSpec {
                name: "file",
                kind: Kind::Path,
                default: None,
                doc: "where to write (PATH.png and PATH.svg; default: the front-end's plot folder)",
            },
            OptSpec {
                name: "log",
                kind: Kind::Bool,
                default: None,
                doc: "logarithmic y axis (default: when the values span 100×)",
            },
            OptSpec {
                name: "compare",
                kind: Kind::List(&TEXT),
                default: None,
                doc: "loss: snapshots whose training losses to overlay, one curve each",
            },
        ],
        examples: &[
            "plot loss",
            "plot surface",
            "plot loss file=runs/loss log=true",
            "plot loss compare=full,head",
        ],
    },
    VerbSpec {
        name: "show",
        aliases: &[],
        group: Group::Inspect,
        summary: "show params, grads, config, history, data, model, optimizer, snapshots, device, memory",
        details: "params: values (or statistics for large tensors) and which are trainable. \
                  grads: the gradients of the last update. config: every setting with its \
                  meaning. history: epochs and the commands run. memory: bytes held by the \
                  weights by dtype, trainable and frozen, and by the optimizer state. Without an \
                  argument: a summary.",
        args: &[ArgSpec {
            name: "WHAT",
            kind: Kind::Choice(SHOWABLE),
            required: false,
            many: false,
            suggest: &[],
            doc: "what to show",
        }],
        options: &[],
        examples: &["show", "show params", "show grads", "show config", "show history", "show memory"],
    },
    VerbSpec {
        name: "snapshot",
        aliases: &[],
        group: Group::History,
        summary: "keep a named in-memory copy of the weights and optimizer state",
        details: "Copies the weights, optimizer state, step counter and history position. \
                  `restore NAME` returns to it.",
        args: &[ArgSpec {
            name: "NAME",
            kind: Kind::Text,
            required: false,
            many: false,
            suggest: &[],
            doc: "a name (default: s1, s2, …)",
        }],
        options: &[],
        examples: &["snapshot", "snapshot before-unfreeze"],
    },
    VerbSpec {
        name: "restore",
        aliases: &[],
        group: Group::History,
        summary: "return to a snapshot",
        details: "Restores the weights, optimizer state, step counter and history of a snapshot \
                  taken with `snapshot`. The state before restoring can be got back with `undo`.",
        args: &[ArgSpec {
            name: "NAME",
            kind: Kind::Text,
            required: true,
            many: false,
            suggest: &[],
            doc: "the snapshot",
        }],
        options: &[],
        examples: &["restore s1"],
    },
    VerbSpec {
        name: "export",
        aliases: &[],
        group: Group::Inspect,
        summary: "write the training record to a CSV file for Rust cells and other tools",
        details: "Writes every number of the history (each update's loss and lr, each epoch's \
                  losses and accuracy, each eval) as CSV rows `kind,step,epoch,split,metric,value` \
                  to tunelab-export/history.csv (or file=PATH). In a `%%rust` cell, \
                  `tunelab_bridge::history()` reads it back.",
        args: &[ArgSpec {
            name: "WHAT",
            kind: Kind::Choice(&["history"]),
            required: true,
            many: false,
            suggest: &[],
            doc: "what to export",
        }],
        options: &[OptSpec {
            name: "file",
            kind: Kind::Path,
            default: None,
            doc: "where to write (default tunelab-export/history.csv, or $TUNELAB_EXPORT_DIR/history.csv)",
        }],
        examples: &["export history", "export history file=runs/a.csv"],
    },
    VerbSpec {
        name: "undo",
        aliases: &[],
        group: Group::History,
        summary: "undo the last fit, step or restore",
        details: "Returns the weights, optimizer state, step counter and history to exactly what \
                  they were before the last command that changed the weights. Repeat it to go \
                  further back: up to five entries are kept, within an eighth of the memory of \
                  the model's device (the oldest go first; the last command's entry is always \
                  kept). `show memory` lists them; `snapshot NAME` keeps a state for good.",
        args: &[],
        options: &[],
        examples: &["undo"],
    },
    VerbSpec {
        name: "autosave",
        aliases: &[],
        group: Group::History,
        summary: "write a session checkpoint during fit, for `resume` after a crash",
        details: "With every=N, `fit` writes DIR/checkpoint/ after every N updates (or N epochs with \
                  unit=epochs): the model, optimizer state, history, seed and the `data` command. \
                  The checkpoint is replaced whole, so a crash mid-write leaves the previous one. \
                  `resume DIR` (or `tunelab resume DIR`) rebuilds the session from it; a resumed \
                  fit restarts the epoch it was in. `autosave off` stops; `autosave` shows the \
                  setting.",
        args: &[ArgSpec {
            name: "off",
            kind: Kind::Text,
            required: false,
            many: false,
            suggest: &["off"],
            doc: "`off` turns autosave off",
        }],
        options: &[
            OptSpec { name: "every", kind: COUNT, default: Some("100"), doc: "updates (or epochs) between checkpoints" },
            OptSpec {
                name: "unit",
                kind: Kind::Choice(&["steps", "epochs"]),
                default: Some("steps"),
                doc: "what every= counts",
            },
            OptSpec {
                name: "dir",
                kind: Kind::Path,
                default: Some(".tunelab/autosave"),
                doc: "the session directory (the checkpoint is its checkpoint/)",
            },
        ],
        examples: &["autosave every=50", "autosave every=1 unit=epochs dir=runs/auto", "autosave off", "autosave"],
    },
    VerbSpec {
        name: "resume",
        aliases: &[],
        group: Group::History,
        summary: "rebuild the session from an autosave checkpoint",
        details: "Loads DIR/checkpoint/ as `autosave` wrote it: re-seeds, re-runs the `data` command, \
                  loads the model with its optimizer state and history, and keeps autosaving there. \
                  The current session is replaced only if all of it loads.",
        args: &[ArgSpec {
            name: "DIR",
            kind: Kind::Path,
            required: false,
            many: false,
            suggest: &[],
            doc: "the autosave directory (default .tunelab/autosave)",
        }],
        options: &[],
        examples: &["resume runs/auto", "resume"],
    },
];

/// The verb spelt `name` (or one of its aliases), case-insensitively.
pub fn find_verb(name: &str) -> Option<&'static VerbSpec> {
    let lower = name.to_ascii_lowercase();
    VERBS.iter().find(|v| v.name == lower || v.aliases.contains(&lower.as_str()))
}

/// The names of all verbs, in table order.
pub fn verb_names() -> impl Iterator<Item = &'static str> {
    VERBS.iter().map(|v| v.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::lex::Atom;

    #[test]
    fn every_default_parses_as_its_kind() {
        for v in VERBS {
            for o in v.options {
                if let Some(d) = o.default {
                    let atom = Atom { text: d.to_string(), quoted: false };
                    assert!(o.kind.parse_atom(&atom).is_ok(), "{}.{} default {d}", v.name, o.name);
                }
            }
        }
    }

    #[test]
    fn every_example_parses_as_its_verb() {
        for v in VERBS {
            assert!(!v.examples.is_empty(), "{} has no example", v.name);
            for ex in v.examples {
                let cmds = crate::dsl::parse(ex).unwrap_or_else(|e| panic!("{ex}: {e}"));
                assert_eq!(cmds.len(), 1, "{ex}");
                assert_eq!(cmds[0].verb.name, v.name, "{ex}");
            }
        }
    }

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut seen = std::collections::HashSet::new();
        for v in VERBS {
            for n in std::iter::once(&v.name).chain(v.aliases) {
                assert!(seen.insert(*n), "duplicate verb name {n}");
                assert_eq!(*n, n.to_lowercase());
            }
            let mut opts = std::collections::HashSet::new();
            for o in v.options {
                assert!(opts.insert(o.name), "{}: duplicate option {}", v.name, o.name);
            }
            for (i, a) in v.args.iter().enumerate() {
                assert!(!a.many || i + 1 == v.args.len(), "{}: only the last arg may repeat", v.name);
            }
        }
    }
}
