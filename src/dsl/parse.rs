//! The parser: tokens → [`Command`]s checked against the verb table.

use super::error::{ParseError, ParseErrorKind};
use super::lex::{lex, Atom, Tok, Token};
use super::span::{Span, Spanned};
use super::suggest;
use super::table::{find_verb, verb_names, OptSpec, VerbSpec};
use super::value::Value;

/// A parsed command: a verb of the table with typed arguments and options.
#[derive(Clone, Debug)]
pub struct Command {
    /// The verb's table entry.
    pub verb: &'static VerbSpec,
    /// Positional arguments in order, typed by the verb's argument kinds.
    pub args: Vec<Spanned<Value>>,
    /// `key=value` options given explicitly.
    pub options: Vec<(&'static OptSpec, Spanned<Value>)>,
    /// The whole command within the source text.
    pub span: Span,
    /// The command's source text.
    pub text: String,
}

impl Command {
    /// The verb's name.
    pub fn name(&self) -> &'static str {
        self.verb.name
    }

    /// The `i`-th positional argument.
    pub fn arg(&self, i: usize) -> Option<&Value> {
        self.args.get(i).map(|a| &a.value)
    }

    /// The option `name` if given explicitly.
    pub fn given(&self, name: &str) -> Option<&Spanned<Value>> {
        self.options.iter().find(|(o, _)| o.name == name).map(|(_, v)| v)
    }

    /// The option `name`: as given, else its table default (if it has one).
    pub fn value(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.given(name) {
            return Some(v.value.clone());
        }
        let spec = self.verb.option(name)?;
        let atom = Atom { text: spec.default?.to_string(), quoted: false };
        spec.kind.parse_atom(&atom).ok()
    }

    /// The option as a real number.
    pub fn f64(&self, name: &str) -> Option<f64> {
        self.value(name).and_then(|v| v.as_f64())
    }

    /// The option as a count (kinds with a non-negative bound only).
    pub fn usize(&self, name: &str) -> Option<usize> {
        self.value(name).and_then(|v| v.as_i64()).map(|i| i.max(0) as usize)
    }

    /// The option as text.
    pub fn str(&self, name: &str) -> Option<String> {
        self.value(name).and_then(|v| v.as_str().map(str::to_string))
    }

    /// The option as a boolean.
    pub fn bool(&self, name: &str) -> Option<bool> {
        self.value(name).and_then(|v| v.as_bool())
    }

    /// The span of option `name` if given, else of the whole command (for error carets).
    pub fn span_of(&self, name: &str) -> Span {
        self.given(name).map_or(self.span, |v| v.span)
    }
}

/// Parses source text (one or many commands separated by newlines or `;`).
/// Empty lines and comments give no command.
pub fn parse(src: &str) -> Result<Vec<Command>, ParseError> {
    let tokens = lex(src)?;
    tokens
        .split(|t| t.tok == Tok::Sep)
        .filter(|group| !group.is_empty())
        .map(|group| bind(src, group))
        .collect()
}

/// A value before it is typed: one atom, or a bracketed list.
enum Raw<'t> {
    Atom(Spanned<Atom>),
    List(&'t [Spanned<Atom>], Span),
}

impl Raw<'_> {
    fn span(&self) -> Span {
        match self {
            Raw::Atom(a) => a.span,
            Raw::List(_, s) => *s,
        }
    }

    fn typed(&self, kind: &super::value::Kind) -> Result<Value, (String, Span)> {
        match self {
            Raw::Atom(a) => kind.parse_atom(&a.value).map_err(|e| (e, a.span)),
            Raw::List(items, _) if matches!(kind, super::value::Kind::List(_) | super::value::Kind::Any) => {
                kind.parse_list(items)
            }
            Raw::List(_, span) => Err((format!("expected {}, got a list", kind.describe()), *span)),
        }
    }
}

fn raw_of(t: &Token) -> Option<Raw<'_>> {
    match &t.tok {
        Tok::Word(w) => {
            Some(Raw::Atom(Spanned { value: Atom { text: w.clone(), quoted: false }, span: t.span }))
        }
        Tok::Quoted(s) => {
            Some(Raw::Atom(Spanned { value: Atom { text: s.clone(), quoted: true }, span: t.span }))
        }
        Tok::List(items) => Some(Raw::List(items, t.span)),
        Tok::Eq | Tok::Sep => None,
    }
}

fn is_key(word: &str) -> bool {
    let mut chars = word.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn err(kind: ParseErrorKind, span: Span, message: String) -> ParseError {
    ParseError::new(kind, span, message)
}

/// Checks one command's tokens against the verb table.
fn bind(src: &str, toks: &[Token]) -> Result<Command, ParseError> {
    let span = toks[0].span.join(toks[toks.len() - 1].span);
    let verb_word = match &toks[0].tok {
        Tok::Word(w) => w,
        _ => {
            return Err(err(
                ParseErrorKind::Syntax,
                toks[0].span,
                "a command starts with a verb, like `fit epochs=3`; type `help` for the list".into(),
            ))
        }
    };
    let verb = find_verb(verb_word).ok_or_else(|| {
        err(
            ParseErrorKind::UnknownVerb,
            toks[0].span,
            format!(
                "unknown verb '{verb_word}'{}; type `help` for the list",
                suggest::suggestion(verb_word, verb_names())
            ),
        )
    })?;

    let mut positional: Vec<Raw> = Vec::new();
    let mut options: Vec<(&'static OptSpec, Spanned<Value>)> = Vec::new();
    let mut i = 1;
    while i < toks.len() {
        let t = &toks[i];
        let next_is_eq = toks.get(i + 1).is_some_and(|n| n.tok == Tok::Eq);
        if t.tok == Tok::Eq {
            return Err(err(
                ParseErrorKind::Syntax,
                t.span,
                "'=' needs an option name before it, like epochs=3".into(),
            ));
        }
        if !next_is_eq {
            positional.push(raw_of(t).expect("separators were split off"));
            i += 1;
            continue;
        }
        // key = value
        let key = match &t.tok {
            Tok::Word(w) if is_key(w) => w.as_str(),
            _ => {
                return Err(err(
                    ParseErrorKind::Syntax,
                    t.span,
                    "an option name is a word like epochs or lr; quote values that contain '='".into(),
                ))
            }
        };
        let eq = &toks[i + 1];
        let value = toks.get(i + 2).and_then(raw_of).ok_or_else(|| {
            err(ParseErrorKind::Syntax, eq.span, format!("missing value after '{key}=': write {key}=VALUE"))
        })?;
        let spec = verb.option(key).ok_or_else(|| unknown_option(verb, key, t.span))?;
        if options.iter().any(|(o, _)| o.name == spec.name) {
            return Err(err(
                ParseErrorKind::DuplicateOption,
                t.span,
                format!("option '{key}' is given twice; keep one"),
            ));
        }
        let typed = value
            .typed(&spec.kind)
            .map_err(|(why, at)| err(ParseErrorKind::BadValue, at, format!("{} {key}: {why}", verb.name)))?;
        options.push((spec, Spanned { value: typed, span: value.span() }));
        i += 3;
    }

    let mut args = Vec::new();
    for (n, raw) in positional.iter().enumerate() {
        let spec = match verb.args.get(n) {
            Some(s) => s,
            None => match verb.args.last() {
                Some(last) if last.many => last,
                _ => return Err(too_many(verb, raw.span())),
            },
        };
        let value = raw.typed(&spec.kind).map_err(|(why, at)| {
            err(ParseErrorKind::BadValue, at, format!("{} {}: {why}", verb.name, spec.name))
        })?;
        args.push(Spanned { value, span: raw.span() });
    }
    if let Some(missing) = verb.args.iter().skip(positional.len()).find(|a| a.required) {
        let example = verb.examples.first().copied().unwrap_or(verb.name);
        return Err(err(
            ParseErrorKind::MissingArgument,
            Span::new(span.end, span.end + 1),
            format!("'{}' needs {} ({}), e.g. `{example}`", verb.name, missing.name, missing.doc),
        ));
    }

    Ok(Command { verb, args, options, span, text: src[span.start..span.end].to_string() })
}

fn unknown_option(verb: &VerbSpec, key: &str, span: Span) -> ParseError {
    let names: Vec<&str> = verb.options.iter().map(|o| o.name).collect();
    let message = if names.is_empty() {
        format!("'{}' takes no options; remove '{key}='", verb.name)
    } else {
        format!(
            "unknown option '{key}' for '{}'{}; it takes {}",
            verb.name,
            suggest::suggestion(key, names.iter().copied()),
            names.join(", ")
        )
    };
    err(ParseErrorKind::UnknownOption, span, message)
}

fn too_many(verb: &VerbSpec, span: Span) -> ParseError {
    let message = match verb.args.len() {
        0 => format!("'{}' takes no arguments; usage: {}", verb.name, verb.usage()),
        n => format!("too many arguments for '{}' (it takes {n}); usage: {}", verb.name, verb.usage()),
    };
    err(ParseErrorKind::TooManyArguments, span, message)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::table::VERBS;

    fn one(src: &str) -> Command {
        let mut cmds = parse(src).unwrap_or_else(|e| panic!("{src}: {e}"));
        assert_eq!(cmds.len(), 1, "{src}");
        cmds.remove(0)
    }

    fn fails(src: &str, kind: ParseErrorKind, col: usize, text: &str) {
        let e = parse(src).err().unwrap_or_else(|| panic!("`{src}` should not parse"));
        assert_eq!(e.kind, kind, "{src}: {}", e.message);
        assert_eq!(e.span.line_col(src).1, col, "{src}: {}", e.message);
        assert!(e.message.contains(text), "{src}: {:?} lacks {text:?}", e.message);
    }

    fn s(v: &str) -> Value {
        Value::Str(v.to_string())
    }

    // One test per verb: its arguments and options come out typed.
    #[test]
    fn help_and_quit() {
        assert_eq!(one("help").args.len(), 0);
        assert_eq!(one("help fit").arg(0), Some(&s("fit")));
        assert_eq!(one("? fit").name(), "help");
        assert_eq!(one("quit").name(), "quit");
        assert_eq!(one("exit").name(), "quit");
    }

    #[test]
    fn device_seed_batch_epochs() {
        assert_eq!(one("device cuda:1").arg(0), Some(&s("cuda:1")));
        assert_eq!(one("seed 42").arg(0), Some(&Value::Int(42)));
        assert_eq!(one("batch 16").arg(0), Some(&Value::Int(16)));
        assert_eq!(one("epochs 1e2").arg(0), Some(&Value::Int(100)));
        assert!(one("seed").args.is_empty());
    }

    #[test]
    fn data() {
        let c = one("data synthetic linear n=1000 w=3 b=2 noise=0.1 split=0.8/0.1/0.1");
        assert_eq!((c.arg(0), c.arg(1)), (Some(&s("synthetic")), Some(&s("linear"))));
        assert_eq!(c.usize("n"), Some(1000));
        assert_eq!(c.value("w"), Some(Value::List(vec![Value::Float(3.0)])));
        assert_eq!(c.f64("noise"), Some(0.1));
        assert_eq!(
            c.value("split"),
            Some(Value::List(vec![Value::Float(0.8), Value::Float(0.1), Value::Float(0.1)]))
        );
        let c = one("data 'my file.csv' x=a,b y=c shuffle=no");
        assert_eq!(c.arg(0), Some(&s("my file.csv")));
        assert_eq!(c.value("x"), Some(Value::List(vec![s("a"), s("b")])));
        assert_eq!(c.bool("shuffle"), Some(false));
        // Defaults come from the table.
        assert_eq!(one("data synthetic").usize("n"), Some(1000));
    }

    #[test]
    fn load_freeze_unfreeze_save() {
        let c = one("load linear inputs=2 init=zeros");
        assert_eq!((c.usize("inputs"), c.str("init").as_deref()), (Some(2), Some("zeros")));
        let c = one("freeze embeddings encoder.*.bias layers=0..8");
        assert_eq!(c.args.len(), 2);
        assert_eq!(c.value("layers"), Some(Value::Range { start: 0, end: Some(8) }));
        assert_eq!(one("unfreeze layers=8..").value("layers"), Some(Value::Range { start: 8, end: None }));
        assert_eq!(one("save runs/a").arg(0), Some(&s("runs/a")));
    }

    #[test]
    fn optimizer_and_lr() {
        let c = one("optimizer adamw lr=2e-5 weight_decay=0.01 betas=[0.9, 0.98] eps=1e-6");
        assert_eq!(c.arg(0), Some(&s("adamw")));
        assert_eq!(c.f64("lr"), Some(2e-5));
        assert_eq!(c.value("betas"), Some(Value::List(vec![Value::Float(0.9), Value::Float(0.98)])));
        assert_eq!(one("optim SGD momentum=0.9 nesterov=yes").bool("nesterov"), Some(true));
        let c = one("lr 3e-4 schedule=cosine warmup=0.1 min_lr=0");
        assert_eq!((c.arg(0), c.str("schedule").as_deref()), (Some(&s("3e-4")), Some("cosine")));
        assert_eq!(one("lr find steps=50").arg(0), Some(&s("find")));
        assert_eq!(one("lr schedule=step step_size=2 gamma=0.5").usize("step_size"), Some(2));
    }

    #[test]
    fn fit_and_step() {
        let c = one("fit epochs=3 batch=16 steps=100");
        assert_eq!((c.usize("epochs"), c.usize("batch"), c.usize("steps")), (Some(3), Some(16), Some(100)));
        assert_eq!(c.usize("log"), Some(1));
        assert_eq!(one("train").name(), "fit");
        assert_eq!(one("step").usize("n"), Some(1));
        assert_eq!(one("step n=5 batch=1000").usize("batch"), Some(1000));
    }

    #[test]
    fn eval_predict_plot_show() {
        assert_eq!(one("eval split=valid").str("split").as_deref(), Some("valid"));
        let c = one("predict 1.5 [1, 2] 3,4");
        // predict's inputs are typed by the model (numbers or texts), so they parse as given.
        assert_eq!(c.arg(0), Some(&s("1.5")));
        assert_eq!(c.arg(1), Some(&Value::List(vec![s("1"), s("2")])));
        assert_eq!(c.arg(2), Some(&s("3,4")));
        assert_eq!(one("predict \"a fine film\"").arg(0), Some(&s("a fine film")));
        let c = one("plot surface file=\"out dir/s\" log=false");
        assert_eq!(
            (c.arg(0), c.str("file").as_deref(), c.bool("log")),
            (Some(&s("surface")), Some("out dir/s"), Some(false))
        );
        assert_eq!(one("show grads").arg(0), Some(&s("grads")));
    }

    #[test]
    fn regularize_and_dropout() {
        let c = one("distill teacher=runs/t temperature=3 alpha=0.25");
        assert_eq!(
            (c.str("teacher").as_deref(), c.f64("temperature"), c.f64("alpha")),
            (Some("runs/t"), Some(3.0), Some(0.25))
        );
        assert_eq!(one("distill off").arg(0).and_then(|v| v.as_str()), Some("off"));
        assert!(parse("distill alpha=1.5").is_err(), "alpha is a fraction");
        let c = one("eval generate pairs.jsonl prompt=q reference=a max_tokens=8");
        assert_eq!(c.arg(1).and_then(|v| v.as_str()), Some("pairs.jsonl"));
        assert_eq!((c.str("prompt").as_deref(), c.usize("max_tokens")), (Some("q"), Some(8)));
        assert_eq!(one("data x.csv max_len=32 stride=8").usize("stride"), Some(8));
        let c = one("regularize l1=1e-6 l2=1e-4");
        assert_eq!((c.f64("l1"), c.f64("l2")), (Some(1e-6), Some(1e-4)));
        assert_eq!(one("dropout 0.2").arg(0), Some(&Value::Float(0.2)));
        assert_eq!(one("loss weights=auto").value("weights"), Some(s("auto")));
        assert_eq!(one("loss weights=[1,4]").value("weights"), Some(Value::List(vec![s("1"), s("4")])));
        let c = one("fit epochs=5 patience=2 monitor=valid_accuracy accumulate=4 clip=1");
        assert_eq!((c.usize("patience"), c.str("monitor").as_deref()), (Some(2), Some("valid_accuracy")));
        assert_eq!((c.usize("accumulate"), c.f64("clip")), (Some(4), Some(1.0)));
    }

    #[test]
    fn generate_and_compare() {
        let c = one("generate \"床前明月光\" max_tokens=20 temperature=0.7 top_k=40 top_p=0.9 seed=3 n=2");
        assert_eq!(c.arg(0), Some(&s("床前明月光")));
        assert_eq!((c.usize("max_tokens"), c.usize("top_k"), c.usize("n")), (Some(20), Some(40), Some(2)));
        assert_eq!((c.f64("temperature"), c.f64("top_p")), (Some(0.7), Some(0.9)));
        assert_eq!(one("generate hi greedy=true").bool("greedy"), Some(true));
        let c = one("compare generate \"月\" snapshot=before");
        assert_eq!((c.arg(0), c.arg(1)), (Some(&s("generate")), Some(&s("月"))));
        assert_eq!(one("freeze all except last=2 ln_f").usize("last"), Some(2));
        assert_eq!(one("data poems.json format=text text=paragraphs block=64").usize("block"), Some(64));
    }

    #[test]
    fn lora() {
        let c = one("lora r=4 alpha=8 dropout=0.05 target=query,value");
        assert_eq!((c.usize("r"), c.f64("alpha"), c.f64("dropout")), (Some(4), Some(8.0), Some(0.05)));
        assert_eq!(c.value("target"), Some(Value::List(vec![s("query"), s("value")])));
        assert_eq!(one("lora merge").arg(0), Some(&s("merge")));
        assert_eq!(one("lora").usize("r"), Some(8));
        assert!(parse("lora merged").is_err());
        assert_eq!(one("load runs/a base=models/b").str("base").as_deref(), Some("models/b"));
        assert_eq!(one("adapter size=16").usize("size"), Some(16));
        assert_eq!(one("prompt tuning tokens=5").usize("tokens"), Some(5));
    }

    #[test]
    fn precision() {
        assert_eq!(one("precision bf16").arg(0), Some(&s("bf16")));
        assert_eq!(one("precision").arg(0), None);
        assert!(parse("precision int8").is_err());
    }

    #[test]
    fn snapshot_restore_undo() {
        assert_eq!(one("snapshot before-unfreeze").arg(0), Some(&s("before-unfreeze")));
        assert_eq!(one("restore s1").arg(0), Some(&s("s1")));
        assert_eq!(one("undo").name(), "undo");
    }

    #[test]
    fn autosave_and_resume() {
        let c = one("autosave every=50 unit=epochs dir=\"runs/a b\"");
        assert_eq!((c.usize("every"), c.str("unit").as_deref()), (Some(50), Some("epochs")));
        assert_eq!(c.str("dir").as_deref(), Some("runs/a b"));
        assert_eq!(one("autosave").str("dir").as_deref(), Some(".tunelab/autosave"));
        assert_eq!(one("autosave off").arg(0), Some(&s("off")));
        assert!(parse("autosave unit=minutes").is_err());
        assert_eq!(one("resume runs/auto").arg(0), Some(&s("runs/auto")));
        assert_eq!(one("resume").arg(0), None);
    }

    #[test]
    fn export() {
        assert_eq!(one("export history").arg(0), Some(&s("history")));
        assert_eq!(one("export history file=a.csv").str("file").as_deref(), Some("a.csv"));
        assert!(parse("export weights").is_err());
        assert!(parse("export").is_err());
    }

    #[test]
    fn every_verb_has_a_parser_test_above() {
        let src = include_str!("parse.rs");
        let tests = &src[src.find("mod tests").unwrap()..];
        for v in VERBS {
            assert!(tests.contains(&format!("one(\"{}", v.name)), "no parse test for '{}'", v.name);
        }
    }

    #[test]
    fn scripts_comments_and_continuations() {
        let cmds = parse("# setup\nseed 1 # inline\n\nfit \\\n  epochs=2; eval\n").unwrap();
        let names: Vec<&str> = cmds.iter().map(|c| c.name()).collect();
        assert_eq!(names, ["seed", "fit", "eval"]);
        assert_eq!(cmds[1].usize("epochs"), Some(2));
        assert_eq!(cmds[1].span.line_col("# setup\nseed 1 # inline\n\nfit \\\n  epochs=2; eval\n"), (4, 1));
        assert!(parse("   # only a comment").unwrap().is_empty());
    }

    // One test per error class, each with the column it points at.
    #[test]
    fn error_classes() {
        use ParseErrorKind::*;
        fails("load \"abc", Unterminated, 6, "unterminated string");
        fails("predict [1, 2", Unterminated, 9, "unterminated list");
        fails("fit ]", Syntax, 5, "unexpected ']'");
        fails("predict [[1]]", Syntax, 10, "cannot be nested");
        fails("fit =3", Syntax, 5, "'=' needs an option name");
        fails("fit epochs=", Syntax, 11, "missing value after 'epochs='");
        fails("fit 3=4", Syntax, 5, "an option name is a word");
        fails("\"fit\"", Syntax, 1, "starts with a verb");
        fails("fitt", UnknownVerb, 1, "did you mean 'fit'?");
        fails("seed 1; optimiser adam", UnknownVerb, 9, "did you mean 'optimizer'?");
        fails("fit lr=0.1", UnknownOption, 5, "unknown option 'lr' for 'fit'");
        fails("undo x=1", UnknownOption, 6, "'undo' takes no options");
        fails("fit epochs=1 epochs=2", DuplicateOption, 14, "given twice");
        fails("fit epochs=many", BadValue, 12, "expected a whole number ≥ 1, got 'many'");
        fails("optimizer sgd lr=-1", BadValue, 18, "must be positive");
        fails("optimizer sgd momentum=1.5", BadValue, 24, "must be between 0 and 1");
        fails("freeze layers=8..2", BadValue, 15, "expected a range");
        fails("data x.csv split=0.7/0.2", BadValue, 18, "add up to 1");
        fails("data x.csv shuffle=maybe", BadValue, 20, "expected true or false");
        fails("show weights", BadValue, 6, "expected one of params");
        fails("seed [1, 2]", BadValue, 6, "got a list");
        fails("optimizer sgd\nrestore", MissingArgument, 8, "'restore' needs NAME");
        fails("plot", MissingArgument, 5, "'plot' needs WHAT");
        fails("undo now", TooManyArguments, 6, "'undo' takes no arguments");
        fails("seed 1 2", TooManyArguments, 8, "too many arguments for 'seed'");
    }
}
