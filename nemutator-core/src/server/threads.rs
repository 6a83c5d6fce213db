//! Connection threads: one single-threaded tokio runtime per thread, with
//! accepted connections dealt to them in turn.
//!
//! On the admission path a request is a few tens of microseconds of work, so
//! what a multi-threaded runtime adds per request (waking a second worker to
//! steal, parking it again on a condition variable, moving the task between
//! cores) is a large share of it when requests arrive one by one. Here a
//! connection lives on one thread from its handshake to its end: its socket
//! is polled by that thread's own reactor and its requests run there, with no
//! cross-thread wake-up. HTTP/2 streams, which hyper spawns as tasks of their
//! own, go through [`ConnectionThreads::executor`] and are dealt across the
//! threads too, so a single multiplexed connection from the API server still
//! uses every core.

use std::future::Future;
use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// A set of threads each running a current-thread tokio runtime (I/O and
/// time enabled). Dropping it stops the runtimes: tasks still running on
/// them are cancelled.
#[derive(Debug)]
pub struct ConnectionThreads {
    inner: Arc<Inner>,
    stops: Vec<oneshot::Sender<()>>,
}

#[derive(Debug)]
struct Inner {
    handles: Vec<Handle>,
    next: AtomicUsize,
}

impl Inner {
    fn next(&self) -> &Handle {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        &self.handles[i]
    }
}

impl ConnectionThreads {
    /// Start `n` threads (at least one) named `{name}-{i}`.
    pub fn start(n: usize, name: &str) -> io::Result<Self> {
        let n = n.max(1);
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(runtime.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    // Runs spawned tasks until told to stop (or the sender is gone).
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(ConnectionThreads {
            inner: Arc::new(Inner {
                handles,
                next: AtomicUsize::new(0),
            }),
            stops,
        })
    }

    /// One thread per available core.
    pub fn per_core(name: &str) -> io::Result<Self> {
        let n = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self::start(n, name)
    }

    /// How many threads there are.
    pub fn len(&self) -> usize {
        self.inner.handles.len()
    }

    /// Never true: there is at least one thread.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Run `task` on the next thread in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        drop(self.inner.next().spawn(task));
    }

    /// An executor for hyper (HTTP/2 streams) that deals its tasks across
    /// these threads.
    pub fn executor(&self) -> Executor {
        Executor {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for ConnectionThreads {
    fn drop(&mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
    }
}

/// A [`hyper::rt::Executor`] over [`ConnectionThreads`]. It keeps the
/// runtimes' handles, not the threads: once the threads are stopped, futures
/// given to it are dropped without running.
#[derive(Clone, Debug)]
pub struct Executor {
    inner: Arc<Inner>,
}

impl<F> hyper::rt::Executor<F> for Executor
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        drop(self.inner.next().spawn(fut));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;
    use std::sync::Mutex;

    #[test]
    fn tasks_are_dealt_to_every_thread_in_turn() {
        let threads = ConnectionThreads::start(3, "test-conn").unwrap();
        assert_eq!(threads.len(), 3);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..6 {
            let seen = seen.clone();
            let tx = tx.clone();
            threads.spawn(async move {
                let name = std::thread::current().name().unwrap_or("").to_string();
                seen.lock().unwrap().push(name);
                tx.send(()).unwrap();
            });
        }
        for _ in 0..6 {
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
        }
        let seen = seen.lock().unwrap();
        let names: BTreeSet<&str> = seen.iter().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["test-conn-0", "test-conn-1", "test-conn-2"])
        );
        for name in &names {
            assert_eq!(seen.iter().filter(|n| n == name).count(), 2, "{name}");
        }
    }

    #[test]
    fn the_executor_runs_futures_on_the_threads() {
        let threads = ConnectionThreads::start(2, "test-exec").unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let exec = threads.executor();
        for _ in 0..2 {
            let tx = tx.clone();
            hyper::rt::Executor::execute(&exec, async move {
                // Timers work: the runtimes have time enabled.
                tokio::time::sleep(std::time::Duration::from_millis(1)).await;
                tx.send(std::thread::current().name().unwrap_or("").to_string())
                    .unwrap();
            });
        }
        let mut names: Vec<String> = (0..2)
            .map(|_| rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["test-exec-0", "test-exec-1"]);
    }

    #[test]
    fn dropping_stops_the_threads_and_cancels_their_tasks() {
        let threads = ConnectionThreads::start(1, "test-stop").unwrap();
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        threads.spawn(async move {
            started_tx.send(()).unwrap();
            std::future::pending::<()>().await;
            drop(done_tx);
        });
        started_rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .unwrap();
        drop(threads);
        // The task is dropped with its runtime, which drops its sender.
        assert_eq!(
            done_rx.recv_timeout(std::time::Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
