//! The WASI environment a guest gets: empty, and nothing more.
//!
//! Toolchains for Rust, Python and JavaScript emit components that import
//! WASI (stdio, clocks, random, filesystem, sockets). Paddock satisfies those
//! imports with a context that grants nothing: no preopened directories, no
//! environment variables, no arguments, no network (TCP, UDP and name
//! lookups all refused), stdin closed. Standard output and error are
//! captured, bounded, and forwarded to the host's log after each call.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::{HostWallClock, WasiCtx, WasiCtxBuilder};
use wasmtime_wasi_io::bytes::Bytes;
use wasmtime_wasi_io::poll::Pollable;
use wasmtime_wasi_io::streams::{OutputStream, StreamResult};

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

/// Builds the empty WASI context for one call, writing the guest's stdout
/// and stderr into `output`.
pub fn empty_context(output: &GuestOutput, clock: Clock) -> WasiCtx {
    let mut builder = WasiCtxBuilder::new();
    builder
        .stdout(output.clone())
        .stderr(output.clone())
        .allow_tcp(false)
        .allow_udp(false)
        .allow_ip_name_lookup(false);
    if let Clock::Fixed(instant) = clock {
        builder.wall_clock(FixedClock(instant));
    }
    builder.build()
}

/// A wall clock stopped at one instant.
struct FixedClock(SystemTime);

impl HostWallClock for FixedClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        self.0
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
