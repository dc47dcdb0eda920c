//! The WASI environment a guest gets: empty, and nothing more.
//!
//! Toolchains for Rust, Python and JavaScript emit components that import
//! WASI (stdio, clocks, random, filesystem, sockets). Paddock satisfies those
//! imports with a context that grants nothing: no preopened directories, no
//! environment variables, no arguments, no network (TCP, UDP and name
//! lookups all refused), stdin closed. Standard output and error are
//! captured, bounded, and forwarded to the host's log after each call.
//!
//! WASI's only blocking waits are `wasi:io/poll`'s `poll` and
//! `pollable.block` (a sleep, a clock subscription, a socket that never
//! becomes ready). Epoch interruption cannot stop a guest inside a host
//! call, so those two are replaced by versions that give up at the call's
//! deadline and fail the call as a deadline failure: a guest call ends at
//! its deadline whatever it is doing.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::runtime::in_tokio;
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder, WasiView};
use wasmtime_wasi_io::bindings::wasi::io::poll::{Host as _, HostPollable as _};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::{DynPollable, Pollable};
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

/// The interface whose blocking functions are bounded: the version
/// wasmtime-wasi links (guests importing an older 0.2 version are served
/// by it too).
const POLL_INTERFACE: &str = "wasi:io/poll@0.2.12";

/// A store whose calls have a wall-clock deadline.
pub(crate) trait CallDeadline {
    /// When the call running in this store must end.
    fn call_deadline(&self) -> Instant;
}

/// A guest waited in `poll` or `pollable.block` until its call's deadline;
/// the call fails like one stopped by epoch interruption.
#[derive(Debug, thiserror::Error)]
#[error("the guest was still waiting in a blocking WASI call at its deadline")]
pub(crate) struct BlockedPastDeadline;

/// Replaces the blocking `poll` and `pollable.block` that
/// `wasmtime_wasi::p2::add_to_linker_sync` linked with versions that wait
/// no longer than the call's deadline. Call it after that function.
pub(crate) fn bound_blocking_waits<T>(linker: &mut Linker<T>) -> wasmtime::Result<()>
where
    T: WasiView + CallDeadline + 'static,
{
    linker.allow_shadowing(true);
    let mut poll = linker.instance(POLL_INTERFACE)?;
    poll.func_wrap(
        "poll",
        |mut store: StoreContextMut<'_, T>, (pollables,): (Vec<Resource<DynPollable>>,)| {
            let deadline = store.data().call_deadline();
            let table = store.data_mut().ctx().table;
            let ready = until(deadline, table.poll(pollables))?;
            Ok((ready,))
        },
    )?;
    poll.func_wrap(
        "[method]pollable.block",
        |mut store: StoreContextMut<'_, T>, (pollable,): (Resource<DynPollable>,)| {
            let deadline = store.data().call_deadline();
            let table = store.data_mut().ctx().table;
            until(deadline, table.block(pollable))
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}

/// Runs a WASI wait until it ends or `deadline` passes, whichever is first.
fn until<R>(
    deadline: Instant,
    wait: impl Future<Output = wasmtime::Result<R>>,
) -> wasmtime::Result<R> {
    in_tokio(async {
        tokio::time::timeout_at(deadline.into(), wait)
            .await
            .map_err(|_elapsed| wasmtime::Error::new(BlockedPastDeadline))?
    })
}

/// How much of a guest's stdout and stderr one call keeps; the rest of the
/// output is dropped (writes still succeed, so a chatty guest never fails).
pub const OUTPUT_CAPACITY: usize = 16 * 1024;

/// The wall clock a guest reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The host's real clock.
    #[default]
    Real,
    /// A clock stopped at one instant, for reproducible offline tests.
    Fixed(SystemTime),
}

/// Builds the empty WASI context for one instance, writing the guest's
/// stdout and stderr into `output` and reading the wall clock from `clock`.
pub fn empty_context(output: &GuestOutput, clock: CallClock) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false)
        .wall_clock(clock);
    builder.build()
}

/// The wall clock of one instance: the guest's [`Clock`], unless the
/// current call is stopped at an instant of its own (a recorded reconcile
/// replayed at the time it first ran). An instance serves one call at a
/// time, so the instant set for a call is the one that call reads.
#[derive(Debug, Clone)]
pub struct CallClock {
    clock: Clock,
    /// The current call's instant, if it has one.
    call: Arc<Mutex<Option<SystemTime>>>,
}

impl CallClock {
    /// A clock that reads `clock` until a call sets its own instant.
    pub fn new(clock: Clock) -> Self {
        Self {
            clock,
            call: Arc::default(),
        }
    }

    /// Stops the clock at `instant` for the next call, or (`None`) lets
    /// it read the guest's clock.
    pub fn set_call(&self, instant: Option<SystemTime>) {
        *self.call.lock().unwrap_or_else(PoisonError::into_inner) = instant;
    }

    /// The instant the guest reads now.
    pub fn instant(&self) -> SystemTime {
        let call = *self.call.lock().unwrap_or_else(PoisonError::into_inner);
        match (call, self.clock) {
            (Some(instant), _) | (None, Clock::Fixed(instant)) => instant,
            (None, Clock::Real) => SystemTime::now(),
        }
    }
}

impl HostWallClock for CallClock {
    fn resolution(&self) -> Duration {
        let stopped = self
            .call
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some()
            || matches!(self.clock, Clock::Fixed(_));
        if stopped {
            Duration::from_secs(1)
        } else {
            Duration::from_nanos(1)
        }
    }

    fn now(&self) -> Duration {
        self.instant()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
    }
}

/// A bounded in-memory sink for a guest's stdout and stderr.
#[derive(Debug, Clone, Default)]
pub struct GuestOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
}

impl GuestOutput {
    /// The output so far, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    /// Forgets the output so far, before the next call of a reused instance.
    pub fn clear(&self) {
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }

    fn append(&self, bytes: &[u8]) {
        let mut buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = OUTPUT_CAPACITY.saturating_sub(buffer.len());
        buffer.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}

impl IsTerminal for GuestOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi_io::async_trait]
impl OutputStream for GuestOutput {
    fn write(&mut self, bytes: Bytes) -> StreamResult<()> {
        self.append(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> StreamResult<()> {
        Ok(())
    }

    fn check_write(&mut self) -> StreamResult<usize> {
        Ok(OUTPUT_CAPACITY)
    }
}

#[wasmtime_wasi_io::async_trait]
impl Pollable for GuestOutput {
    async fn ready(&mut self) {}
}

impl tokio::io::AsyncWrite for GuestOutput {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.append(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}
