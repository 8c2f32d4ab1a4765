//! The `tunelab` command: the REPL, the script runner, the demo and benchmarks.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tunelab::script::{install_interrupt, run_file, run_source, EXIT_ERROR};
use tunelab::term::TerminalSink;
use tunelab::Session;

/// Freed large blocks are kept for the next training step (`host_memory`; on in `tune_malloc`).
#[global_allocator]
static ALLOC: tunelab::host_memory::BlockCache = tunelab::host_memory::BlockCache;

/// The built-in demo: walkthrough 5, linear regression by gradient descent.
const DEMO: &str = include_str!("demo.tune");

#[derive(Parser)]
#[command(name = "tunelab", version, about = "Fine-tune neural networks interactively", long_about = None)]
struct Cli {
    /// Run these commands (separated by `;`) and exit.
    #[arg(short = 'c', value_name = "COMMANDS")]
    commands: Option<String>,

    /// Directory plots are written to.
    #[arg(long, global = true, default_value = "plots", value_name = "DIR")]
    plots: PathBuf,

    /// Print each command of a script before running it.
    #[arg(long, global = true)]
    echo: bool,

    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run a .tune script; on an error print FILE:LINE:COL and exit with status 2.
    Run {
        /// The script.
        file: PathBuf,
        /// Stay in the REPL with the script's state afterwards.
        #[arg(short, long)]
        interactive: bool,
    },
    /// Rebuild the session from an autosave checkpoint (after a crash), then open the REPL.
    Resume {
        /// The autosave directory.
        #[arg(default_value = tunelab::session::AUTOSAVE_DIR)]
        dir: PathBuf,
    },
    /// Run the built-in linear-regression demo (no downloads), then open the REPL.
    Demo {
        /// Exit after the demo instead of opening the REPL.
        #[arg(long)]
        no_repl: bool,
    },
    /// Measure training throughput (JSON on stdout, keys as shared/bench/torch_baseline.py).
    Bench {
        /// Workload: linreg, minilm, minilm-small, kernels (fused vs composite), gpt2, smollm2,
        /// bert-base, bert-base-lora, or suite (the jobs of shared/bench/torch_baseline.py, with its JSON
        /// keys; each job's keys also go to stderr as it finishes).
        #[arg(default_value = "linreg")]
        workload: String,
        /// Timed updates.
        #[arg(long, default_value_t = 1000)]
        steps: usize,
        /// Device: cpu, cuda, auto.
        #[arg(long, default_value = "cpu")]
        device: String,
        /// minilm: the directory with minilm/ and vader/*.csv (benches/minilm_cpu.sh makes it);
        /// gpt2: the assets directory holding gpt2_tokenizer/.
        #[arg(long, value_name = "DIR")]
        assets: Option<PathBuf>,
    },
    /// Run as a Jupyter kernel (Jupyter starts it), or install/uninstall the kernelspec.
    #[command(args_conflicts_with_subcommands = true)]
    Kernel {
        /// The connection file Jupyter writes for the kernel.
        #[arg(short = 'f', long, value_name = "FILE")]
        connection_file: Option<PathBuf>,
        #[command(subcommand)]
        action: Option<KernelCmd>,
    },
}

#[derive(Subcommand)]
enum KernelCmd {
    /// Install the kernelspec so Jupyter lists tunelab (default: --user).
    Install(KernelPrefix),
    /// Remove the kernelspec installed with the same flags.
    Uninstall(KernelPrefix),
}

/// Where the kernelspec goes.
#[derive(clap::Args)]
#[group(multiple = false)]
struct KernelPrefix {
    /// The user's Jupyter data directory (~/.local/share/jupyter on Linux).
    #[arg(long)]
    user: bool,
    /// The active Python environment's share/jupyter ($VIRTUAL_ENV, $CONDA_PREFIX or python3's sys.prefix).
    #[arg(long)]
    sys_prefix: bool,
    /// PREFIX/share/jupyter.
    #[arg(long, value_name = "PREFIX")]
    prefix: Option<PathBuf>,
}

impl KernelPrefix {
    fn prefix(self) -> tunelab::kernel::Prefix {
        match (self.prefix, self.sys_prefix) {
            (Some(p), _) => tunelab::kernel::Prefix::Path(p),
            (None, true) => tunelab::kernel::Prefix::SysPrefix,
            (None, false) => tunelab::kernel::Prefix::User,
        }
    }
}

/// `tunelab kernel …`: serve a connection file, or install/uninstall the kernelspec.
fn kernel(connection_file: Option<PathBuf>, action: Option<KernelCmd>) -> ExitCode {
    let result = match (connection_file, action) {
        (Some(file), _) => tunelab::kernel::run(&file).map(|()| None),
        (None, Some(KernelCmd::Install(p))) => tunelab::kernel::install(&p.prefix()).map(Some),
        (None, Some(KernelCmd::Uninstall(p))) => tunelab::kernel::uninstall(&p.prefix()).map(|dir| {
            println!("removed the tunelab kernelspec from {}", dir.display());
            None
        }),
        (None, None) => {
            eprintln!(
                "error: give --connection-file FILE (Jupyter does this when it starts the kernel), \
                 or run `tunelab kernel install` so Jupyter can start it"
            );
            return ExitCode::from(EXIT_ERROR);
        }
    };
    match result {
        Ok(Some(dir)) => {
            println!("installed the tunelab kernelspec in {}", dir.display());
            ExitCode::SUCCESS
        }
        Ok(None) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

fn repl(session: &mut Session, sink: &mut TerminalSink) -> ExitCode {
    sink.origin = None;
    sink.echo = false;
    match tunelab::repl::run(session, sink) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: the terminal failed: {e}");
            ExitCode::from(EXIT_ERROR)
        }
    }
}

/// On small machines candle's element-wise thread pool spins against the matmul threads for
/// the same cores (2.5× slower training measured on 2 cores); keep it single-threaded there
/// unless the user chose otherwise. Runs before any tensor exists, while single-threaded.
fn tune_threads() {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() && cores <= 4 {
        std::env::set_var("CANDLE_NUM_THREADS", "1");
    }
}

/// A write past the file-size limit (`ulimit -f`) raises SIGXFSZ, which by default kills
/// the process and every unsaved result with it. Ignored, the write fails with EFBIG and
/// `save` reports a full disk with the session intact.
fn survive_file_size_limit() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN at start-up, before other threads.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
}

/// glibc's malloc hands every block above 128 KiB–32 MiB (an adaptive threshold) to a fresh
/// `mmap` and gives freed heap back to the system past 128 KiB: a training step allocates
/// and frees the same multi-megabyte activations and gradients every time, so each one came
/// back as new pages the kernel had to fault in and zero (~14% of a CPU profile of MiniLM
/// fine-tuning). Keeping blocks up to 32 MiB (glibc's largest allowed threshold) on the heap
/// and not trimming it reuses those pages; blocks above 32 MiB are kept for reuse by
/// `host_memory::BlockCache` (`TUNELAB_MALLOC=heap` leaves it off). `TUNELAB_MALLOC=default` keeps glibc's settings and turns the
/// block cache off (for measuring the difference; benches/RESULTS.md has the numbers).
fn tune_malloc() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("TUNELAB_MALLOC").is_none_or(|v| v != "default") {
        // SAFETY: mallopt only changes allocator parameters; it runs first thing in main,
        // before any other thread exists.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 1 << 30);
        }
        // `TUNELAB_MALLOC=heap`: the heap settings without the block cache.
        if std::env::var_os("TUNELAB_MALLOC").is_none_or(|v| v != "heap") {
            tunelab::host_memory::set_capacity(tunelab::host_memory::default_capacity());
        }
    }
}

fn main() -> ExitCode {
    // With the evcxr feature this binary is also the child process that runs Rust cells:
    // evcxr starts it again with a marker variable, and the hook never returns then.
    #[cfg(feature = "evcxr")]
    evcxr::runtime_hook();
    tune_malloc();
    tune_threads();
    survive_file_size_limit();
    let cli = Cli::parse();
    if let Some(why) = tunelab::model::kernels::blas::load_warning() {
        eprintln!("warning: {why}");
    }
    let mut session = Session::new();
    let mut sink = TerminalSink::new(cli.plots.clone(), None);
    sink.echo = cli.echo;

    if let Some(cmds) = &cli.commands {
        install_interrupt(&session);
        sink.origin = Some("-c".into());
        return run_source(&mut session, cmds, &mut sink);
    }
    match cli.command {
        None => repl(&mut session, &mut sink),
        Some(Cmd::Kernel { connection_file, action }) => kernel(connection_file, action),
        Some(Cmd::Run { file, interactive }) => {
            if interactive {
                let code = run_file(&mut session, &file, &mut sink);
                if code != ExitCode::SUCCESS {
                    return code;
                }
                repl(&mut session, &mut sink)
            } else {
                install_interrupt(&session);
                run_file(&mut session, &file, &mut sink)
            }
        }
        Some(Cmd::Demo { no_repl }) => {
            sink.echo = true;
            sink.origin = Some("demo".into());
            let interactive = !no_repl && console::user_attended();
            if !interactive {
                install_interrupt(&session);
            }
            let code = run_source(&mut session, DEMO, &mut sink);
            if !interactive || code != ExitCode::SUCCESS {
                return code;
            }
            println!("\nThe demo's model, optimizer state and history are still here: try `step`, `lr 0.1`, `fit epochs=5`, `undo`, `plot surface`.");
            repl(&mut session, &mut sink)
        }
        Some(Cmd::Resume { dir }) => {
            let src = format!("resume \"{}\"", dir.display());
            let code = run_source(&mut session, &src, &mut sink);
            if code != ExitCode::SUCCESS {
                return code;
            }
            repl(&mut session, &mut sink)
        }
        Some(Cmd::Bench { workload, steps, device, assets }) => {
            match tunelab::bench::run(&workload, steps, &device, assets.as_deref()) {
                Ok(mut json) => {
                    if let Some(report) = json.as_object_mut().filter(|_| device == "cpu") {
                        report.insert("cpu_blas".into(), tunelab::model::kernels::blas::describe().into());
                    }
                    println!("{}", serde_json::to_string_pretty(&json).expect("plain JSON"));
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::from(EXIT_ERROR)
                }
            }
        }
    }
}
