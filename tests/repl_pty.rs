//! The REPL through a real pseudo-terminal: the `tunelab` binary started with no arguments,
//! driven by keystrokes and checked on what the terminal shows.
//!
//! Each REPL runs in its own temporary directory with its own history file
//! (`TUNELAB_HISTORY`), `TERM=xterm` (rustyline edits lines only on a terminal it knows) and
//! `NO_COLOR=1`. Its output is kept raw, to check that no colour escape appears, and as plain
//! text for matching: escape sequences removed, a carriage return read as a line break. So
//! every redraw of the edited line is a line starting with the prompt, and what a command
//! prints starts at column 0: patterns anchored with `^` cannot match the echo of the keys.
//!
//! The tests wait for the prompt before typing: keys sent while a command runs would reach
//! the terminal in cooked mode, where Ctrl-C is a signal and Ctrl-D an end of file.
#![cfg(unix)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use rexpect::process::WaitStatus;
use rexpect::reader::Regex;
use rexpect::session::{spawn_command, PtySession};
use tempfile::TempDir;

const BIN: &str = env!("CARGO_BIN_EXE_tunelab");
/// How long to wait for any one expected output: generous, only reached when a test fails.
const TIMEOUT: Duration = Duration::from_secs(30);
/// The prompt, as plain text.
const PROMPT_TEXT: &str = "tunelab> ";
/// A fresh prompt, alone on its line: the REPL waits for a command.
const PROMPT: &str = r"(?m)^tunelab> $";
/// The line that ends a fit: steps made, then the step the model is at.
const FIT_DONE: &str = r"(?m)^fit: (\d+) steps in .*\bstep (\d+)$";
/// An SGR escape sequence: colour, bold, dim and the like.
const SGR: &str = r"\x1b\[[0-9;:]*m";
/// The Up arrow, as an xterm sends it.
const UP: &str = "\x1b[A";

/// A temporary working directory with its own history file.
struct Lab {
    dir: TempDir,
}

impl Lab {
    fn new() -> Lab {
        Lab { dir: tempfile::tempdir().expect("a temporary directory") }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn history(&self) -> PathBuf {
        self.path().join("history")
    }

    /// `tunelab ARGS` in the lab, plain text (`NO_COLOR`).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .current_dir(self.path())
            .env("TUNELAB_HISTORY", self.history())
            .env("TERM", "xterm")
            .env("NO_COLOR", "1")
            .env_remove("CLICOLOR_FORCE");
        cmd
    }

    /// The REPL, with `NO_COLOR` set.
    fn repl(&self) -> Repl {
        Repl::spawn(self.command(&[]), true)
    }

    /// The REPL as a colour terminal user gets it (no `NO_COLOR`).
    fn repl_in_colour(&self) -> Repl {
        let mut cmd = self.command(&[]);
        cmd.env_remove("NO_COLOR").env_remove("CLICOLOR");
        Repl::spawn(cmd, false)
    }
}

/// What [`Repl::expect`] found.
struct Found {
    /// The plain text skipped before the match.
    before: String,
    /// The whole match, then each capture group ("" for a group that did not take part).
    groups: Vec<String>,
}

/// A running REPL on a pseudo-terminal.
struct Repl {
    pty: PtySession,
    /// Whether the REPL was started with `NO_COLOR`.
    plain_only: bool,
    /// Every byte the REPL wrote.
    raw: Vec<u8>,
    /// Raw bytes not yet turned into plain text (an unfinished escape sequence or UTF-8
    /// character, or a carriage return whose meaning depends on the next byte).
    pending: Vec<u8>,
    /// Plain bytes not yet decoded (an unfinished UTF-8 character).
    undecoded: Vec<u8>,
    /// The output as plain text.
    plain: String,
    /// `plain` up to here has been matched already.
    seen: usize,
}

impl Repl {
    fn spawn(cmd: Command, plain_only: bool) -> Repl {
        let pty = spawn_command(cmd, Some(TIMEOUT.as_millis() as u64)).expect("tunelab starts on a pty");
        let mut repl = Repl {
            pty,
            plain_only,
            raw: Vec::new(),
            pending: Vec::new(),
            undecoded: Vec::new(),
            plain: String::new(),
            seen: 0,
        };
        repl.expect(r"(?m)^tunelab \S+ .*Tab completes");
        repl.prompt();
        repl
    }

    /// Types `keys` (no Enter).
    fn keys(&mut self, keys: &str) {
        self.pty.send(keys).expect("keys reach the pty");
        self.pty.flush().expect("keys reach the pty");
    }

    /// Presses Ctrl and `c`.
    fn ctrl(&mut self, c: char) {
        self.pty.send_control(c).expect("keys reach the pty");
    }

    /// Types `line` and Enter, waits for output matching `pattern`, then for the next prompt.
    fn run(&mut self, line: &str, pattern: &str) -> Found {
        self.keys(&format!("{line}\r"));
        let found = self.expect(pattern);
        self.prompt();
        found
    }

    /// Waits for a fresh prompt. The prompt stays unmatched, so that a pattern for the line
    /// typed next can start with it.
    fn prompt(&mut self) {
        self.expect(PROMPT);
        self.seen -= PROMPT_TEXT.len();
    }

    /// Waits until the plain output after what was matched before matches `pattern` (a
    /// regex; `^` and `$` see the whole output) and moves past the match.
    fn expect(&mut self, pattern: &str) -> Found {
        let re = Regex::new(pattern).expect("a valid pattern");
        let start = Instant::now();
        loop {
            if let Some(caps) = re.captures_at(&self.plain, self.seen) {
                let whole = caps.get(0).expect("group 0 is the match");
                let before = self.plain[self.seen..whole.start()].to_string();
                let groups =
                    caps.iter().map(|m| m.map_or_else(String::new, |m| m.as_str().to_string())).collect();
                self.seen = whole.end();
                return Found { before, groups };
            }
            if start.elapsed() > TIMEOUT {
                panic!(
                    "no output matching {pattern:?} after {} s; the REPL showed since the last match:\n{}",
                    TIMEOUT.as_secs(),
                    tail(&self.plain[self.seen..], 3000)
                );
            }
            if !self.pump() {
                thread::sleep(Duration::from_millis(5));
            }
        }
    }

    /// Moves what the REPL wrote so far into `raw` and `plain`; false if there was nothing.
    fn pump(&mut self) -> bool {
        let mut got = false;
        // The reader hands out bytes as chars U+0000..=U+00FF.
        while let Some(c) = self.pty.try_read() {
            self.take(c as u32 as u8);
            got = true;
        }
        if got {
            self.convert();
        }
        got
    }

    fn take(&mut self, b: u8) {
        self.raw.push(b);
        self.pending.push(b);
    }

    /// Turns as much of `pending` as can be decided into plain text.
    fn convert(&mut self) {
        let p = &self.pending;
        let mut i = 0;
        while let Some(&b) = p.get(i) {
            match b {
                0x1b => match escape_len(&p[i..]) {
                    Some(n) => i += n,
                    None => break,
                },
                // rustyline ends each redraw with `\r` and a cursor-forward (`ESC [ n C`) to
                // the cursor's column on the line just drawn: not a line break.
                b'\r' => match p.get(i + 1) {
                    None => break,
                    Some(0x1b) => match escape_len(&p[i + 1..]) {
                        None => break,
                        Some(n) if p[i + n] == b'C' => i += 1 + n,
                        Some(_) => {
                            self.undecoded.push(b'\n');
                            i += 1;
                        }
                    },
                    Some(_) => {
                        self.undecoded.push(b'\n');
                        i += 1;
                    }
                },
                // The bell of an ambiguous completion.
                0x07 => i += 1,
                _ => {
                    self.undecoded.push(b);
                    i += 1;
                }
            }
        }
        self.pending.drain(..i);
        let mut rest = self.undecoded.as_slice();
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.plain.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    self.plain.push_str(std::str::from_utf8(valid).expect("checked"));
                    match e.error_len() {
                        Some(n) => {
                            self.plain.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[n..];
                        }
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        self.undecoded = rest.to_vec();
    }

    /// Waits for the REPL to end and returns its exit code.
    fn exit_code(&mut self) -> i32 {
        self.pump();
        match self.pty.exp_eof() {
            Ok(rest) => {
                rest.chars().for_each(|c| self.take(c as u32 as u8));
                self.convert();
            }
            Err(e) => panic!("the REPL did not exit: {e}\nit showed:\n{}", tail(&self.plain, 3000)),
        }
        match self.pty.process().wait() {
            Ok(WaitStatus::Exited(_, code)) => code,
            other => panic!("the REPL did not exit normally: {other:?}"),
        }
    }

    /// Presses Ctrl-D at the prompt and checks that the REPL exits with status 0 and, with
    /// `NO_COLOR`, printed no colour.
    fn quit_with_ctrl_d(mut self) -> Transcript {
        self.ctrl('d');
        assert_eq!(self.exit_code(), 0, "Ctrl-D at the prompt exits with status 0");
        self.transcript()
    }

    /// Everything the REPL printed (after it exited), checked for colour with `NO_COLOR`.
    fn transcript(self) -> Transcript {
        let raw = String::from_utf8_lossy(&self.raw).into_owned();
        if self.plain_only {
            let sgr = Regex::new(SGR).expect("a valid pattern");
            if let Some(m) = sgr.find(&raw) {
                let from = char_floor(&raw, m.start().saturating_sub(200));
                panic!("NO_COLOR is set but the REPL wrote {:?} in:\n{:?}", m.as_str(), &raw[from..m.end()]);
            }
        }
        Transcript { raw }
    }
}

/// What a REPL wrote, once it has exited.
struct Transcript {
    raw: String,
}

/// The length of the escape sequence at the start of `s` (which starts with ESC), or `None`
/// while it is unfinished.
fn escape_len(s: &[u8]) -> Option<usize> {
    match s.get(1)? {
        // CSI: parameters and intermediates, then one final byte in 0x40..=0x7e.
        b'[' => s[2..].iter().position(|b| (0x40..=0x7e).contains(b)).map(|i| i + 3),
        // OSC: up to BEL or ESC \.
        b']' => s[2..].windows(2).position(|w| w[0] == 0x07 || w == b"\x1b\\").map(|i| {
            if s[2 + i] == 0x07 {
                i + 3
            } else {
                i + 4
            }
        }),
        _ => Some(2),
    }
}

/// The last `n` bytes of `s` (or a little more, to start on a character).
fn tail(s: &str, n: usize) -> &str {
    &s[char_floor(s, s.len().saturating_sub(n))..]
}

/// The start of the character at byte `i` of `s`.
fn char_floor(s: &str, mut i: usize) -> usize {
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// Whether a line of `text` starts with `prefix`.
fn has_line(text: &str, prefix: &str) -> bool {
    text.lines().any(|l| l.starts_with(prefix))
}

/// The values `show params` printed for the linear model's weight and bias.
const PARAMS: &str = r"(?m)^weight +\[1, 1\] +yes +(\S+)\s+^bias +\[1\] +yes +(\S+)$";

#[test]
fn tab_completes_verbs_options_and_choices_and_hints_show() {
    let lab = Lab::new();
    let mut repl = lab.repl();
    repl.run("data synthetic linear n=200; load linear", r"(?m)^model: linear regression");

    // The hint: the rest of the verb and its options, drawn after the cursor.
    repl.keys("fi");
    repl.expect(r"(?m)^tunelab> fit \[epochs=N\] \[batch=N\] \[steps=N\] \[log=N\]");
    // Tab completes the verb: without it the line would be `fiepochs=2`, an unknown verb.
    repl.keys("\t");
    let fit = repl.run("epochs=2", FIT_DONE);
    assert!(has_line(&fit.before, "epoch 2/2 "), "two epochs ran:\n{}", fit.before);

    // An option key: `ep` + Tab → `epochs=`.
    repl.keys("fit ep\t");
    let fit = repl.run("1", FIT_DONE);
    assert!(has_line(&fit.before, "epoch 1/1 "), "one epoch ran:\n{}", fit.before);

    // An ambiguous choice: Tab completes the common prefix and lists the candidates.
    repl.keys("optimizer ad\t");
    repl.expect(r"(?m)^adam +adamw *$");
    repl.expect(r"(?m)^tunelab> optimizer adam$");
    repl.run("", r"(?m)^optimizer adam lr=0\.01 ");

    repl.quit_with_ctrl_d();
}

#[test]
fn ctrl_c_stops_a_fit_after_a_whole_step_and_the_session_goes_on() {
    const SETUP: &str = "seed 7; data synthetic linear n=20000 w=3 b=2 noise=0.1; load linear; \
                         optimizer sgd lr=0.001; batch 1";
    let lab = Lab::new();
    let mut repl = lab.repl();
    repl.run(SETUP, r"(?m)^batch 1$");

    // 800 000 steps: far longer than the test, so Ctrl-C comes while it runs. Wait until the
    // progress bar or an epoch line shows steps were made.
    repl.keys("fit epochs=50\r");
    repl.expect(r"epoch +\d+/50 ");
    repl.ctrl('c');
    let stop = repl.expect(r"interrupted after step (\d+) \((\d+) of this fit\)");
    repl.prompt();
    let step: usize = stop.groups[1].parse().expect("a step number");
    assert_eq!(stop.groups[1], stop.groups[2], "the first fit's steps are all the steps");
    assert!(step > 0 && step < 800_000, "stopped part-way, at step {step}");

    // The session goes on, with the weights of that step.
    let params = repl.run("show params", PARAMS);
    let (weight, bias) = (params.groups[1].clone(), params.groups[2].clone());
    let saved = repl.run("save at-interrupt", r"(?m)^saved \S+ model at step (\d+) ");
    assert_eq!(saved.groups[1], step.to_string());
    let eval = repl.run("eval", r"(?m)^eval on test \(2000 rows\) at step (\d+)");
    assert_eq!(eval.groups[1], step.to_string());
    let fit = repl.run("fit epochs=1 batch=1000", FIT_DONE);
    assert_eq!(fit.groups[1], "16");
    assert_eq!(fit.groups[2], (step + 16).to_string());
    repl.quit_with_ctrl_d();

    // The same seed, data and constant learning rate, stopped by `steps=` instead of Ctrl-C,
    // give the same weights: Ctrl-C stopped between two whole updates.
    let script = format!("{SETUP}; fit epochs=50 steps={step}; show params; save replayed");
    let out = lab.command(&["-c", &script]).output().expect("tunelab -c runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{script}\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let fit = Regex::new(FIT_DONE).expect("a valid pattern").captures(&stdout).expect("a fit summary");
    let step_text = step.to_string();
    assert_eq!((&fit[1], &fit[2]), (step_text.as_str(), step_text.as_str()), "{stdout}");
    let caps = Regex::new(PARAMS).expect("a valid pattern").captures(&stdout).expect("show params output");
    assert_eq!((&caps[1], &caps[2]), (weight.as_str(), bias.as_str()), "weight and bias at step {step}");
    let saved =
        |dir: &str| std::fs::read(lab.path().join(dir).join("model.safetensors")).expect("saved weights");
    assert!(saved("at-interrupt") == saved("replayed"), "the saved weights differ from those of step {step}");
}

#[test]
fn ctrl_c_at_the_prompt_clears_the_line() {
    let lab = Lab::new();
    let mut repl = lab.repl();
    repl.keys("garbage");
    repl.expect(r"(?m)^tunelab> garbage");
    repl.ctrl('c');
    repl.prompt();
    let seed = repl.run("seed", r"(?m)^seed (\d+)$");
    assert_eq!(seed.groups[1], "42", "`seed` ran alone");
    assert!(!seed.before.contains("error"), "the cleared line did not run:\n{}", seed.before);
    repl.quit_with_ctrl_d();
}

#[test]
fn history_persists_across_launches() {
    let lab = Lab::new();
    let mut first = lab.repl();
    first.run("seed 123", r"(?m)^seed 123$");
    first.keys("quit\r");
    assert_eq!(first.exit_code(), 0, "`quit` exits with status 0");
    first.transcript();
    let saved = std::fs::read_to_string(lab.history()).expect("the history file was written");
    assert!(saved.lines().any(|l| l == "seed 123"), "history file:\n{saved}");
    assert!(!saved.lines().any(|l| l == "quit"), "`quit` is not kept:\n{saved}");

    let mut second = lab.repl();
    second.keys(UP);
    second.expect(r"(?m)^tunelab> seed 123$");
    second.run("", r"(?m)^seed 123$");
    second.quit_with_ctrl_d();
}

#[test]
fn a_trailing_backslash_continues_the_command() {
    let lab = Lab::new();
    let mut repl = lab.repl();
    repl.run("data synthetic linear n=200; load linear", r"(?m)^model: linear regression");

    repl.keys("fit \\\r");
    repl.expect(r"(?m)^tunelab> fit \\$");
    // Completion and hints read both lines as one command: `ep` is an option of `fit`.
    repl.keys("ep");
    repl.expect(r"(?m)^epochs=N");
    repl.keys("\t");
    let fit = repl.run("1", FIT_DONE);
    assert!(has_line(&fit.before, "epoch 1/1 "), "one epoch ran:\n{}", fit.before);

    // As in scripts, blanks after the backslash are forgiven: the command still continues.
    repl.keys("fit \\  \r");
    repl.expect(r"(?m)^tunelab> fit \\  $");
    let fit = repl.run("epochs=1", FIT_DONE);
    assert!(has_line(&fit.before, "epoch 1/1 "), "one epoch ran:\n{}", fit.before);
    repl.quit_with_ctrl_d();
}

#[test]
fn colour_only_without_no_color() {
    // The check that NO_COLOR output has no SGR sequence would pass vacuously if the REPL
    // never coloured anything: without NO_COLOR the prompt is bold cyan.
    let lab = Lab::new();
    let repl = lab.repl_in_colour();
    let transcript = repl.quit_with_ctrl_d();
    assert!(Regex::new(SGR).expect("a valid pattern").is_match(&transcript.raw), "{:?}", transcript.raw);
}
