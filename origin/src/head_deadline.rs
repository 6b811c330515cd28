//! A request-head deadline for every request of a kept-alive connection, not just the first.
//!
//! actix-http arms its request-head timer (`client_request_timeout`) only for a connection's
//! first request, and clears its keep-alive timer as soon as a byte of the next request arrives:
//! a client that drips the head of a follow-up request would hold the connection forever. The
//! plain-HTTP connection wrapper ([`crate::sendfile::SendfileStream`]) closes such a connection
//! once `header_timeout` has passed since the first byte of a head arrived (or since the server
//! last wrote, if later) without the request reaching the handlers.
//!
//! The connection's [`HeadClock`] is shared with the request middleware through the connection
//! data: the middleware marks when a request's head has been parsed and when its handler is
//! done, so request bodies and slow handlers are never timed.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// What the middleware tells the connection (connection data, `HttpRequest::conn_data`).
#[derive(Debug, Default)]
pub struct HeadClock {
    /// When the first byte of a head not yet parsed arrived.
    started: Cell<Option<Instant>>,
    /// A request is in the handlers (its body, if any, is theirs to read).
    busy: Cell<bool>,
}

impl HeadClock {
    /// A request's head was parsed and handed to the handlers.
    pub fn request_started(&self) {
        self.started.set(None);
        self.busy.set(true);
    }

    /// The handlers returned the response (its body may still be streaming).
    pub fn request_done(&self) {
        self.busy.set(false);
    }
}

/// The deadline kept by the connection wrapper.
pub struct HeadDeadline {
    clock: Rc<HeadClock>,
    timeout: Option<Duration>,
    last_write: Option<Instant>,
    timer: Option<Pin<Box<Sleep>>>,
}

impl HeadDeadline {
    /// A deadline of `timeout` (none: never).
    pub fn new(timeout: Option<Duration>) -> Self {
        HeadDeadline {
            clock: Rc::new(HeadClock::default()),
            timeout,
            last_write: None,
            timer: None,
        }
    }

    /// The clock the middleware updates.
    pub fn clock(&self) -> Rc<HeadClock> {
        self.clock.clone()
    }

    /// The server wrote to the connection.
    pub fn wrote(&mut self) {
        self.last_write = Some(Instant::now());
    }

    /// Called on every read (`got`: bytes arrived). An error closes the connection.
    ///
    /// The timer is re-armed lazily: it keeps an older, earlier deadline and, when that goes off,
    /// is moved to the current one. So a busy connection re-registers it about once per timeout,
    /// not once per request.
    pub fn check(&mut self, cx: &mut Context<'_>, got: bool) -> io::Result<()> {
        // The first request is actix's (it answers 408); nothing is timed while no head is due.
        let (Some(timeout), Some(last_write)) = (self.timeout, self.last_write) else {
            return Ok(());
        };
        if got && !self.clock.busy.get() && self.clock.started.get().is_none() {
            self.clock.started.set(Some(Instant::now()));
        }
        let Some(first_byte) = self.clock.started.get() else {
            return Ok(());
        };
        let deadline = first_byte.max(last_write) + timeout;
        let timer = match &mut self.timer {
            Some(t) => {
                if t.deadline() > deadline {
                    t.as_mut().reset(deadline);
                }
                t
            }
            None => self
                .timer
                .insert(Box::pin(tokio::time::sleep_until(deadline))),
        };
        if timer.as_mut().poll(cx).is_ready() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "request head not received within header_timeout",
                ));
            }
            // An earlier deadline that no longer holds.
            timer.as_mut().reset(deadline);
            let _ = timer.as_mut().poll(cx);
        }
        Ok(())
    }
}
