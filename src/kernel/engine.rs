//! The session on its own thread, kept for the kernel's life so the model, data and
//! optimizer state survive between cells.
//!
//! The message loops never block on the session: they send a [`Job`] and read the
//! [`Update`]s it produces (every event as it happens, then how the job ended). An
//! interrupt sets the session's cancel flag from any thread ([`Interrupter`]); `fit` stops
//! after its current step and keeps that step's weights.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use candle_core::{Device, DeviceLocation};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

use crate::session::{diagnose, Diagnostic, Outcome as LogOutcome, Table};
use crate::{Event, Flow, Session, Sink};

/// Work for the session thread.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Job {
    /// Run tunelab source text (one or more commands).
    Run(String),
    /// `%who`: what the session holds.
    Who,
    /// `%reset`: replace the session with a new one.
    Reset,
    /// `%%rust`: Rust code for the session's evcxr context.
    Rust(String),
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every command ran.
    Ok,
    /// A command failed (its `Event::Error` came before this).
    Failed,
    /// An interrupt stopped a command at a step boundary; the state is kept.
    Interrupted,
    /// The source asked to quit.
    Quit,
}

/// What a job sends back while it runs.
#[derive(Debug)]
pub enum Update {
    /// An event of the session, as it happens.
    Event(Event),
    /// The job is over.
    Done(Outcome),
}

/// Sets the cancel flag of whichever session is current (it changes on `%reset`).
#[derive(Clone, Debug)]
pub struct Interrupter(Arc<Mutex<Arc<AtomicBool>>>);

impl Interrupter {
    /// Asks the running command to stop at its next step boundary.
    pub fn interrupt(&self) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).store(true, Ordering::SeqCst);
    }

    fn set(&self, flag: Arc<AtomicBool>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = flag;
    }
}

/// The handle to the session thread.
pub struct Engine {
    jobs: Option<mpsc::Sender<(Job, UnboundedSender<Update>)>>,
    interrupter: Interrupter,
    thread: Option<JoinHandle<()>>,
}

impl Engine {
    /// Starts the session thread with a new session.
    pub fn start() -> Engine {
        let session = Session::new();
        let interrupter = Interrupter(Arc::new(Mutex::new(session.cancel_flag())));
        let (tx, rx) = mpsc::channel::<(Job, UnboundedSender<Update>)>();
        let for_thread = interrupter.clone();
        let thread = std::thread::Builder::new()
            .name("tunelab-session".into())
            .spawn(move || {
                let mut session = session;
                for (job, out) in rx {
                    let outcome = run_job(&mut session, &job, &out, &for_thread);
                    let _ = out.send(Update::Done(outcome));
                }
            })
            .expect("the OS can start a thread");
        Engine { jobs: Some(tx), interrupter, thread: Some(thread) }
    }

    /// Queues `job`; its updates arrive on the returned channel, ending with [`Update::Done`].
    pub fn submit(&self, job: Job) -> UnboundedReceiver<Update> {
        let (tx, rx) = unbounded_channel();
        if let Some(jobs) = &self.jobs {
            if let Err(mpsc::SendError((_, tx))) = jobs.send((job, tx)) {
                let _ = tx.send(Update::Event(Event::Error(internal("the session thread has stopped"))));
                let _ = tx.send(Update::Done(Outcome::Failed));
            }
        }
        rx
    }

    /// A handle that interrupts the running command.
    pub fn interrupter(&self) -> Interrupter {
        self.interrupter.clone()
    }

    /// Interrupts any running command, lets the thread finish its queue, and waits for it
    /// up to `grace`; a command that does not stop by then is left to the process exit.
    pub fn close(mut self, grace: Duration) {
        self.interrupter.interrupt();
        self.jobs = None;
        let deadline = Instant::now() + grace;
        if let Some(thread) = self.thread.take() {
            while !thread.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if thread.is_finished() {
                let _ = thread.join();
            }
        }
    }
}

/// Forwards events to the job's channel.
struct ChannelSink<'a>(&'a UnboundedSender<Update>);

impl Sink for ChannelSink<'_> {
    fn emit(&mut self, event: Event) {
        let _ = self.0.send(Update::Event(event));
    }
}

fn run_job(
    session: &mut Session,
    job: &Job,
    out: &UnboundedSender<Update>,
    interrupter: &Interrupter,
) -> Outcome {
    let mut sink = ChannelSink(out);
    let result = catch_unwind(AssertUnwindSafe(|| match job {
        Job::Run(src) => match session.run(src, &mut sink) {
            Ok(Flow::Quit) => Outcome::Quit,
            Ok(Flow::Continue) => match session.log().last() {
                Some(e) if e.outcome == LogOutcome::Interrupted => Outcome::Interrupted,
                _ => Outcome::Ok,
            },
            Err(_) => Outcome::Failed,
        },
        Job::Rust(code) => match session.run_rust(code, &mut sink) {
            Ok(()) if session.log().last().is_some_and(|e| e.outcome == LogOutcome::Interrupted) => {
                Outcome::Interrupted
            }
            Ok(()) => Outcome::Ok,
            Err(_) => Outcome::Failed,
        },
        Job::Who => {
            sink.emit(Event::Table(who(session)));
            Outcome::Ok
        }
        Job::Reset => {
            *session = Session::new();
            interrupter.set(session.cancel_flag());
            sink.emit(Event::Text(
                "reset: a new session (no model, no data, default optimizer and settings)".into(),
            ));
            Outcome::Ok
        }
    }));
    result.unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".into());
        sink.emit(Event::Error(internal(&what)));
        Outcome::Failed
    })
}

/// A diagnostic for a failure inside tunelab itself.
fn internal(what: &str) -> Diagnostic {
    let err = crate::Error::invalid(format!(
        "internal error: {what}; this is a bug in tunelab, please report it (`%reset` starts a new session)"
    ));
    diagnose(&err, "", None)
}

/// `%who`: the device, the model, the data and training so far.
fn who(session: &Session) -> Table {
    let mut t = Table::new(["what", "value"]).titled("the session holds");
    t.row(["device".to_string(), device_name(session.device())]);
    t.row(["model".to_string(), session.model_summary().unwrap_or_else(|| "none (`load linear`)".into())]);
    t.row([
        "data".to_string(),
        session.data_summary().unwrap_or_else(|| "none (`data synthetic linear`)".into()),
    ]);
    let h = session.history();
    t.row([
        "training".to_string(),
        format!("{} steps, {} epochs, {} evaluations", h.step(), h.epoch(), h.evals.len()),
    ]);
    t.row(["commands run".to_string(), session.log().len().to_string()]);
    t
}

fn device_name(device: &Device) -> String {
    match device.location() {
        DeviceLocation::Cpu => "cpu".into(),
        DeviceLocation::Cuda { gpu_id } => format!("cuda:{gpu_id}"),
        DeviceLocation::Metal { gpu_id } => format!("metal:{gpu_id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(mut rx: UnboundedReceiver<Update>) -> (Vec<Event>, Outcome) {
        let mut events = Vec::new();
        loop {
            match rx.blocking_recv() {
                Some(Update::Event(e)) => events.push(e),
                Some(Update::Done(o)) => return (events, o),
                None => panic!("the job ended without Done"),
            }
        }
    }

    #[test]
    fn state_survives_between_jobs_and_reset_clears_it() {
        let engine = Engine::start();
        let (_, o) = drain(engine.submit(Job::Run("data synthetic linear n=100; load linear".into())));
        assert_eq!(o, Outcome::Ok);
        let (events, _) = drain(engine.submit(Job::Who));
        let Event::Table(t) = &events[0] else { panic!("{events:?}") };
        assert!(t.rows[1][1].starts_with("linear regression y = w·x + b"), "{:?}", t.rows);
        let (_, o) = drain(engine.submit(Job::Run("fit epochs=1 batch=10".into())));
        assert_eq!(o, Outcome::Ok);
        let (_, o) = drain(engine.submit(Job::Run("fitt".into())));
        assert_eq!(o, Outcome::Failed);
        drain(engine.submit(Job::Reset));
        let (events, _) = drain(engine.submit(Job::Who));
        let Event::Table(t) = &events[0] else { panic!() };
        assert_eq!(t.rows[1][1], "none (`load linear`)");
        engine.close(Duration::from_secs(5));
    }

    #[test]
    fn an_interrupt_stops_a_fit_and_keeps_its_steps() {
        let engine = Engine::start();
        drain(engine.submit(Job::Run("data synthetic linear n=1000; load linear".into())));
        let mut rx = engine.submit(Job::Run("fit epochs=100 batch=1".into()));
        // Interrupt once the fit has reported progress.
        loop {
            match rx.blocking_recv() {
                Some(Update::Event(Event::Progress(p))) if p.done > 0 => break,
                Some(_) => {}
                None => panic!("no progress"),
            }
        }
        engine.interrupter().interrupt();
        let (_, o) = drain(rx);
        assert_eq!(o, Outcome::Interrupted);
        engine.close(Duration::from_secs(5));
    }
}
