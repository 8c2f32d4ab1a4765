//! `autosave` and `resume`: a fit killed with SIGKILL comes back from its last checkpoint
//! with its history, weights and optimizer state exactly as they were at that step.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{err, ok, render, weights};
use tunelab::Session;

const SETUP: &str =
    "seed 7; data synthetic linear n=2000 noise=0.5; load linear; optimizer sgd lr=0.01 momentum=0.9";

/// The steps recorded in a checkpoint's tunelab.json (`None` while there is none).
fn checkpoint_losses(dir: &Path) -> Option<Vec<f64>> {
    let text = std::fs::read_to_string(dir.join("checkpoint/tunelab.json")).ok()?;
    let json: serde_json::Value = serde_json::from_str(&text).ok()?;
    let steps = json["history"]["steps"].as_array()?;
    Some(steps.iter().map(|s| s["loss"].as_f64().unwrap()).collect())
}

#[cfg(unix)]
#[test]
fn a_fit_killed_with_sigkill_resumes_from_its_last_autosave() {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let root = tempfile::tempdir().unwrap();
    let auto = root.path().join("auto");
    // A fit far longer than the test, checkpointed every 10 updates, killed after 60.
    let script = format!("{SETUP}; autosave every=10 dir={}; fit epochs=100000 batch=8", auto.display());
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(["-c", &script])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while checkpoint_losses(&auto).is_none_or(|l| l.len() < 60) {
        assert!(child.try_wait().unwrap().is_none(), "the fit ended early");
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint at step 60");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let losses = checkpoint_losses(&auto).unwrap();
    let k = losses.len() as u64;
    assert!(k >= 60 && k.is_multiple_of(10), "checkpoints fall every 10 updates: {k}");

    // `resume` rebuilds the session at step k: history, weights and optimizer state.
    let mut s = Session::new();
    let out = render(&ok(&mut s, &format!("resume {}", auto.display())));
    assert!(out.contains(&format!("resumed from {}/checkpoint at step {k}", auto.display())), "{out}");
    let resumed: Vec<f64> = s.history().steps.iter().map(|r| r.loss).collect();
    assert_eq!(resumed, losses, "the history up to the checkpoint");
    let steps: Vec<u64> = s.history().steps.iter().map(|r| r.step).collect();
    assert_eq!(steps, (1..=k).collect::<Vec<_>>());
    // The same session stopped at step k by `steps=` has the same weights, and after one more
    // update the same weights again (so the momentum came back too).
    let mut replay = Session::new();
    ok(&mut replay, SETUP);
    ok(&mut replay, &format!("fit epochs=100000 batch=8 steps={k}"));
    assert_eq!(weights(&s), weights(&replay), "weights at step {k}");
    // Going on: steps k+1… with a loss near where it stopped, not back at the start.
    ok(&mut s, "fit epochs=1 batch=8 steps=10");
    let h = s.history();
    assert_eq!(h.steps.iter().map(|r| r.step).collect::<Vec<_>>(), (1..=k + 10).collect::<Vec<_>>());
    let before: f64 = losses[losses.len() - 10..].iter().sum::<f64>() / 10.0;
    let after: f64 = h.steps[k as usize..].iter().map(|r| r.loss).sum::<f64>() / 10.0;
    eprintln!(
        "killed at step {k}: first loss {:.4}, last 10 before {before:.4}, first 10 after {after:.4}",
        losses[0]
    );
    assert!(
        after < 2.0 * before + 0.1 && after < losses[0] / 4.0,
        "{after} vs {before} (start {})",
        losses[0]
    );

    // The resumed session kept autosaving (step k+10); `tunelab resume DIR` goes on from
    // there on the command line, then reads commands.
    let mut child = Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(["resume", &auto.display().to_string()])
        .env("HOME", root.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"fit epochs=1 batch=8 steps=3\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && text.contains(&format!("now at step {}", k + 13)), "{text}");
}

#[test]
fn resume_without_a_checkpoint_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=100; load linear; fit epochs=1");
    let before = (weights(&s), s.history().step());
    let msg = err(&mut s, &format!("resume {}", root.path().display()));
    assert!(msg.contains("no autosave checkpoint in") && msg.contains("dir= of `autosave`"), "{msg}");
    // A damaged session.json names the file and the fix.
    std::fs::create_dir_all(root.path().join("checkpoint")).unwrap();
    std::fs::write(root.path().join("checkpoint/session.json"), "{\"format\": 1, \"da").unwrap();
    let msg = err(&mut s, &format!("resume {}", root.path().display()));
    assert!(msg.contains("session.json") && msg.contains("restore it"), "{msg}");
    assert_eq!(before, (weights(&s), s.history().step()));
    let msg = err(&mut s, "autosave sometimes");
    assert!(msg.contains("autosave takes `off` or options"), "{msg}");
    let out = render(&ok(&mut s, &format!("autosave every=2 unit=epochs dir={}", root.path().display())));
    assert!(out.contains("autosave every 2 epochs to"), "{out}");
    ok(&mut s, "fit epochs=2");
    assert!(root.path().join("checkpoint/model.safetensors").is_file());
    let out = render(&ok(&mut s, "autosave off; autosave"));
    assert!(out.ends_with("autosave off\n"), "{out}");
}
