//! Two small single-threaded wake-up primitives for the tasks of one shard (no locks, no
//! atomics: everything here lives on one executor thread).

use std::cell::RefCell;
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

/// Tasks waiting for the same event (room in the open batch); all are woken at once.
#[derive(Default)]
pub struct WaitList {
    wakers: RefCell<Vec<Waker>>,
    generation: std::cell::Cell<u64>,
}

impl WaitList {
    /// Wakes every waiting task.
    pub fn wake_all(&self) {
        self.generation.set(self.generation.get() + 1);
        for waker in self.wakers.borrow_mut().drain(..) {
            waker.wake();
        }
    }

    /// Waits for the next [`WaitList::wake_all`].
    pub fn wait(&self) -> impl Future<Output = ()> + '_ {
        let start = self.generation.get();
        std::future::poll_fn(move |context: &mut Context<'_>| {
            if self.generation.get() != start {
                Poll::Ready(())
            } else {
                self.wakers.borrow_mut().push(context.waker().clone());
                Poll::Pending
            }
        })
    }
}
