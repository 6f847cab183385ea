//! The upgrade engine: the one place that decides when bytes may cross from
//! cleartext into TLS.
//!
//! Protocol code (SMTP, IMAP, POP3, client and server) says what a line means.
//! When a line is the upgrade point (the server read `STARTTLS`; the client
//! read the positive answer to it) the protocol code calls
//! `Io::start_upgrade` and returns. From there on the engine alone acts:
//!
//! ```text
//!                 implicit TLS (RFC 8314): start here ─────────────┐
//!                                                                   v
//!  ┌───────────┐  upgrade line   ┌───────────┐ our last pre-TLS ┌─────────────┐ handshake ┌─────┐
//!  │ Cleartext │ ──────────────> │ Boundary  │ ───────────────> │ Handshaking │ ────────> │ Tls │
//!  └───────────┘  (a) cut        └───────────┘ bytes taken by   └─────────────┘  done     └─────┘
//!        │        (b) discard /        │       poll_transmit       (rustls in memory)        │
//!        │            fail             │         │                                         │
//!        │        (c) fresh protocol   │         └──> AwaitingExternal ── tls_established ──┘
//!        │            state            │              (bring your own TLS)
//!        v                             v
//!     Closed  <──── any failure, QUIT/LOGOUT, end of input ─────────────────────────────────
//! ```
//!
//! (a) **Cut.** The input is cut at the exact end of the upgrade line. The
//!     protocol code cannot read past it: its view of the input is empty from
//!     the moment it asked for the upgrade.
//!
//! (b) **Discard or fail.** Every byte after the cut, and every byte that
//!     arrives while the session is at the `Boundary` (before the caller has
//!     even taken our `220`/`OK`/`+OK` — server — or our ClientHello —
//!     client — for sending) cannot be legitimate TLS: the peer could not have
//!     seen our last cleartext bytes yet. Server default: discard and report
//!     the count once, as [`UpgradeEvent::InjectionDiscarded`], when TLS
//!     begins ([`InjectionPolicy::Discard`]); client default: fail with
//!     [`crate::Error::ResponseInjection`] on the first such octet and
//!     withdraw the unsent ClientHello ([`InjectionPolicy::Fail`]).
//!     Either way the upgrade starts the same way whether the bytes came in
//!     the same read as the upgrade line or later, so the events do not
//!     depend on how the network split them.
//!
//! (c) **Forget.** The protocol state is not reset field by field: the engine
//!     drops the whole protocol machine and builds a new one from the
//!     immutable configuration alone. Capabilities, greeting texts, envelope,
//!     authentication, half-read lines and literals learned in cleartext
//!     cannot survive, because nothing the peer said is handed to the new
//!     one. The only thing that crosses is state the session generated
//!     itself, passed field by field in `Machine::carry_over`: the IMAP
//!     client's tag counter, so that no tag is reused on the connection.
//!
//! **Memory budget.** Whatever the phase, the engine feeds the machine
//! input in pieces cut to the room left in its `InputBudget` (smaller before
//! authentication) and fails the session with
//! [`crate::Error::InputBudgetExceeded`] at the first octet over it; see
//! `Engine::handle_input` and `docs/design.md`, "Memory budget".
//!
//! (d) **TLS.** With rustls the engine feeds socket bytes to an in-memory
//!     connection and hands the protocol only decrypted bytes, so the caller's
//!     loop does not change. With bring-your-own TLS it stops at
//!     `AwaitingExternal` until the caller says TLS is up.
//!
//! The boundary is defined by *our own transmissions*: input received before
//! the caller has taken our last cleartext bytes is cleartext by definition,
//! because no honest peer can answer bytes it has not received. That makes the
//! outcome a function of the bytes and of the order of the caller's calls only,
//! never of timing.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};

use crate::error::{Error, Step, UsageError};
use crate::tls::{RustlsLink, TlsError, TlsInfo, TlsLink};
use crate::trust::Trust;

/// Most octets of TLS records the engine encrypts ahead of the caller: staged
/// plaintext is fed to the TLS connection only while fewer than this many
/// octets wait in the transmit queue, so a single write of any size (a 100 MiB
/// `DATA` body, `RETR` answer or literal) is encrypted window by window as
/// [`Engine::poll_transmit`] takes it, never all at once. Each
/// `poll_transmit` therefore returns at most this much plus the overhead of
/// the records it spans (and any handshake or alert records due).
pub(crate) const TLS_WINDOW: usize = 64 * 1024;

/// Most octets of its own answers to peer input (replies the session writes
/// without an application call: `EHLO`, `CAPA`, `CAPABILITY`, refusals,
/// continuation requests) a session queues while the caller feeds input
/// without taking output. A peer that pipelines requests and never reads
/// the answers, against a caller that keeps reading without writing, would
/// otherwise grow the transmit queue without end; past this the session fails
/// with [`Error::LimitExceeded`]. What the caller hands in itself (message
/// bodies, literals, replies) is the caller's own data and is not counted.
pub(crate) const MAX_UNTAKEN_ANSWERS: usize = 1024 * 1024;

/// Largest buffer a busy session keeps between round trips (one TLS record
/// and then some): the allocations of a handshake flight or a negotiation
/// reply are reused, a larger one is given back as when idle.
const BUSY_KEEP: usize = 18 * 1024;

/// Facts about the upgrade, reported by every session type.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeEvent {
    /// The upgrade point was reached; the in-memory TLS handshake begins.
    /// Keep moving bytes as before.
    UpgradeStarted,
    /// Bring-your-own TLS: the upgrade point was reached. Write out every
    /// pending transmit byte, run your TLS handshake on the socket, then call
    /// `tls_established` and feed decrypted bytes from then on.
    ExternalTlsRequired,
    /// TLS is up; everything from here on is [`Trust::Tls`].
    TlsEstablished(TlsInfo),
    /// Server role: `bytes` octets arrived after the upgrade line and before
    /// TLS. They were dropped unread (threat class 1: command injection).
    InjectionDiscarded {
        /// How many octets were dropped.
        bytes: usize,
    },
}

/// What to do with bytes that arrive between the upgrade point and TLS.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum InjectionPolicy {
    /// Drop them unread and report their count (server default).
    Discard,
    /// Fail the session with a typed error (client default).
    Fail,
}

/// Which side of the connection a session plays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// How the engine gets to TLS.
pub(crate) enum TlsSetup {
    None,
    RustlsServer(Arc<rustls::ServerConfig>),
    RustlsClient {
        config: Arc<rustls::ClientConfig>,
        name: rustls::pki_types::ServerName<'static>,
    },
    External,
}

/// Engine settings a protocol session passes in.
pub(crate) struct EngineConfig {
    pub(crate) side: Side,
    pub(crate) tls: TlsSetup,
    pub(crate) implicit: bool,
    pub(crate) injection: InjectionPolicy,
}

impl EngineConfig {
    /// The engine setup for a server with this TLS configuration.
    pub(crate) fn server(
        tls: &crate::tls::ServerTls,
        implicit: bool,
        injection: InjectionPolicy,
    ) -> Self {
        use crate::tls::ServerTls;
        EngineConfig {
            side: Side::Server,
            tls: match tls {
                ServerTls::None => TlsSetup::None,
                ServerTls::Rustls(c) => TlsSetup::RustlsServer(Arc::clone(c)),
                ServerTls::External => TlsSetup::External,
            },
            implicit,
            injection,
        }
    }

    /// The engine setup for a client with this TLS configuration and policy.
    pub(crate) fn client(
        tls: &crate::tls::ClientTls,
        policy: crate::policy::TlsPolicy,
        injection: InjectionPolicy,
    ) -> Self {
        use crate::tls::ClientTls;
        EngineConfig {
            side: Side::Client,
            tls: match tls {
                ClientTls::Rustls {
                    config,
                    server_name,
                } => TlsSetup::RustlsClient {
                    config: Arc::clone(config),
                    name: server_name.clone(),
                },
                ClientTls::External => TlsSetup::External,
            },
            implicit: policy == crate::policy::TlsPolicy::Implicit,
            injection,
        }
    }
}

/// Protocol code as the engine drives it.
pub(crate) trait Machine: Sized {
    type Config;
    type Event: From<UpgradeEvent>;

    /// The state for the first bytes after a STARTTLS upgrade. Built from the
    /// configuration alone: this is rule (c).
    fn after_tls(config: &Arc<Self::Config>) -> Self;

    /// Consumes as much buffered input as it can, emits events and writes
    /// output. Returns when it needs more input, waits for the application,
    /// or asked for the upgrade or the close.
    fn process(&mut self, io: &mut Io<'_, Self::Event>) -> Result<(), Error>;

    /// The peer closed its side. The engine closes the session afterwards.
    fn on_eof(&mut self, io: &mut Io<'_, Self::Event>) -> Result<(), Error>;

    /// The most unprocessed input the session may hold right now: the
    /// message being assembled plus whatever waits behind a command the
    /// application has not answered. Smaller before authentication. The
    /// engine never lets the input buffer grow beyond it (see
    /// [`Engine::handle_input`]).
    fn input_budget(&self) -> InputBudget;

    /// `true` while the session negotiates by itself and the peer's answer
    /// is due at once (a client between its greeting and `Ready`): the
    /// engine then keeps its buffers and event slots between round trips
    /// instead of giving them back at each (see `Core::trim_idle`). The
    /// default, for servers, is `false`: a server waits for the client.
    fn negotiating(&self) -> bool {
        false
    }

    /// Hands state that *we* generated, and only that, to the machine built
    /// by [`Machine::after_tls`]. Nothing the peer sent may cross: the
    /// default carries nothing. (The IMAP client carries its tag counter so
    /// that tags stay unique on the connection, RFC 9051 §2.2.1; the SMTP
    /// client its `EHLO` line, written from the configuration alone.)
    fn carry_over(&mut self, _next: &mut Self) {}
}

/// How much unprocessed input a session may hold now, and in which phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct InputBudget {
    /// Octets of unprocessed input (plaintext).
    pub(crate) limit: usize,
    /// Whether the session counts as authenticated (the larger budget).
    pub(crate) authenticated: bool,
}

/// The protocol code's view of the connection: plaintext in, plaintext out.
pub(crate) struct Io<'a, E> {
    input: &'a mut BytesMut,
    out: &'a mut BytesMut,
    events: &'a mut VecDeque<E>,
    trust: Trust,
    cut: &'a mut bool,
    close: &'a mut bool,
    /// Plaintext octets moved out of `out` before this call.
    flushed: u64,
    /// Plaintext octets the caller has taken for sending.
    sent: u64,
    /// Octets of the caller's own data written while processing input.
    caller_data: &'a mut u64,
    /// What TLS negotiated, once established.
    tls_info: Option<&'a TlsInfo>,
}

impl<E> Io<'_, E> {
    /// Unprocessed plaintext. Empty once the upgrade or close was requested:
    /// nothing beyond the cut is ever visible to protocol code.
    #[inline]
    pub(crate) fn input(&self) -> &[u8] {
        if *self.cut || *self.close {
            &[]
        } else {
            self.input
        }
    }

    /// Takes the first `n` octets of [`Io::input`] (zero-copy).
    #[inline]
    pub(crate) fn take(&mut self, n: usize) -> Bytes {
        let n = n.min(self.input().len());
        self.input.split_to(n).freeze()
    }

    /// Drops the first `n` octets of [`Io::input`].
    #[inline]
    pub(crate) fn skip(&mut self, n: usize) {
        let n = n.min(self.input().len());
        let _ = self.input.split_to(n);
    }

    /// Queues plaintext for the peer. It is sent in cleartext before the cut
    /// and through TLS after the handshake; never in between.
    #[inline]
    pub(crate) fn send(&mut self, bytes: &[u8]) {
        debug_assert!(
            !*self.cut,
            "protocol code wrote after requesting the upgrade"
        );
        if !*self.cut && !*self.close {
            self.out.extend_from_slice(bytes);
        }
    }

    /// [`Io::send`] of the concatenation of `parts`, with one reservation
    /// for all of them (a line written piece by piece would otherwise grow
    /// the buffer several times).
    #[inline]
    pub(crate) fn send_parts(&mut self, parts: &[&[u8]]) {
        debug_assert!(
            !*self.cut,
            "protocol code wrote after requesting the upgrade"
        );
        if !*self.cut && !*self.close {
            self.out.reserve(parts.iter().map(|p| p.len()).sum());
            for p in parts {
                self.out.extend_from_slice(p);
            }
        }
    }

    /// Queues data the caller handed in earlier and the protocol releases
    /// now (an IMAP literal sent on the server's continuation): like
    /// [`Io::send`], but not counted as the session's own answer (see
    /// [`MAX_UNTAKEN_ANSWERS`]).
    #[inline]
    pub(crate) fn send_caller_data(&mut self, bytes: &[u8]) {
        let before = self.out.len();
        self.send(bytes);
        *self.caller_data += (self.out.len() - before) as u64;
    }

    /// Direct access to the output buffer for serializers.
    #[inline]
    pub(crate) fn out(&mut self) -> &mut BytesMut {
        self.out
    }

    /// Reports an event to the caller.
    #[inline]
    pub(crate) fn emit(&mut self, e: E) {
        self.events.push_back(e);
    }

    /// The trust level of the input and output right now.
    #[inline]
    pub(crate) fn trust(&self) -> Trust {
        self.trust
    }

    /// What TLS negotiated, once established (client certificates, for SASL
    /// `EXTERNAL`).
    #[inline]
    pub(crate) fn tls_info(&self) -> Option<&TlsInfo> {
        self.tls_info
    }

    /// Where the next octet written will be, counting every plaintext octet
    /// this session ever wrote. A client records it after writing a command.
    #[inline]
    pub(crate) fn written(&self) -> u64 {
        self.flushed + self.out.len() as u64
    }

    /// How many of those octets the caller has taken for sending. A reply to
    /// a command whose end is beyond this position cannot be genuine: no
    /// honest peer answers what it has not received.
    #[inline]
    pub(crate) fn sent(&self) -> u64 {
        self.sent
    }

    /// Declares that the input consumed so far ends with the upgrade line. The
    /// protocol code must return from `process` right after.
    pub(crate) fn start_upgrade(&mut self) {
        *self.cut = true;
    }

    /// Asks for the session to close once the output written so far is sent.
    pub(crate) fn close(&mut self) {
        *self.close = true;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Cleartext,
    /// After the cut, until the caller has taken our transmit bytes up to `mark`.
    Boundary {
        mark: u64,
    },
    Handshaking,
    AwaitingExternal,
    Tls,
    Closed,
}

/// Everything but the protocol machine (so both can be borrowed at once).
struct Core<E> {
    side: Side,
    phase: Phase,
    tls: TlsSetup,
    link: Option<Box<dyn TlsLink>>,
    external: bool,
    injection: InjectionPolicy,
    input: BytesMut,
    staged: BytesMut,
    transmit: BytesMut,
    queued: u64,
    taken: u64,
    events: VecDeque<E>,
    error: Option<Error>,
    discarded: usize,
    cut: bool,
    close: bool,
    tls_info: Option<TlsInfo>,
    /// Plaintext octets moved from `staged` towards the socket.
    plain_flushed: u64,
    /// `plain_flushed` as of the caller's last `poll_transmit`.
    plain_sent: u64,
    /// A close was asked for while plaintext still waited to be encrypted:
    /// the close_notify alert follows the last of it.
    close_notify: bool,
    /// Octets of caller data protocol code released while processing input.
    caller_data: u64,
    /// Octets of the session's own answers to input written since the caller
    /// last took all output (see [`MAX_UNTAKEN_ANSWERS`]).
    answers: u64,
}

/// The engine: one per session, owning the protocol machine.
pub(crate) struct Engine<M: Machine> {
    config: Arc<M::Config>,
    machine: M,
    core: Core<M::Event>,
}

impl<M: Machine> Engine<M> {
    /// Builds the engine around the machine's initial state and lets it write
    /// its first output (a server greeting) or, with implicit TLS, starts the
    /// handshake.
    pub(crate) fn new(config: Arc<M::Config>, machine: M, ec: EngineConfig) -> Self {
        let mut core = Core {
            side: ec.side,
            phase: Phase::Cleartext,
            external: matches!(ec.tls, TlsSetup::External),
            tls: ec.tls,
            link: None,
            injection: ec.injection,
            input: BytesMut::new(),
            staged: BytesMut::new(),
            transmit: BytesMut::new(),
            queued: 0,
            taken: 0,
            events: VecDeque::new(),
            error: None,
            discarded: 0,
            cut: false,
            close: false,
            tls_info: None,
            plain_flushed: 0,
            plain_sent: 0,
            close_notify: false,
            caller_data: 0,
            answers: 0,
        };
        if ec.implicit {
            core.begin_tls();
        }
        let mut engine = Engine {
            config,
            machine,
            core,
        };
        engine.run();
        engine
    }

    /// Feeds bytes received from the socket.
    ///
    /// Memory budget: the input is handed to the machine in pieces of at
    /// most one octet more than the room left in its
    /// [`InputBudget`], and the machine consumes what it can after each
    /// piece. The session fails with [`Error::InputBudgetExceeded`] at the
    /// first octet that would leave more unprocessed input than the budget,
    /// however large `data` is and however the peer's bytes were split into
    /// calls: unprocessed input depends only on the bytes received (and on
    /// the application's calls between them), and a piece never ends past
    /// the first octet over budget. With TLS in memory the budget counts
    /// plaintext, which rustls releases a record (at most 16 KiB) at a time.
    pub(crate) fn handle_input(&mut self, mut data: &[u8]) {
        while !data.is_empty() && self.core.phase != Phase::Closed {
            let budget = self.machine.input_budget();
            let room = budget
                .limit
                .saturating_sub(self.core.input.len())
                .saturating_add(1);
            let (piece, rest) = data.split_at(room.min(data.len()));
            data = rest;
            self.feed(piece, budget.limit);
            // The budget after processing: a login may have raised it.
            let budget = self.machine.input_budget();
            let core = &mut self.core;
            if core.phase != Phase::Closed && core.input.len() > budget.limit {
                core.fail(Error::InputBudgetExceeded {
                    limit: budget.limit,
                    authenticated: budget.authenticated,
                });
            }
        }
        let busy = self.busy();
        self.core.trim_idle(busy);
    }

    /// Whether the session is between round trips of a step whose answer is
    /// due at once: the TLS handshake (and the boundary before it), or a
    /// client's own negotiation ([`Machine::negotiating`]). An idle session
    /// (waiting for the application, or a server for the next command)
    /// keeps no buffers; a busy one keeps what it allocated for the next
    /// flight.
    fn busy(&self) -> bool {
        match self.core.phase {
            Phase::Boundary { .. } | Phase::Handshaking => true,
            Phase::Cleartext | Phase::Tls => self.machine.negotiating(),
            Phase::AwaitingExternal | Phase::Closed => false,
        }
    }

    /// How many more octets [`Engine::handle_input`] takes now before the
    /// input budget is exceeded (plaintext octets; 0 once closed).
    pub(crate) fn input_room(&self) -> usize {
        if self.core.phase == Phase::Closed {
            return 0;
        }
        self.machine
            .input_budget()
            .limit
            .saturating_sub(self.core.input.len())
    }

    /// One piece of input, already cut to the budget.
    fn feed(&mut self, data: &[u8], limit: usize) {
        let core = &mut self.core;
        match core.phase {
            Phase::Closed => return,
            Phase::Cleartext => core.push_input(data, limit),
            Phase::Boundary { .. } | Phase::AwaitingExternal => {
                // Rule (b): the peer cannot have seen our last cleartext bytes.
                core.pre_tls_bytes(data.len());
                return;
            }
            Phase::Handshaking | Phase::Tls => {
                if core.external {
                    core.push_input(data, limit);
                } else if let Some(link) = core.link.as_mut() {
                    // Room is made only for plaintext rustls has ready, with
                    // the same growth rule as cleartext input.
                    let r = link.receive(data, &mut core.input, &mut |input, n| {
                        reserve_input(input, n, limit)
                    });
                    link.drain(&mut core.transmit);
                    let established = (core.phase == Phase::Handshaking && !link.is_handshaking())
                        .then(|| link.info());
                    core.sync_queued();
                    if let Err(e) = r {
                        // Nothing more goes out after a broken record.
                        core.staged.clear();
                        core.fail(e.into());
                        return;
                    }
                    if let Some(info) = established {
                        core.tls_up(info);
                    }
                }
            }
        }
        self.run_on_input();
    }

    /// The peer closed its sending side.
    pub(crate) fn handle_eof(&mut self) {
        match self.core.phase {
            Phase::Closed => {}
            Phase::Boundary { .. } | Phase::Handshaking | Phase::AwaitingExternal => {
                self.core.report_discarded();
                if self.core.side == Side::Client {
                    self.core.fail(Error::PeerClosed {
                        step: Step::Handshake,
                    });
                }
                self.core.phase = Phase::Closed;
            }
            Phase::Cleartext | Phase::Tls => {
                let r = {
                    let mut io = self.core.io();
                    self.machine.on_eof(&mut io)
                };
                self.settle();
                if let Err(e) = r {
                    self.core.fail(e);
                }
                self.core.phase = Phase::Closed;
            }
        }
    }

    /// Next event, or the error the session failed with once all events
    /// before it were taken.
    pub(crate) fn poll_event(&mut self) -> Result<Option<M::Event>, Error> {
        match self.core.events.pop_front() {
            Some(e) => {
                if self.core.events.is_empty() && !self.busy() {
                    // An idle session keeps no event slots.
                    self.core.events = VecDeque::new();
                }
                Ok(Some(e))
            }
            None => match &self.core.error {
                Some(e) => Err(e.clone()),
                None => Ok(None),
            },
        }
    }

    /// Bytes to write to the socket. Taking them may move the session past
    /// the upgrade boundary. Through in-memory TLS, each call encrypts the
    /// next window of waiting plaintext (see [`TLS_WINDOW`]).
    pub(crate) fn poll_transmit(&mut self) -> Option<Bytes> {
        if self.core.transmit.is_empty() {
            self.core.pump();
        }
        if self.core.transmit.is_empty() {
            return None;
        }
        // An idle session hands out the buffer itself: a split would leave
        // the allocation's spare capacity with it. A busy one splits, so that
        // the next flight reuses the allocation once the caller dropped this
        // one (`BytesMut::reserve` reclaims it).
        let busy = self.busy();
        let out = if busy && self.core.transmit.capacity() <= BUSY_KEEP {
            self.core.transmit.split().freeze()
        } else {
            std::mem::take(&mut self.core.transmit).freeze()
        };
        self.core.taken += out.len() as u64;
        // Everything flushed so far is inside what was just taken.
        self.core.plain_sent = self.core.plain_flushed;
        if self.core.staged.is_empty() {
            // The caller has taken every answer so far.
            self.core.answers = 0;
        }
        self.core.check_boundary();
        let busy = self.busy();
        self.core.trim_idle(busy);
        Some(out)
    }

    /// Bring-your-own TLS: the caller's handshake completed.
    pub(crate) fn tls_established(&mut self, info: TlsInfo) -> Result<(), UsageError> {
        if self.core.phase != Phase::AwaitingExternal {
            return Err(UsageError::NotAtUpgradePoint);
        }
        self.core.tls_up(info);
        self.run();
        Ok(())
    }

    /// Runs an application call against the machine, then lets the machine
    /// continue with any input it was waiting on.
    pub(crate) fn call<R>(
        &mut self,
        f: impl FnOnce(&mut M, &mut Io<'_, M::Event>) -> Result<R, UsageError>,
    ) -> Result<R, UsageError> {
        if self.core.phase == Phase::Closed {
            return Err(UsageError::Closed);
        }
        let r = {
            let mut io = self.core.io();
            f(&mut self.machine, &mut io)
        }?;
        self.run_on_input();
        Ok(r)
    }

    /// Read-only access to the machine.
    pub(crate) fn machine(&self) -> &M {
        &self.machine
    }

    pub(crate) fn trust(&self) -> Trust {
        self.core.trust()
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.core.phase == Phase::Closed
    }

    /// What TLS negotiated, once established: with rustls in memory read
    /// from the connection (which holds the peer's chain already; the
    /// session keeps only [`TlsInfo::slim`]), with bring-your-own TLS what
    /// the caller gave.
    pub(crate) fn tls_info(&self) -> Option<TlsInfo> {
        let kept = self.core.tls_info.as_ref()?;
        match &self.core.link {
            Some(link) if !self.core.external => Some(link.info()),
            _ => Some(kept.clone()),
        }
    }

    /// [`Engine::run`] on new input, holding the session's own answers to
    /// [`MAX_UNTAKEN_ANSWERS`] octets while the caller does not take them.
    fn run_on_input(&mut self) {
        let written = self.core.written();
        let caller_data = self.core.caller_data;
        self.run();
        let core = &mut self.core;
        let answers = core
            .written()
            .saturating_sub(written)
            .saturating_sub(core.caller_data - caller_data);
        core.answers = core.answers.saturating_add(answers);
        if core.phase != Phase::Closed && core.answers > MAX_UNTAKEN_ANSWERS as u64 {
            core.fail(Error::LimitExceeded {
                what: "answers not taken for sending",
                limit: MAX_UNTAKEN_ANSWERS,
            });
        }
    }

    /// Lets the machine process what it can, then applies what it asked for.
    fn run(&mut self) {
        if matches!(self.core.phase, Phase::Cleartext | Phase::Tls)
            && !self.core.cut
            && !self.core.close
        {
            let r = {
                let mut io = self.core.io();
                self.machine.process(&mut io)
            };
            if let Err(e) = r {
                self.settle();
                self.core.fail(e);
                return;
            }
        }
        self.settle();
    }

    /// Flushes output and carries out a requested upgrade or close.
    fn settle(&mut self) {
        self.core.flush();
        if self.core.close {
            self.core.close = false;
            self.core.report_discarded();
            self.core.phase = Phase::Closed;
            self.core.input.clear();
            // The close_notify alert goes out after the last staged octet.
            self.core.close_notify = self.core.link.is_some();
            self.core.pump();
        } else if self.core.cut {
            self.core.cut = false;
            // Rule (c): a new machine built from the configuration alone,
            // plus what the old one generated itself (never peer state).
            let mut next = M::after_tls(&self.config);
            self.machine.carry_over(&mut next);
            self.machine = next;
            self.core.cut_here();
        }
    }
}

impl<E: From<UpgradeEvent>> Core<E> {
    fn io(&mut self) -> Io<'_, E> {
        let trust = self.trust();
        Io {
            input: &mut self.input,
            out: &mut self.staged,
            events: &mut self.events,
            trust,
            cut: &mut self.cut,
            close: &mut self.close,
            flushed: self.plain_flushed,
            sent: self.plain_sent,
            caller_data: &mut self.caller_data,
            tls_info: self.tls_info.as_ref(),
        }
    }

    /// Every plaintext octet protocol code ever wrote (moved on or staged).
    fn written(&self) -> u64 {
        self.plain_flushed + self.staged.len() as u64
    }

    fn trust(&self) -> Trust {
        match self.phase {
            Phase::Tls => Trust::Tls,
            _ => Trust::Cleartext,
        }
    }

    /// Appends input, growing the buffer by doubling but never past one
    /// octet over the budget, so the allocation stays within the budget
    /// however the input was split.
    fn push_input(&mut self, data: &[u8], limit: usize) {
        reserve_input(&mut self.input, data.len(), limit);
        self.input.extend_from_slice(data);
    }

    /// Gives back the buffers an idle session does not need: an empty input
    /// or staging buffer keeps no allocation between reads (the design target
    /// is under 1 KiB of state per idle session on top of rustls).
    ///
    /// An empty buffer may still hold its allocation with no capacity left
    /// (the staging buffer after TLS took every octet with `advance`, the
    /// input after its last line was split off): it is replaced whatever
    /// its capacity says.
    ///
    /// A `busy` session (see `Engine::busy`) keeps buffers of up to
    /// [`BUSY_KEEP`] octets, and its event slots, for the next round trip.
    fn trim_idle(&mut self, busy: bool) {
        if busy {
            for b in [&mut self.input, &mut self.staged, &mut self.transmit] {
                if b.is_empty() && b.capacity() > BUSY_KEEP {
                    *b = BytesMut::new();
                }
            }
            return;
        }
        if self.input.is_empty() {
            self.input = BytesMut::new();
        }
        if self.staged.is_empty() {
            self.staged = BytesMut::new();
        }
        if self.transmit.is_empty() {
            self.transmit = BytesMut::new();
        }
        if self.events.is_empty() {
            self.events = VecDeque::new();
        }
    }

    /// Moves staged plaintext out: as is in cleartext, through TLS after the
    /// handshake (one window at a time, see [`Core::pump`]), and nowhere in
    /// between (it waits).
    fn flush(&mut self) {
        if self.staged.is_empty() {
            return;
        }
        match self.phase {
            Phase::Cleartext => self.move_staged(),
            Phase::Tls if self.external => self.move_staged(),
            Phase::Tls | Phase::Closed => self.pump(),
            Phase::Boundary { .. } | Phase::Handshaking | Phase::AwaitingExternal => {}
        }
        self.sync_queued();
    }

    /// In-memory TLS: encrypts staged plaintext into `transmit` while fewer
    /// than [`TLS_WINDOW`] octets wait there, then, once no plaintext is left
    /// after a close, queues the close_notify alert. Memory for output is
    /// thus the plaintext handed in and not yet encrypted (protocol bytes
    /// and the caller's own data, copied once) plus one window of records,
    /// however large a single write is and however slowly the caller takes
    /// it.
    fn pump(&mut self) {
        let encrypting = !self.external && matches!(self.phase, Phase::Tls | Phase::Closed);
        let Some(link) = self.link.as_mut().filter(|_| encrypting) else {
            if self.phase == Phase::Closed {
                self.staged.clear();
            }
            return;
        };
        while !self.staged.is_empty() {
            let room = TLS_WINDOW.saturating_sub(self.transmit.len());
            if room == 0 {
                break;
            }
            let piece = self.staged.get(..room).unwrap_or(&self.staged);
            let r = link.send(piece);
            link.drain(&mut self.transmit);
            match r {
                Ok(0) => break,
                Ok(n) => {
                    self.staged.advance(n);
                    self.plain_flushed += n as u64;
                }
                Err(e) => {
                    self.staged.clear();
                    self.close_notify = false;
                    self.sync_queued();
                    return self.fail(e.into());
                }
            }
        }
        if self.staged.is_empty() && std::mem::take(&mut self.close_notify) {
            link.close();
            link.drain(&mut self.transmit);
        }
        self.sync_queued();
    }

    /// Cleartext staged output goes to `transmit` as it is: moved whole when
    /// nothing is waiting there, appended otherwise. No copy of the caller's
    /// data beyond the one made when it was handed in.
    fn move_staged(&mut self) {
        self.plain_flushed += self.staged.len() as u64;
        if self.transmit.is_empty() && self.transmit.capacity() < self.staged.len() {
            self.transmit = std::mem::take(&mut self.staged);
        } else {
            self.transmit.extend_from_slice(&self.staged);
            self.staged.clear();
        }
    }

    fn sync_queued(&mut self) {
        self.queued = self.taken + self.transmit.len() as u64;
    }

    /// Rules (a) and (b) at the moment of the cut.
    ///
    /// The upgrade starts the same way whether or not bytes already follow
    /// the cut; those bytes are then handled exactly like bytes that arrive
    /// later, so the events do not depend on how the input was split.
    fn cut_here(&mut self) {
        let rest = self.input.len();
        self.input = BytesMut::new();
        self.staged.clear();
        match &self.tls {
            TlsSetup::RustlsClient { config, name } => match RustlsLink::client(config, name) {
                Ok(mut link) => {
                    link.drain(&mut self.transmit);
                    self.link = Some(Box::new(link));
                    self.events.push_back(UpgradeEvent::UpgradeStarted.into());
                }
                Err(e) => return self.fail(e.into()),
            },
            TlsSetup::RustlsServer(_) => {
                self.events.push_back(UpgradeEvent::UpgradeStarted.into());
            }
            TlsSetup::External => {
                self.events
                    .push_back(UpgradeEvent::ExternalTlsRequired.into());
            }
            TlsSetup::None => {
                // Protocol code never offers an upgrade without TLS; if it
                // did, closing is the only safe answer.
                return self.fail(Error::Tls(TlsError {
                    kind: crate::tls::TlsErrorKind::Other,
                    detail: "upgrade requested but no TLS is configured".into(),
                }));
            }
        }
        self.sync_queued();
        self.phase = Phase::Boundary { mark: self.queued };
        if rest > 0 {
            self.pre_tls_bytes(rest);
            if self.phase == Phase::Closed {
                return;
            }
        }
        self.check_boundary();
    }

    /// Bytes that arrived where only TLS may come, before TLS could have begun.
    fn pre_tls_bytes(&mut self, n: usize) {
        match self.injection {
            InjectionPolicy::Discard => self.discarded = self.discarded.saturating_add(n),
            InjectionPolicy::Fail => {
                self.discarded = 0;
                // Withdraw what has not been taken yet (the server's 220 /
                // OK / +OK, the client's ClientHello): a session under attack
                // does not go on.
                self.transmit.clear();
                self.sync_queued();
                self.fail(match self.side {
                    Side::Server => Error::CommandInjection,
                    Side::Client => Error::ResponseInjection,
                });
            }
        }
    }

    fn report_discarded(&mut self) {
        if self.discarded > 0 {
            let bytes = std::mem::take(&mut self.discarded);
            self.events
                .push_back(UpgradeEvent::InjectionDiscarded { bytes }.into());
        }
    }

    /// Leaves the boundary once the caller took our last pre-TLS bytes.
    fn check_boundary(&mut self) {
        let Phase::Boundary { mark } = self.phase else {
            return;
        };
        if self.taken < mark {
            return;
        }
        if self.external {
            // The window stays open until the caller's handshake is done;
            // `tls_up` reports what arrived in it.
            self.phase = Phase::AwaitingExternal;
            return;
        }
        self.report_discarded();
        if self.link.is_none() {
            if let TlsSetup::RustlsServer(config) = &self.tls {
                match RustlsLink::server(config) {
                    Ok(link) => self.link = Some(Box::new(link)),
                    Err(e) => return self.fail(e.into()),
                }
            }
        }
        self.phase = Phase::Handshaking;
    }

    /// Implicit TLS: start in TLS before any protocol byte.
    fn begin_tls(&mut self) {
        match &self.tls {
            TlsSetup::External => self.phase = Phase::AwaitingExternal,
            TlsSetup::RustlsClient { config, name } => match RustlsLink::client(config, name) {
                Ok(mut link) => {
                    link.drain(&mut self.transmit);
                    self.link = Some(Box::new(link));
                    self.sync_queued();
                    self.phase = Phase::Handshaking;
                }
                Err(e) => self.fail(e.into()),
            },
            TlsSetup::RustlsServer(config) => match RustlsLink::server(config) {
                Ok(link) => {
                    self.link = Some(Box::new(link));
                    self.phase = Phase::Handshaking;
                }
                Err(e) => self.fail(e.into()),
            },
            TlsSetup::None => self.fail(Error::Tls(TlsError {
                kind: crate::tls::TlsErrorKind::Other,
                detail: "implicit TLS without a TLS configuration".into(),
            })),
        }
    }

    fn tls_up(&mut self, info: TlsInfo) {
        self.report_discarded();
        self.phase = Phase::Tls;
        // With rustls in memory the connection keeps the chain and the rest:
        // no second copy per session (`Engine::tls_info` reads them there).
        self.tls_info = Some(if self.external {
            info.clone()
        } else {
            info.slim()
        });
        self.events
            .push_back(UpgradeEvent::TlsEstablished(info).into());
        // Output the protocol wrote while waiting goes out encrypted now.
        self.flush();
    }

    fn fail(&mut self, e: Error) {
        if self.error.is_none() {
            self.error = Some(e);
        }
        // Output written before the failure (a last reply) still goes out
        // through a working TLS connection, window by window, as it would
        // have in cleartext; anywhere else staged output was never due.
        if !(self.phase == Phase::Tls && self.link.is_some() && !self.external) {
            self.staged.clear();
        }
        self.phase = Phase::Closed;
        self.input.clear();
    }
}

/// Makes room for `additional` more octets of input: doubling, but never
/// past one octet over the budget `limit` unless `additional` itself needs it
/// (see [`Engine::handle_input`] for why it never does).
fn reserve_input(input: &mut BytesMut, additional: usize, limit: usize) {
    let need = input.len().saturating_add(additional);
    if input.capacity() >= need || input.try_reclaim(additional) {
        return;
    }
    let cap = input
        .len()
        .saturating_mul(2)
        .min(limit.saturating_add(1))
        .max(need);
    let mut grown = BytesMut::with_capacity(cap);
    grown.extend_from_slice(input);
    *input = grown;
}

/// Implements the caller-facing I/O methods of a session type that wraps an
/// `Engine` in a field named `engine`.
macro_rules! session_io {
    ($ty:ty, $event:ty) => {
        impl $ty {
            /// Feeds bytes read from the socket (ciphertext once TLS is driven
            /// in memory; decrypted bytes with bring-your-own TLS after
            /// `tls_established`). Processing happens right away; then call
            /// [`poll_event`](Self::poll_event) and
            /// [`poll_transmit`](Self::poll_transmit) until both are empty.
            ///
            /// The result depends only on the bytes and on the order of calls,
            /// never on how the bytes were split into calls.
            pub fn handle_input(&mut self, data: &[u8]) {
                self.engine.handle_input(data)
            }

            /// Back-pressure: how many more octets [`handle_input`](Self::handle_input)
            /// accepts before the session's input budget is exceeded (the
            /// message being assembled plus input queued behind a command
            /// the application has not answered; see the `Limits` of the
            /// protocol). A caller that reads at most this many octets from
            /// the socket (plaintext octets: with TLS in memory, allow one
            /// TLS record, 16 KiB, more) never gets
            /// [`Error::InputBudgetExceeded`](crate::Error::InputBudgetExceeded);
            /// at 0 it should stop reading until an application call (such
            /// as completing the pending command) frees room. 0 once closed.
            pub fn input_room(&self) -> usize {
                self.engine.input_room()
            }

            /// Tells the session the peer closed its side of the connection.
            pub fn handle_eof(&mut self) {
                self.engine.handle_eof()
            }

            /// The next event. `Ok(None)`: nothing to report now. `Err`: the
            /// session failed (after every event before the failure was
            /// returned); it is closed, and every later call returns the same
            /// error. Send what [`poll_transmit`](Self::poll_transmit) still
            /// returns, then close the socket.
            #[must_use = "events carry the peer's messages and the session's failures"]
            pub fn poll_event(&mut self) -> Result<Option<$event>, $crate::Error> {
                self.engine.poll_event()
            }

            /// Bytes to write to the socket, in order. Call after every
            /// `handle_input`, `handle_eof`, `tls_established` and application
            /// call, until it returns `None`. Taking the bytes is what moves
            /// the session past the upgrade boundary.
            ///
            /// Through in-memory TLS a large write comes out in several
            /// results: each call encrypts the next 64 KiB of waiting
            /// plaintext, so the session never holds more than one window of
            /// records however much was handed to it at once. A caller that
            /// keeps feeding input without taking output has the session fail
            /// with [`Error::LimitExceeded`](crate::Error::LimitExceeded) once
            /// 1 MiB of its own answers wait (see `docs/design.md`, Limits).
            #[must_use = "the returned bytes must be written to the socket"]
            pub fn poll_transmit(&mut self) -> Option<bytes::Bytes> {
                self.engine.poll_transmit()
            }

            /// Bring-your-own TLS: your TLS stack finished its handshake (after
            /// [`UpgradeEvent::ExternalTlsRequired`](crate::UpgradeEvent::ExternalTlsRequired)).
            /// From now on feed decrypted bytes and encrypt what the session
            /// transmits.
            pub fn tls_established(
                &mut self,
                info: $crate::TlsInfo,
            ) -> Result<(), $crate::UsageError> {
                self.engine.tls_established(info)
            }

            /// Whether what the session receives and sends now is protected by TLS.
            pub fn trust(&self) -> $crate::Trust {
                self.engine.trust()
            }

            /// `true` once the session has ended (normally or by failure).
            pub fn is_closed(&self) -> bool {
                self.engine.is_closed()
            }

            /// What TLS negotiated, once established. With rustls in memory
            /// it is read from the connection at each call (the session
            /// keeps no second copy of the peer's certificate chain); with
            /// bring-your-own TLS it is what
            /// [`tls_established`](Self::tls_established) was given.
            pub fn tls_info(&self) -> Option<$crate::TlsInfo> {
                self.engine.tls_info()
            }

            /// What the session waits for now; with
            /// [`Timeouts::for_waiting`](crate::Timeouts::for_waiting), how
            /// long it may wait (see [`session`](crate::session)).
            pub fn waiting_for(&self) -> $crate::Waiting {
                self.engine.waiting_for()
            }

            /// Your timer for [`waiting_for`](Self::waiting_for) fired: the
            /// session queues the protocol's goodbye (server role), closes, and
            /// [`poll_event`](Self::poll_event) ends with
            /// [`Error::Timeout`](crate::Error::Timeout). Send what
            /// [`poll_transmit`](Self::poll_transmit) returns, then close.
            pub fn handle_timeout(&mut self) {
                self.engine.handle_timeout()
            }

            /// Hands the TLS channel over to the caller and closes the session:
            /// the in-memory rustls connection (none with bring-your-own TLS)
            /// and the decrypted bytes not consumed yet. Only with TLS up and
            /// every transmit byte taken.
            pub fn take_tls(&mut self) -> Result<$crate::TlsHandoff, $crate::UsageError> {
                self.engine.take_tls()
            }
        }
    };
}
pub(crate) use session_io;

impl<M: Machine + crate::session::Timed> Engine<M> {
    /// What the session waits for: the machine's answer in cleartext and
    /// TLS, the engine's at the boundary.
    pub(crate) fn waiting_for(&self) -> crate::session::Waiting {
        use crate::session::Waiting;
        match self.core.phase {
            Phase::Cleartext | Phase::Tls => self.machine.waiting(),
            // The caller has our last cleartext bytes to take.
            Phase::Boundary { .. } => Waiting::Application,
            Phase::Handshaking => Waiting::Handshake,
            Phase::AwaitingExternal => Waiting::ExternalTls,
            Phase::Closed => Waiting::Closed,
        }
    }

    /// The caller's timer fired: goodbye (in cleartext or through TLS, then
    /// `close_notify`), close, fail with `Error::Timeout`.
    pub(crate) fn handle_timeout(&mut self) {
        let waiting = self.waiting_for();
        match self.core.phase {
            Phase::Closed => return,
            Phase::Cleartext | Phase::Tls if !self.core.cut => {
                if let Some(line) = self.machine.goodbye() {
                    self.core.io().send(&line);
                }
                self.core.close = true;
                self.settle();
            }
            _ => self.core.report_discarded(),
        }
        self.core.fail(Error::Timeout { waiting });
    }
}

impl<M: Machine> Engine<M> {
    /// The hand-off: the TLS connection and the unconsumed plaintext.
    pub(crate) fn take_tls(&mut self) -> Result<crate::session::TlsHandoff, UsageError> {
        if self.core.phase != Phase::Tls {
            return Err(UsageError::WrongState(
                "the hand-off needs an open session with TLS established",
            ));
        }
        if !self.core.transmit.is_empty() || !self.core.staged.is_empty() {
            return Err(UsageError::WrongState(
                "the hand-off needs every transmit byte taken first",
            ));
        }
        // From now on `tls_info()` cannot read the connection: keep it all.
        if let Some(link) = &self.core.link {
            self.core.tls_info = Some(link.info());
        }
        let connection = self.core.link.take().and_then(|l| l.into_rustls());
        let unconsumed = std::mem::take(&mut self.core.input).freeze();
        self.core.phase = Phase::Closed;
        Ok(crate::session::TlsHandoff {
            connection,
            unconsumed,
        })
    }
}
