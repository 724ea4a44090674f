//! The child's event loop: promise jobs, then the prelude's timers, until the awaited thing
//! settles, nothing is left to run, or the deadline passes. It sleeps between timers, so a
//! `setTimeout(r, 100)` costs 100 ms of wall time and no CPU; a wait of 2 ms or more goes
//! through the server, which lends the run's core to another run meanwhile.
//!
//! Unhandled promise rejections are tracked so a script can fail the way Node fails it.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use rquickjs::{CatchResultExt, CaughtError, Ctx, Function, Object, Persistent, Runtime, Value};

/// Why the loop stopped early.
pub enum Stop<'js> {
    Timeout,
    /// A timer callback threw.
    Thrown(CaughtError<'js>),
}

/// Runs until `settled()` says so or nothing is left; `Ok` either way (the caller tells which).
pub fn run_until<'js>(
    ctx: &Ctx<'js>,
    hooks: &Object<'js>,
    deadline: Instant,
    settled: &dyn Fn() -> bool,
) -> Result<(), Stop<'js>> {
    let next_timer: Function = hooks.get("nextTimer").catch(ctx).map_err(Stop::Thrown)?;
    let fire_timers: Function = hooks.get("fireTimers").catch(ctx).map_err(Stop::Thrown)?;
    loop {
        while ctx.execute_pending_job() {}
        if Instant::now() >= deadline {
            return Err(Stop::Timeout);
        }
        if settled() {
            return Ok(());
        }
        let wait: f64 = next_timer.call(()).catch(ctx).map_err(Stop::Thrown)?;
        if wait < 0.0 {
            return Ok(());
        }
        let due = Instant::now() + Duration::from_secs_f64(wait / 1000.0);
        crate::zygote::child::pause(due.min(deadline).saturating_duration_since(Instant::now()));
        if Instant::now() >= deadline {
            return Err(Stop::Timeout);
        }
        fire_timers
            .call::<_, ()>(())
            .catch(ctx)
            .map_err(Stop::Thrown)?;
    }
}

thread_local! {
    /// (promise, reason) of rejections no handler has claimed yet.
    static UNHANDLED: RefCell<Vec<(Persistent<Value<'static>>, Persistent<Value<'static>>)>> =
        const { RefCell::new(Vec::new()) };
}

/// Starts tracking rejections (installed once; it only records).
pub fn track_rejections(runtime: &Runtime) {
    runtime.set_host_promise_rejection_tracker(Some(Box::new(
        |ctx: Ctx<'_>, promise: Value<'_>, reason: Value<'_>, is_handled: bool| {
            UNHANDLED.with(|list| {
                let mut list = list.borrow_mut();
                if is_handled {
                    list.retain(|(p, _)| p.clone().restore(&ctx).ok().as_ref() != Some(&promise));
                } else {
                    list.push((
                        Persistent::save(&ctx, promise),
                        Persistent::save(&ctx, reason),
                    ));
                }
            })
        },
    )));
}

/// Forgets what the zygote's start-up tracked, once, so that no child inherits it.
pub fn forget_rejections() {
    UNHANDLED.with(|list| list.borrow_mut().clear());
}

/// The reason of the oldest rejection still unhandled, if any.
pub fn first_unhandled<'js>(ctx: &Ctx<'js>) -> Option<Value<'js>> {
    UNHANDLED.with(|list| {
        let list = list.borrow();
        list.first()
            .and_then(|(_, reason)| reason.clone().restore(ctx).ok())
    })
}
