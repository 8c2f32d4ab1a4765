//! The five channels and their message loops.
//!
//! - **shell** (ROUTER): requests, one at a time, each wrapped in iopub `status` busy → idle;
//!   after a failed `execute_request` with `stop_on_error`, the execute requests already
//!   queued are answered `aborted` (so "Run All" stops at the failing cell).
//! - **control** (ROUTER): `interrupt_request` (sets the session's cancel flag),
//!   `shutdown_request` (reply, then leave), `kernel_info_request`; served while a cell runs.
//! - **iopub** (PUB): every output, from one task that owns the socket ([`IoPub`]).
//! - **stdin** (ROUTER): bound and kept open; tunelab never asks for input.
//! - **heartbeat** (REP): echoes each message back.
//!
//! Everything runs on one thread (a current-thread tokio runtime); the session has its own
//! ([`Engine`]). SIGINT interrupts like `interrupt_request` (for clients that signal).

use std::future::Future;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use jupyter_protocol::{
    CommInfoReply, ConnectionInfo, ExecutionState, InterruptReply, JupyterMessage, JupyterMessageContent,
    ShutdownReply, Status,
};
use jupyter_zmq_client::{
    create_kernel_control_connection, create_kernel_heartbeat_connection, create_kernel_iopub_connection,
    create_kernel_shell_connection, create_kernel_stdin_connection, Connection, KernelControlConnection,
    KernelHeartbeatConnection, KernelIoPubConnection, KernelShellConnection, RuntimeError,
};
use tokio::sync::{mpsc, oneshot, watch};
use zeromq::{SocketRecv, SocketSend};

use super::connection::{Incoming, WireError};
use super::engine::{Engine, Interrupter};
use super::history::History;
use super::{info, introspect, KernelError};

/// How long the last messages get to leave before the process does.
const FLUSH_GRACE: Duration = Duration::from_millis(200);
/// How long a running command gets to stop at shutdown before the process leaves anyway.
const SESSION_GRACE: Duration = Duration::from_secs(2);

/// Runs the kernel until a `shutdown_request`.
pub fn serve(info: ConnectionInfo) -> Result<(), KernelError> {
    let runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(KernelError::Runtime)?;
    runtime.block_on(serve_async(info))
}

fn bind_error(channel: &'static str, endpoint: String) -> impl FnOnce(RuntimeError) -> KernelError {
    move |e| KernelError::Bind { channel, endpoint, reason: e.to_string() }
}

async fn serve_async(info: ConnectionInfo) -> Result<(), KernelError> {
    let id = uuid::Uuid::new_v4().to_string();
    let mut shell =
        create_kernel_shell_connection(&info, &id).await.map_err(bind_error("shell", info.shell_url()))?;
    let control = create_kernel_control_connection(&info, &id)
        .await
        .map_err(bind_error("control", info.control_url()))?;
    let stdin =
        create_kernel_stdin_connection(&info, &id).await.map_err(bind_error("stdin", info.stdin_url()))?;
    let iopub =
        create_kernel_iopub_connection(&info, &id).await.map_err(bind_error("iopub", info.iopub_url()))?;
    let hb = create_kernel_heartbeat_connection(&info).await.map_err(bind_error("hb", info.hb_url()))?;

    let (iopub, iopub_task) = IoPub::spawn(iopub, &id);
    let engine = Engine::start();
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let tasks = [
        tokio::spawn(heartbeat(hb)),
        tokio::spawn(on_sigint(engine.interrupter())),
        tokio::spawn(control_loop(control, iopub.clone(), engine.interrupter(), stop_tx)),
    ];
    eprintln!("tunelab kernel {} listening on {}", env!("CARGO_PKG_VERSION"), info.shell_url());

    let mut kernel = Kernel { iopub: iopub.clone(), engine, execution_count: 0, history: History::default() };
    tokio::select! {
        () = kernel.shell_loop(&mut shell) => {}
        _ = stop_rx.wait_for(|stop| *stop) => {}
    }

    // Leave cleanly: stop any running command, let the session thread end, flush iopub.
    let Kernel { engine, iopub: kernel_iopub, .. } = kernel;
    let _ = tokio::task::spawn_blocking(move || engine.close(SESSION_GRACE)).await;
    for task in tasks {
        task.abort();
        let _ = task.await;
    }
    // The iopub task ends once every handle is gone, after sending what it was given.
    drop((iopub, kernel_iopub));
    let _ = iopub_task.await;
    tokio::time::sleep(FLUSH_GRACE).await;
    drop((shell, stdin));
    eprintln!("tunelab kernel: shut down");
    Ok(())
}

/// Logs a dropped message on stderr (Jupyter shows the kernel's stderr in its log).
fn log_dropped(channel: &str, e: &WireError) {
    eprintln!("tunelab kernel: dropped a message on {channel}: {e}");
}

/// Sends `content` as the reply to `parent` on a ROUTER channel, logging failures.
async fn reply<S: SocketSend>(
    conn: &mut Connection<S>,
    content: JupyterMessageContent,
    parent: &JupyterMessage,
) {
    let msg = JupyterMessage::new(content, Some(parent));
    if let Err(e) = conn.send(msg).await {
        eprintln!("tunelab kernel: cannot send a reply to {}: {e}", parent.header.msg_type);
    }
}

/// Receives and verifies the next message of a ROUTER channel; `None` after a socket error
/// (logged, then retried by the caller).
async fn next_request<S: SocketRecv>(conn: &mut Connection<S>, channel: &str) -> Option<Incoming> {
    match conn.socket.recv().await {
        Ok(frames) => match Incoming::decode(frames, &conn.mac) {
            Ok(req) => Some(req),
            Err(e) => {
                log_dropped(channel, &e);
                None
            }
        },
        Err(e) => {
            eprintln!("tunelab kernel: {channel} socket error: {e}");
            tokio::time::sleep(Duration::from_millis(10)).await;
            None
        }
    }
}

/// The iopub channel: a cloneable handle to the task that owns the PUB socket, so outputs
/// from the shell and control loops go out in the order they were sent.
#[derive(Clone)]
pub struct IoPub {
    tx: mpsc::UnboundedSender<IoPubItem>,
    topic: String,
}

enum IoPubItem {
    Message(Box<JupyterMessage>),
    Flush(oneshot::Sender<()>),
}

impl IoPub {
    fn spawn(mut conn: KernelIoPubConnection, id: &str) -> (IoPub, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            while let Some(item) = rx.recv().await {
                match item {
                    IoPubItem::Message(msg) => {
                        if let Err(e) = conn.send(*msg).await {
                            eprintln!("tunelab kernel: cannot publish on iopub: {e}");
                        }
                    }
                    IoPubItem::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        (IoPub { tx, topic: format!("kernel.{id}") }, task)
    }

    /// Publishes `content` as a child of `parent`.
    pub fn send(&self, content: impl Into<JupyterMessageContent>, parent: &JupyterMessage) {
        let mut msg = JupyterMessage::new(content, Some(parent));
        msg.zmq_identities = vec![Bytes::from(format!("{}.{}", self.topic, msg.header.msg_type))];
        let _ = self.tx.send(IoPubItem::Message(Box::new(msg)));
    }

    /// Publishes the kernel's execution state.
    pub fn status(&self, state: ExecutionState, parent: &JupyterMessage) {
        self.send(Status { execution_state: state }, parent);
    }

    /// Waits until everything sent so far has been handed to the socket.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(IoPubItem::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Echoes heartbeat pings.
async fn heartbeat(mut hb: KernelHeartbeatConnection) {
    loop {
        match hb.socket.recv().await {
            Ok(ping) => {
                if let Err(e) = hb.socket.send(ping).await {
                    eprintln!("tunelab kernel: heartbeat: {e}");
                }
            }
            Err(e) => {
                eprintln!("tunelab kernel: heartbeat: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// SIGINT (Ctrl-C, or a client in `interrupt_mode: signal`) interrupts the running command
/// instead of killing the kernel and the user's state with it.
async fn on_sigint(interrupter: Interrupter) {
    while tokio::signal::ctrl_c().await.is_ok() {
        eprintln!("tunelab kernel: SIGINT: interrupting the running command");
        interrupter.interrupt();
    }
}

/// Serves the control channel until a `shutdown_request`.
async fn control_loop(
    mut control: KernelControlConnection,
    iopub: IoPub,
    interrupter: Interrupter,
    stop: watch::Sender<bool>,
) {
    loop {
        let Some(req) = next_request(&mut control, "control").await else { continue };
        let content: JupyterMessageContent = match req.msg_type() {
            "interrupt_request" => {
                interrupter.interrupt();
                InterruptReply::new().into()
            }
            "shutdown_request" => {
                interrupter.interrupt();
                let done = ShutdownReply { restart: req.bool("restart", false), ..ShutdownReply::default() };
                reply(&mut control, done.clone().into(), &req.parent).await;
                iopub.send(done, &req.parent);
                let _ = stop.send(true);
                return;
            }
            "kernel_info_request" => info::reply().into(),
            other => {
                eprintln!("tunelab kernel: ignored a message of unknown type '{other}' on control");
                continue;
            }
        };
        reply(&mut control, content, &req.parent).await;
    }
}

/// What the shell loop does after a request.
enum Next {
    Continue,
    /// Answer the execute requests already queued with `aborted`.
    AbortQueue,
    Shutdown,
}

/// The kernel's state besides the sockets: the session thread, the execution count and
/// the history.
pub struct Kernel {
    pub(super) iopub: IoPub,
    pub(super) engine: Engine,
    pub(super) execution_count: usize,
    pub(super) history: History,
}

impl Kernel {
    async fn shell_loop(&mut self, shell: &mut KernelShellConnection) {
        let mut aborting = false;
        loop {
            let req = if aborting {
                // Only what is already queued (one poll, no waiting): a request that arrives
                // later runs normally.
                let mut next = std::pin::pin!(next_request(shell, "shell"));
                match next.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
                    Poll::Ready(req) => req,
                    Poll::Pending => {
                        aborting = false;
                        continue;
                    }
                }
            } else {
                next_request(shell, "shell").await
            };
            let Some(req) = req else { continue };
            match self.handle(shell, &req, aborting).await {
                Next::Continue => {}
                Next::AbortQueue => aborting = true,
                Next::Shutdown => return,
            }
        }
    }

    async fn handle(&mut self, shell: &mut KernelShellConnection, req: &Incoming, aborting: bool) -> Next {
        let parent = &req.parent;
        let cursor = || req.int("cursor_pos").map_or(req.str("code").chars().count(), |p| p.max(0) as usize);
        self.iopub.status(ExecutionState::Busy, parent);
        let mut next = Next::Continue;
        let content: Option<JupyterMessageContent> = match req.msg_type() {
            "execute_request" if aborting => Some(self.aborted().into()),
            "execute_request" => {
                let (content, failed) = self.execute(req).await;
                if failed && req.bool("stop_on_error", true) {
                    next = Next::AbortQueue;
                }
                Some(content.into())
            }
            "kernel_info_request" => Some(info::reply().into()),
            "complete_request" => Some(introspect::complete(req.str("code"), cursor()).into()),
            "inspect_request" => Some(introspect::inspect(req.str("code"), cursor()).into()),
            "is_complete_request" => Some(introspect::is_complete(req.str("code")).into()),
            "history_request" => Some(jupyter_protocol::HistoryReply::new(self.history.answer(req)).into()),
            "comm_info_request" => Some(CommInfoReply::default().into()),
            "interrupt_request" => {
                self.engine.interrupter().interrupt();
                Some(InterruptReply::new().into())
            }
            "shutdown_request" => {
                let done = ShutdownReply { restart: req.bool("restart", false), ..ShutdownReply::default() };
                self.iopub.send(done.clone(), parent);
                next = Next::Shutdown;
                Some(done.into())
            }
            // No comm targets: messages for comms are ignored, as for unknown comms.
            "comm_open" | "comm_msg" | "comm_close" => None,
            other => {
                eprintln!("tunelab kernel: ignored a message of unknown type '{other}' on shell");
                None
            }
        };
        // Outputs first, then the reply, then idle.
        self.iopub.flush().await;
        if let Some(content) = content {
            reply(shell, content, parent).await;
        }
        self.iopub.status(ExecutionState::Idle, parent);
        next
    }
}
