//! `tunelab run FILE.tune` and `tunelab -c`: exit codes and FILE:LINE:COL errors.

use std::process::{Command, Output};

fn tunelab(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tunelab"))
        .args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env("TUNELAB_HISTORY", dir.join("history"))
        .output()
        .expect("the binary runs")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

#[test]
fn a_script_runs_to_the_end() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ok.tune"),
        "# walkthrough 5\nseed 1\ndata synthetic linear n=300 \\\n  w=3 b=2\nload linear\nfit epochs=3\neval\nplot loss\n",
    )
    .unwrap();
    let o = tunelab(dir.path(), &["run", "ok.tune"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("epoch 3/3") && out.contains("test MSE"), "{out}");
    assert!(out.contains("plots/loss.png"), "{out}");
    assert!(dir.path().join("plots/loss.png").is_file() && dir.path().join("plots/loss.svg").is_file());
}

#[test]
fn a_runtime_error_on_line_3_names_line_3_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bad.tune"), "seed 1\ndata synthetic linear n=100\nfit epochs=2\neval\n")
        .unwrap();
    let o = tunelab(dir.path(), &["run", "bad.tune"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}\n{err}");
    assert!(err.contains("bad.tune:3:1: error: no model loaded: run `load linear` first"), "{err}");
    assert!(out.contains("seed 1") && out.contains("1 input(s)"), "lines 1-2 ran: {out}");
    assert!(!out.contains("MSE"), "line 4 did not run: {out}");
}

#[test]
fn a_syntax_error_on_line_3_stops_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("typo.tune"), "seed 1\nload linear\nfit epoch=2\n").unwrap();
    let o = tunelab(dir.path(), &["run", "typo.tune"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        err.contains("typo.tune:3:5: error: unknown option 'epoch' for 'fit' (did you mean 'epochs'?)"),
        "{err}"
    );
    assert!(err.contains("fit epoch=2\n      ^^^^^"), "a caret under the option: {err}");
    assert!(out.is_empty(), "nothing ran: {out}");
}

#[test]
fn inline_commands_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let o =
        tunelab(dir.path(), &["-c", "seed 9; data synthetic linear n=100; load linear; fit epochs=1; show"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.contains("seed 9") && out.contains("1 epochs"), "{out}");
    let o = tunelab(dir.path(), &["-c", "seed 9; fitt"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("-c:1:9: error: unknown verb 'fitt'"), "{}", text(&o).1);
    let o = tunelab(dir.path(), &["run", "nope.tune"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("cannot read script 'nope.tune'"));
}

#[test]
fn the_demo_runs_offline() {
    let dir = tempfile::tempdir().unwrap();
    let o = tunelab(dir.path(), &["demo", "--no-repl"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}\n{err}");
    assert!(out.contains("tunelab> fit epochs=100") && out.contains("closed form"), "{out}");
    assert!(dir.path().join("plots/surface.png").is_file());
}

#[test]
fn bench_prints_the_baseline_keys() {
    let dir = tempfile::tempdir().unwrap();
    let o = tunelab(dir.path(), &["bench", "linreg", "--steps", "200"]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("JSON");
    assert!(v["linreg_sgd_steps_per_s"].as_f64().unwrap() > 0.0);
    assert!(v["linreg_final_loss"].as_f64().unwrap() < 0.05, "the bench also converges: {out}");
    assert!(v["cpu_blas"].is_string(), "the CPU bench names what ran its products: {out}");
}

#[test]
fn a_blas_that_cannot_load_is_named_once_and_products_stay_on_gemm() {
    let dir = tempfile::tempdir().unwrap();
    let run = |blas: Option<&str>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_tunelab"));
        c.args(["-c", "device cpu; device; seed 1; data synthetic linear n=100; load linear; fit epochs=2"]);
        c.current_dir(dir.path()).env("NO_COLOR", "1").env("TUNELAB_HISTORY", dir.path().join("history"));
        match blas {
            Some(b) => c.env("TUNELAB_BLAS", b),
            None => c.env_remove("TUNELAB_BLAS"),
        };
        c.output().expect("the binary runs")
    };
    let o = run(Some("/nonexistent/libopenblas.so.0"));
    let (out, err) = text(&o);
    assert!(o.status.success(), "a BLAS that cannot load only warns: {err}");
    let warning = "warning: TUNELAB_BLAS=/nonexistent/libopenblas.so.0: cannot load it";
    assert_eq!(err.matches(warning).count(), 1, "{err}");
    assert!(err.contains("unset it"), "the warning names the fix: {err}");
    assert!(out.contains("matrix products on gemm") && out.contains("epoch 2/2"), "{out}");
    let o = run(None);
    let (out, err) = text(&o);
    assert!(o.status.success() && !err.contains("TUNELAB_BLAS"), "{err}");
    assert!(out.contains("threads; matrix products on gemm)"), "{out}");
}
