//! Bad input of every kind gets a one-line error naming the problem and the fix, and the
//! session state is exactly what it was.

mod common;

use common::{ok, render, run, weights};
use tunelab::{Event, Session};

/// Everything `show` can print about the state (not the command log, which records the
/// failure on purpose).
fn state(s: &mut Session) -> String {
    let mut text = String::new();
    for what in ["", "params", "config", "data", "optimizer", "model", "snapshots", "device"] {
        let (out, _) = run(s, &format!("show {what}"));
        text += &render(&out);
    }
    text + &format!("{:?} {}", s.weights().ok(), s.history().step())
}

/// Runs `src`, expects a one-line error containing `want` at column `col` (when given),
/// and checks the state did not change.
fn rejects(s: &mut Session, src: &str, want: &str, col: Option<usize>) {
    let before = state(s);
    let (out, okay) = run(s, src);
    assert!(!okay, "`{src}` should fail");
    let d = out
        .iter()
        .find_map(|e| match e {
            Event::Error(d) => Some(d.clone()),
            _ => None,
        })
        .expect("an error event");
    assert!(d.message.contains(want), "`{src}`: message {:?} lacks {want:?}", d.message);
    assert!(!d.message.contains('\n'), "`{src}`: message spans lines: {:?}", d.message);
    if let Some(col) = col {
        assert_eq!(d.col, col, "`{src}`: column of {:?}", d.message);
    }
    assert_eq!(state(s), before, "`{src}` changed the state");
}

#[test]
fn before_anything_is_loaded() {
    let mut s = Session::new();
    rejects(&mut s, "fit", "no model loaded: run `load linear` first", Some(1));
    rejects(&mut s, "eval", "no model loaded", None);
    rejects(&mut s, "step", "no model loaded", None);
    rejects(&mut s, "save somewhere", "no model loaded", None);
    rejects(&mut s, "freeze", "no model loaded", None);
    ok(&mut s, "load linear");
    rejects(&mut s, "fit", "no data loaded: run `data synthetic linear`", None);
    rejects(&mut s, "plot surface", "no data loaded", None);
    assert!(!std::path::Path::new("somewhere").exists());
}

#[test]
fn language_errors_point_at_the_column() {
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=200; load linear; fit epochs=1; snapshot a");
    rejects(&mut s, "fitt epochs=3", "unknown verb 'fitt' (did you mean 'fit'?)", Some(1));
    rejects(&mut s, "fit epoch=3", "unknown option 'epoch' for 'fit' (did you mean 'epochs'?)", Some(5));
    rejects(&mut s, "fit epochs=abc", "expected a whole number ≥ 1, got 'abc'", Some(12));
    rejects(&mut s, "fit epochs=0", "must be at least 1", Some(12));
    rejects(&mut s, "fit epochs=3 epochs=4", "given twice", Some(14));
    rejects(&mut s, "lr -0.1", "must be positive, got -0.1", Some(4));
    rejects(&mut s, "optimizer sgd lr=-1", "must be positive", Some(18));
    rejects(&mut s, "lr nan", "expected a positive number, got 'nan'", Some(4));
    rejects(&mut s, "optimizer adamm", "did you mean 'adam", Some(11));
    rejects(&mut s, "seed 1 2", "too many arguments for 'seed'", Some(8));
    rejects(&mut s, "restore", "'restore' needs NAME", None);
    rejects(&mut s, "load \"linear", "unterminated string", Some(6));
    rejects(&mut s, "predict [1, 2", "unterminated list", Some(9));
    rejects(&mut s, "plot nope", "unknown value 'nope'", Some(6));
    rejects(&mut s, "= 3", "a command starts with a verb", Some(1));
    rejects(&mut s, "fit = 3", "'=' needs an option name", Some(5));
    rejects(&mut s, "fit epochs=", "missing value after 'epochs='", None);
    rejects(&mut s, "data synthetic linear split=0.5/0.6", "add up to 1", None);
    // A line is parsed whole before anything runs: a typo in the second command means the
    // first does not run either (checked by `rejects`), and the error points at the typo.
    rejects(&mut s, "seed 3; fitt", "unknown verb 'fitt'", Some(9));
    let (out, _) = run(&mut s, "seed 3; fitt");
    let d = out.iter().find_map(|e| if let Event::Error(d) = e { Some(d.clone()) } else { None }).unwrap();
    assert_eq!((d.line, d.col), (1, 9));
}

#[test]
fn values_that_do_not_fit_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("d.csv");
    std::fs::write(&csv, "x,y\n1,2\n2,4\n3,6.5\n4,8\n5,10\n").unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "x,y\n1,2\nseven,4\n").unwrap();
    let file = dir.path().join("f.txt");
    std::fs::write(&file, "not a dir").unwrap();

    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=200; load linear; fit epochs=1; snapshot a");
    rejects(&mut s, "data missing.csv", "cannot read 'missing.csv': no such file", Some(6));
    rejects(&mut s, &format!("data {} x=nope y=y", csv.display()), "column 'nope' not found", None);
    rejects(&mut s, &format!("data {} x=x y=yy", csv.display()), "did you mean 'y'?", None);
    rejects(
        &mut s,
        &format!("data {}", bad.display()),
        "line 3: column 'x' has 'seven', which is not a number",
        None,
    );
    rejects(
        &mut s,
        &format!("data {} n=5", csv.display()),
        "n= only applies to `data synthetic linear`",
        None,
    );
    rejects(&mut s, "data synthetic linear x=a", "x= names a column of a file", None);
    rejects(&mut s, "freeze nothing", "no parameter matches 'nothing'", Some(8));
    rejects(&mut s, "freeze bais", "did you mean 'bias'?", None);
    rejects(&mut s, "freeze layers=0..2", "has no numbered layers", None);
    rejects(&mut s, "restore nope", "no snapshot 'nope'", Some(9));
    rejects(&mut s, "predict [1, 2]", "takes 1 input(s) per prediction but got 2", Some(9));
    rejects(&mut s, "lr 0.1 min_lr=1", "min_lr (1) is above the learning rate", None);
    rejects(&mut s, "optimizer adam momentum=0.9", "momentum= applies to sgd/rmsprop, not adam", None);
    rejects(&mut s, "optimizer adam nesterov=true", "nesterov= applies to sgd", None);
    rejects(&mut s, "optimizer sgd nesterov=true", "nesterov needs sgd with momentum", None);
    rejects(&mut s, "load nowhere", "no model 'nowhere'", Some(6));
    rejects(&mut s, &format!("save {}", file.display()), "is a file", None);
    rejects(&mut s, "help fitt", "did you mean 'fit'", Some(6));
    rejects(&mut s, "eval split=test rows=1", "unknown option 'rows' for 'eval'", None);
    #[cfg(not(feature = "cuda"))]
    rejects(&mut s, "device cuda", "built without CUDA", Some(8));
    rejects(&mut s, "device tpu", "unknown device 'tpu'", Some(8));
    ok(&mut s, "freeze");
    rejects(&mut s, "fit", "every parameter is frozen", None);
    // 2-input data with a 1-input model fails before anything changes.
    ok(&mut s, "unfreeze; data synthetic linear n=100 w=1,2");
    rejects(&mut s, "fit", "the model has 1 input(s) but the data has 2", None);
    rejects(&mut s, "step", "the model has 1 input(s) but the data has 2", None);
}

#[test]
fn a_diverging_fit_stops_before_the_bad_update() {
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=500 w=3 b=2 noise=0.1; load linear; optimizer sgd lr=5");
    let (out, okay) = run(&mut s, "fit epochs=50");
    assert!(!okay, "{}", render(&out));
    let msg = render(&out);
    assert!(msg.contains("loss became") && msg.contains("lower the learning rate"), "{msg}");
    let w = weights(&s);
    assert!(w.iter().all(|(_, v)| v.iter().all(|x| x.is_finite())), "weights stay finite: {w:?}");
    // The session is usable and `undo` returns to before the fit.
    ok(&mut s, "undo; lr 0.01; fit epochs=20");
    assert!((weights(&s)[0].1[0] - 3.0).abs() < 0.1);
}

#[test]
fn failed_commands_are_recorded_in_the_history() {
    let mut s = Session::new();
    let _ = run(&mut s, "fit");
    ok(&mut s, "seed 1");
    let h = render(&ok(&mut s, "show history"));
    assert!(h.contains("fit") && h.contains("failed: no model loaded"), "{h}");
    assert!(h.contains("seed 1") && h.contains("ok"), "{h}");
}

/// The remedies of issue 13 (`loss weights=`, `data … balance=`, `regularize l2sp=/ewc=`,
/// `data … stride=`) reject bad values in one line and change nothing.
#[test]
fn remedy_options_reject_bad_values() {
    let dir = tempfile::tempdir().unwrap();
    let p = |n: &str| dir.path().join(n).display().to_string();
    std::fs::write(p("pos.txt"), "good\ngreat fun\nlovely\n").unwrap();
    std::fs::write(p("neg.txt"), "bad\ndull\nawful mess\n").unwrap();
    let mut s = Session::new();
    ok(&mut s, "data synthetic linear n=100; load linear");
    rejects(&mut s, "loss weights=auto", "class weights apply to classifiers", Some(14));
    rejects(
        &mut s,
        "loss weights=[1]",
        "weights= takes auto, none, or one non-negative number per class",
        None,
    );
    rejects(&mut s, "loss weights=abc", "weights= takes auto, none", None);
    rejects(&mut s, "loss weights=[1,-2]", "weights= takes auto, none", None);
    rejects(&mut s, "data synthetic linear balance=oversample", "balance= applies to text data", None);
    rejects(&mut s, "regularize data=valid", "data= names the split that ewc= estimates", Some(17));
    rejects(&mut s, "regularize l2sp=-1", "must not be negative", None);
    rejects(&mut s, "regularize ewc=10 data=nope", "unknown value 'nope'", None);
    let vocab = common::asset("minilm").join("vocab.txt");
    ok(
        &mut s,
        &format!(
            "data {} {} max_len=16 split=0.5/0.5; load bert config=tiny vocab={} task=classify",
            p("pos.txt"),
            p("neg.txt"),
            vocab.display()
        ),
    );
    rejects(&mut s, "loss weights=[1,2,3]", "has 3 weight(s) but the data has 2 classes", Some(14));
    rejects(
        &mut s,
        &format!("data {} {} balance=sideways", p("pos.txt"), p("neg.txt")),
        "unknown value 'sideways'",
        None,
    );
    rejects(&mut s, "regularize ewc=10 data=test", "the test split is empty", None);
    ok(&mut s, "loss weights=[1,2]; regularize l2sp=0.1 ewc=10 data=train");
}

/// `plot loss compare=`: snapshots side by side (a table, then one chart), and the names it
/// cannot use rejected with the fix.
#[test]
fn plot_loss_compare_overlays_snapshots_and_rejects_what_it_cannot_draw() {
    let mut s = Session::new();
    ok(&mut s, "seed 1; data synthetic linear n=200; load linear init=zeros; snapshot start");
    ok(&mut s, "optimizer sgd lr=0.01; fit epochs=2; snapshot slow; restore start");
    ok(&mut s, "optimizer sgd lr=0.1; fit epochs=2; snapshot fast");
    rejects(&mut s, "plot loss compare=slow,fsat", "no snapshot 'fsat' (did you mean 'fast'?)", Some(19));
    rejects(&mut s, "plot loss compare=start", "snapshot 'start' holds no training steps", None);
    rejects(&mut s, "plot lr compare=slow", "use `plot loss compare=…`", None);
    let out = ok(&mut s, "plot loss compare=slow,fast");
    let table = out
        .iter()
        .find_map(|e| match e {
            Event::Table(t) => Some(t.clone()),
            _ => None,
        })
        .expect("the side-by-side table");
    assert_eq!(table.rows.len(), 2);
    let train_loss = |row: usize| table.rows[row][3].parse::<f64>().unwrap();
    assert!(train_loss(1) < train_loss(0), "lr 0.1 ends lower than lr 0.01: {:?}", table.rows);
    assert!(out.iter().any(|e| matches!(e, Event::Image(_))), "the overlay chart");
}
