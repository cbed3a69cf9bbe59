//! What happens around every handler, in one place, in the spirit of rouille's `log()`:
//! the request id, the route, a CORS preflight, the API key, the handler (a panic in it
//! caught and answered 500), CORS headers, the metrics, whether the connection closes
//! after the answer, the access line, and the answer itself.

use super::access_log;
use super::error::ApiError;
use super::request::Request;
use super::response::Response;
use super::server::{Service, Shared};
use super::tiny::Exchange;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::time::Instant;

impl<S> Shared<S> {
    /// Answers one request.
    pub(super) fn handle(&self, exchange: Exchange) {
        let received = Instant::now();
        let id = self
            .request_ids
            .for_request(exchange.header("X-Request-Id"));
        let mut req = Request::new(exchange, self.settings.limits, id, received);
        let service = &self.service;
        let in_flight = service.metrics.start_request();

        let mut response = match catch_unwind(AssertUnwindSafe(|| service.dispatch(&mut req))) {
            Ok(Ok(response)) => response,
            Ok(Err(e)) => Response::error(e, &req.id),
            Err(panic) => {
                let message = crate::panic_message(&*panic);
                log::error!("request {} panicked: {message}", req.id);
                service.metrics.panic_caught();
                let e = ApiError::internal(format!("internal error (request {})", req.id));
                Response::error(e, &req.id)
            }
        };
        service.cors.decorate(&req, &mut response);
        // Counted (and no longer in flight) before sending, so that a client holding its
        // answer sees it counted and not still in flight.
        service
            .metrics
            .record_request(req.route, response.status, received.elapsed());
        drop(in_flight);

        let close = self.closes_connection(&req, response.status);
        // The access line goes out before the answer: once the answer is out, the client's
        // next request wakes the connection's thread, and work this thread still had to do
        // then cost a context switch: 11% of requests/s on the digits model, 3% written
        // before (docs/benchmarks.md). So its duration ends when the answer is ready to
        // send; a failed write is logged on its own (`Request::respond`).
        access_log::log(
            &req,
            response.status,
            response.body.len(),
            received.elapsed(),
        );
        req.respond(response, close);
    }

    /// Whether the connection closes after this answer: when the server drains, when the
    /// client asked, when the client has left (a 499: its FIN or reset came, there is no
    /// next request), when the connection is past its age (`--max-connection-age`), or
    /// when a starved connection needs its thread.
    fn closes_connection(&self, req: &Request, status: u16) -> bool {
        let peer = req.peer();
        if self.draining.is_draining() || req.wants_close() || status == 499 {
            self.rotation.forget(peer);
            return true;
        }
        // A wanted close is used up only by an answer that says it.
        self.rotation.should_close(peer, req.received)
            || (req.can_say_close() && self.connections.take_close())
    }
}

impl<S> Service<S> {
    /// Matches the route, answers a CORS preflight, checks the API key (before the method,
    /// so that a caller without the key learns nothing of the routes), then runs the
    /// handler.
    fn dispatch(&self, req: &mut Request) -> Result<Response, ApiError> {
        let found = self.router.find(req.path());
        let route = found.as_ref().ok().map(|f| self.router.route(f.index));
        req.route = found.as_ref().ok().map(|f| f.index);
        if let Some(preflight) = self.cors.preflight(req, route.map(|r| r.allow)) {
            return preflight;
        }
        if !route.is_some_and(|r| r.open) {
            self.auth.check(req.header("Authorization"))?;
        }
        let found = found?;
        let handler = self
            .router
            .handler(&found, req.method(), req.method_text(), req.path())?;
        req.params = found.params;
        handler(&self.state, req)
    }
}
