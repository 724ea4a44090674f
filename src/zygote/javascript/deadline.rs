//! The run's deadline as QuickJS's interrupt handler sees it. The handler is installed once, in
//! the zygote, and reads the deadline from a static that the child sets: arming it allocates
//! nothing and writes none of the runtime's pages (each would be a page copied in every run).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

use rquickjs::Runtime;

/// When the handler was installed: the deadline is counted from here.
static EPOCH: OnceLock<Instant> = OnceLock::new();
/// Nanoseconds after `EPOCH`; `u64::MAX` while no run is armed (the zygote).
static DEADLINE: AtomicU64 = AtomicU64::new(u64::MAX);

/// In the zygote: QuickJS asks the handler every so many operations whether to stop.
pub fn install(runtime: &Runtime) {
    let epoch = *EPOCH.get_or_init(Instant::now);
    runtime.set_interrupt_handler(Some(Box::new(move || passed(epoch))));
}

/// In the child: the run is interrupted once `deadline` passes.
pub fn arm(deadline: Instant) {
    let epoch = *EPOCH.get_or_init(Instant::now);
    let nanos = deadline.saturating_duration_since(epoch).as_nanos();
    DEADLINE.store(
        u64::try_from(nanos).unwrap_or(u64::MAX - 1),
        Ordering::Relaxed,
    );
}

fn passed(epoch: Instant) -> bool {
    let deadline = DEADLINE.load(Ordering::Relaxed);
    deadline != u64::MAX && epoch.elapsed().as_nanos() >= u128::from(deadline)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn unarmed_never_interrupts_and_armed_interrupts_after_the_deadline() {
        let epoch = *EPOCH.get_or_init(Instant::now);
        assert!(!passed(epoch));
        arm(Instant::now() + Duration::from_secs(3600));
        assert!(!passed(epoch));
        arm(Instant::now());
        assert!(passed(epoch));
        DEADLINE.store(u64::MAX, Ordering::Relaxed);
    }
}
