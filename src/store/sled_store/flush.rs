//! Flushes shared by concurrent writers (group commit): a writer takes a ticket after applying
//! its batch and waits until a flush that started after its apply has finished, so many writers
//! pay for one flush.

use std::sync::{Condvar, Mutex};

use crate::store::StoreError;

#[derive(Default)]
pub(super) struct GroupFlush {
    /// (tickets handed out, tickets known flushed, a flush running).
    state: Mutex<(u64, u64, bool)>,
    done: Condvar,
}

impl GroupFlush {
    pub(super) fn ticket(&self) -> u64 {
        // The state is three counters: still consistent after a panic elsewhere.
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.0 += 1;
        s.0
    }

    /// Waits until `ticket` is flushed, running the flush (`flush`) itself when none is running.
    pub(super) fn wait(&self, ticket: u64, flush: &dyn Fn() -> Result<(), StoreError>) -> Result<(), StoreError> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if s.1 >= ticket {
                return Ok(());
            }
            if !s.2 {
                s.2 = true;
                let target = s.0;
                drop(s);
                let result = flush();
                s = self.state.lock().unwrap_or_else(|p| p.into_inner());
                s.2 = false;
                if result.is_ok() {
                    s.1 = s.1.max(target);
                }
                self.done.notify_all();
                result?;
            } else {
                s = self.done.wait(s).unwrap_or_else(|p| p.into_inner());
            }
        }
    }
}
