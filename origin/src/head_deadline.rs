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
    pub fn check(&mut self, cx: &mut Context<'_>, got: bool) -> io::Result<()> {
        // The first request is actix's (it answers 408); nothing is timed while no head is due.
        let (Some(timeout), Some(last_write)) = (self.timeout, self.last_write) else {
            return Ok(());
        };
        let now = Instant::now();
        if got && !self.clock.busy.get() && self.clock.started.get().is_none() {
            self.clock.started.set(Some(now));
        }
        let Some(first_byte) = self.clock.started.get() else {
            self.timer = None;
            return Ok(());
        };
        let deadline = first_byte.max(last_write) + timeout;
        let timer = self
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if now >= deadline || timer.as_mut().poll(cx).is_ready() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within header_timeout",
            ));
        }
        Ok(())
    }
}
