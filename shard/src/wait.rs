//! Two small single-threaded wake-up primitives for the tasks of one shard (no locks, no
//! atomics: everything here lives on one executor thread).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// A flag one task waits on and others raise (the committer waits for work; the timer task
/// waits for an earlier timer). Raising it with no waiter is remembered.
#[derive(Default)]
pub struct Notify {
    inner: RefCell<(bool, Option<Waker>)>,
}

impl Notify {
    /// Raises the flag and wakes the waiter, if any.
    pub fn notify(&self) {
        let mut inner = self.inner.borrow_mut();
        inner.0 = true;
        if let Some(waker) = inner.1.take() {
            waker.wake();
        }
    }

    /// Waits until the flag is raised, and lowers it.
    pub fn notified(&self) -> impl Future<Output = ()> + '_ {
        std::future::poll_fn(move |context: &mut Context<'_>| {
            let mut inner = self.inner.borrow_mut();
            if std::mem::take(&mut inner.0) {
                Poll::Ready(())
            } else {
                inner.1 = Some(context.waker().clone());
                Poll::Pending
            }
        })
    }
}

/// A value handed from one task to another once (a command's answer, after its commit).
pub struct Slot<T> {
    inner: Rc<RefCell<(Option<T>, Option<Waker>)>>,
}

impl<T> Clone for Slot<T> {
    fn clone(&self) -> Self {
        Slot {
            inner: self.inner.clone(),
        }
    }
}

impl<T> Default for Slot<T> {
    fn default() -> Self {
        Slot {
            inner: Rc::new(RefCell::new((None, None))),
        }
    }
}

impl<T> Slot<T> {
    /// Puts the value in and wakes the waiter, unless a value is there already and not yet
    /// taken (then it is kept).
    pub fn fill_if_empty(&self, value: T) {
        if self.inner.borrow().0.is_none() {
            self.fill(value);
        }
    }

    /// Whether a value is there, not yet taken.
    pub fn is_filled(&self) -> bool {
        self.inner.borrow().0.is_some()
    }

    /// Puts the value in and wakes the waiter.
    pub fn fill(&self, value: T) {
        let mut inner = self.inner.borrow_mut();
        inner.0 = Some(value);
        if let Some(waker) = inner.1.take() {
            waker.wake();
        }
    }
}

impl<T> Future for Slot<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        let mut inner = self.inner.borrow_mut();
        match inner.0.take() {
            Some(value) => Poll::Ready(value),
            None => {
                inner.1 = Some(context.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Tasks waiting for the same event (room in the open batch, new jobs, shutdown); all are
/// woken at once.
///
/// A wait that is dropped before the event (it lost a race in `or`, its task ended) takes
/// its waker out of the list, and a wait polled again replaces its waker instead of adding
/// one: the list holds at most one waker per live wait. (An earlier version pushed a waker
/// per poll and kept it until the next event; with a wait on shutdown raced against every
/// awaited result, each waker kept its finished task's memory alive until the server
/// stopped: about 1.2 KB per instance, found by `ringflow-bench run`.)
#[derive(Default)]
pub struct WaitList {
    wakers: RefCell<BTreeMap<u64, Waker>>,
    generation: Cell<u64>,
    next_id: Cell<u64>,
}

impl WaitList {
    /// Wakes every waiting task.
    pub fn wake_all(&self) {
        self.generation.set(self.generation.get() + 1);
        let wakers = std::mem::take(&mut *self.wakers.borrow_mut());
        for waker in wakers.into_values() {
            waker.wake();
        }
    }

    /// Waits for the next [`WaitList::wake_all`].
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            list: self,
            start: self.generation.get(),
            id: None,
        }
    }

    /// Wakers registered now (for tests).
    pub fn waiting(&self) -> usize {
        self.wakers.borrow().len()
    }
}

/// The future of [`WaitList::wait`].
pub struct Wait<'a> {
    list: &'a WaitList,
    start: u64,
    id: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<()> {
        let list = self.list;
        if list.generation.get() != self.start {
            self.id = None;
            return Poll::Ready(());
        }
        let id = match self.id {
            Some(id) => id,
            None => {
                let id = list.next_id.get();
                list.next_id.set(id + 1);
                self.id = Some(id);
                id
            }
        };
        list.wakers.borrow_mut().insert(id, context.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(id) = self.id {
            self.list.wakers.borrow_mut().remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        let mut context = Context::from_waker(Waker::noop());
        Pin::new(future).poll(&mut context)
    }

    #[test]
    fn a_wait_polled_often_holds_one_waker_and_a_dropped_one_none() {
        let list = WaitList::default();
        let mut first = list.wait();
        for _ in 0..100 {
            assert!(poll_once(&mut first).is_pending());
        }
        assert_eq!(list.waiting(), 1);
        let mut second = list.wait();
        assert!(poll_once(&mut second).is_pending());
        assert_eq!(list.waiting(), 2);
        drop(first);
        assert_eq!(list.waiting(), 1);
        // Many short waits that lose their race leave nothing behind.
        for _ in 0..1000 {
            let mut lost = list.wait();
            assert!(poll_once(&mut lost).is_pending());
        }
        assert_eq!(list.waiting(), 1);
        list.wake_all();
        assert_eq!(list.waiting(), 0);
        assert!(poll_once(&mut second).is_ready());
        // A wait made after the event waits for the next one.
        let mut third = list.wait();
        assert!(poll_once(&mut third).is_pending());
        list.wake_all();
        assert!(poll_once(&mut third).is_ready());
    }
}
