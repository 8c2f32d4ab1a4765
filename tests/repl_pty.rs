use rexpect::session::spawn_command;
use std::process::Command;
use std::time::Duration;

fn drain(p: &mut rexpect::session::PtySession) -> String {
    std::thread::sleep(Duration::from_millis(700));
    let mut s = String::new();
    while let Some(c) = p.try_read() {
        s.push(c);
    }
    s
}

#[test]
fn explore() {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tunelab"));
    cmd.current_dir(dir.path())
        .env("TUNELAB_HISTORY", dir.path().join("h"))
        .env("NO_COLOR", "1")
        .env("TERM", "xterm");
    let mut p = spawn_command(cmd, Some(30_000)).unwrap();
    eprintln!("START {:?}", drain(&mut p));
    p.send("fi").unwrap();
    p.flush().unwrap();
    eprintln!("FI {:?}", drain(&mut p));
    p.send("\t").unwrap();
    p.flush().unwrap();
    eprintln!("TAB {:?}", drain(&mut p));
    p.send("epochs=2\r").unwrap();
    p.flush().unwrap();
    eprintln!("ENTER {:?}", drain(&mut p));
    p.send("optimizer ad\t").unwrap();
    p.flush().unwrap();
    eprintln!("OPT {:?}", drain(&mut p));
    p.send("\r").unwrap();
    p.flush().unwrap();
    eprintln!("OPTENTER {:?}", drain(&mut p));
    p.send("seed 7; data synthetic linear n=20000 w=3 b=2 noise=0.1; load linear; optimizer sgd lr=0.001; batch 1\r").unwrap();
    p.flush().unwrap();
    eprintln!("SETUP {:?}", drain(&mut p));
    p.send("fit epochs=50\r").unwrap();
    p.flush().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    eprintln!("FIT {:?}", drain(&mut p));
    p.send_control('c').unwrap();
    eprintln!("CC {:?}", drain(&mut p));
    p.send("show params\r").unwrap();
    p.flush().unwrap();
    eprintln!("SHOW {:?}", drain(&mut p));
    p.send("garbage").unwrap();
    p.flush().unwrap();
    p.send_control('c').unwrap();
    eprintln!("GARB {:?}", drain(&mut p));
    p.send("seed\r").unwrap();
    p.flush().unwrap();
    eprintln!("SEED {:?}", drain(&mut p));
    p.send("fit \\\r").unwrap();
    p.flush().unwrap();
    eprintln!("CONT {:?}", drain(&mut p));
    p.send("epochs=1\r").unwrap();
    p.flush().unwrap();
    eprintln!("CONT2 {:?}", drain(&mut p));
    p.send_control('d').unwrap();
    eprintln!("EOF {:?}", p.exp_eof());
    eprintln!("{:?}", p.process().wait());
}
