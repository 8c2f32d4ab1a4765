//! One `execute_request`, in the protocol's order: (status busy, by the shell loop) →
//! `execute_input` → outputs as the session emits them → (the reply, by the shell loop,
//! after iopub is flushed) → (status idle).
//!
//! The execution count goes up for each request with `store_history` that is not `silent`;
//! those cells go into the history. A silent request publishes nothing on iopub besides its
//! status. A cell that fails or is interrupted ends with an `error` output and a reply with
//! status `error`; the session keeps its state either way, so the next cell works.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jupyter_protocol::{
    ExecuteInput, ExecuteReply, ExecutionCount, JupyterMessage, JupyterMessageContent, Payload, ReplyError,
    ReplyStatus,
};

use super::connection::Incoming;
use super::engine::{Job, Outcome, Update};
use super::magic::{self, Step};
use super::render::Renderer;
use super::server::Kernel;
use crate::Event;

/// Where one cell's outputs go: iopub, or nowhere for a silent request.
struct Out<'a> {
    kernel: &'a Kernel,
    parent: &'a JupyterMessage,
    silent: bool,
}

impl Out<'_> {
    fn publish(&self, contents: Vec<JupyterMessageContent>) {
        if !self.silent {
            for c in contents {
                self.kernel.iopub.send(c, self.parent);
            }
        }
    }
}

impl Kernel {
    /// Runs the cell of `req`; returns the reply and whether the cell failed.
    pub(super) async fn execute(&mut self, req: &Incoming) -> (ExecuteReply, bool) {
        let code = req.str("code").to_string();
        let silent = req.bool("silent", false);
        let store = req.bool("store_history", !silent) && !silent;
        if store {
            self.execution_count += 1;
        }
        let count = self.execution_count;
        let out = Out { kernel: self, parent: &req.parent, silent };
        out.publish(vec![
            ExecuteInput { code: code.clone(), execution_count: ExecutionCount::new(count) }.into()
        ]);

        let mut renderer = Renderer::new(count);
        let mut payload = Vec::new();
        let outcome = match magic::plan(&code) {
            Err(d) => {
                out.publish(renderer.event(Event::Error(d), Instant::now()));
                Outcome::Failed
            }
            Ok(plan) => {
                let started = Instant::now();
                let mut outcome = Outcome::Ok;
                for step in plan.steps {
                    let (job, timed) = match step {
                        Step::Run { src, first_line, timed } => {
                            renderer.set_first_line(first_line);
                            (Job::Run(src), timed)
                        }
                        Step::Who => (Job::Who, false),
                        Step::Reset => (Job::Reset, false),
                        Step::Rust(code) => {
                            renderer.set_first_line(2);
                            (Job::Rust(code), false)
                        }
                    };
                    let t0 = Instant::now();
                    outcome = run_job(&out, job, &mut renderer).await;
                    if timed {
                        out.publish(vec![renderer.note(&format!("wall time: {}", seconds(t0.elapsed())))]);
                    }
                    if outcome != Outcome::Ok {
                        break;
                    }
                }
                if plan.timed {
                    out.publish(vec![renderer.note(&format!("wall time: {}", seconds(started.elapsed())))]);
                }
                outcome
            }
        };
        if outcome == Outcome::Quit {
            out.publish(vec![renderer.note(
                "quit: the kernel keeps running; use the notebook's Kernel menu to shut it down or restart it",
            )]);
            payload.push(Payload::AskExit { keepkernel: false });
        }
        let ok = matches!(outcome, Outcome::Ok | Outcome::Quit);
        out.publish(renderer.finish(ok, outcome == Outcome::Interrupted, Instant::now()));
        if store {
            self.history.push(count, &code, renderer.text());
        }

        let mut reply = ExecuteReply {
            status: ReplyStatus::Ok,
            execution_count: ExecutionCount::new(count),
            payload,
            user_expressions: Some(HashMap::new()),
            error: None,
        };
        if !ok {
            let e = renderer.error().cloned().unwrap_or_else(|| {
                super::render::error_output(
                    &crate::session::diagnose(&crate::Error::invalid("the command failed"), "", None),
                    0,
                )
            });
            reply.status = ReplyStatus::Error;
            reply.error =
                Some(Box::new(ReplyError { ename: e.ename, evalue: e.evalue, traceback: e.traceback }));
        }
        (reply, !ok)
    }

    /// The reply to an execute request skipped because an earlier cell failed.
    pub(super) fn aborted(&self) -> ExecuteReply {
        ExecuteReply {
            status: ReplyStatus::Aborted,
            execution_count: ExecutionCount::new(self.execution_count),
            user_expressions: Some(HashMap::new()),
            ..ExecuteReply::default()
        }
    }
}

/// Runs one job on the session thread, publishing its outputs as they come and throttled
/// progress updates when they fall due.
async fn run_job(out: &Out<'_>, job: Job, renderer: &mut Renderer) -> Outcome {
    let mut updates = out.kernel.engine.submit(job);
    loop {
        let due = renderer.deadline();
        let update = tokio::select! {
            u = updates.recv() => u,
            () = sleep_until(due), if due.is_some() => {
                out.publish(renderer.flush_progress(Instant::now()));
                continue;
            }
        };
        match update {
            Some(Update::Event(e)) => out.publish(renderer.event(e, Instant::now())),
            Some(Update::Done(outcome)) => return outcome,
            None => {
                let err = crate::Error::invalid("the session thread stopped; restart the kernel");
                let d = crate::session::diagnose(&err, "", None);
                out.publish(renderer.event(Event::Error(d), Instant::now()));
                return Outcome::Failed;
            }
        }
    }
}

async fn sleep_until(due: Option<Instant>) {
    if let Some(due) = due {
        tokio::time::sleep_until(tokio::time::Instant::from_std(due)).await;
    }
}

/// `1.23 s` or `45.6 ms`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else {
        format!("{:.1} ms", s * 1e3)
    }
}
