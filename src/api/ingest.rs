//! Batches concurrent `POST /v1/events` into shared transactions: each event
//! in its own transaction costs a commit (a WAL flush) and a fan-out statement
//! apiece, which caps ingestion far below what PostgreSQL can take. Requests
//! that arrive while a batch is being written form the next one, so a lone
//! request waits for nobody, and every request is answered only after its
//! batch committed.

use std::sync::atomic::{AtomicUsize, Ordering};

use deadpool_postgres::Pool;
use tokio::sync::{mpsc, oneshot};

use crate::db;
use crate::db::events::{Event, OwnedEvent};

/// Events per transaction at most.
const BATCH_MAX: usize = 256;
/// Transactions written at once (each by its own task and connection).
const WRITERS: usize = 4;

type Reply = oneshot::Sender<Result<(Event, bool), db::Error>>;

pub struct Ingest {
    writers: Vec<mpsc::Sender<(OwnedEvent, Reply)>>,
    next: AtomicUsize,
}

impl Ingest {
    /// Starts the writer tasks (needs a running Tokio runtime).
    pub fn start(pool: Pool) -> Self {
        let writers = (0..WRITERS)
            .map(|_| {
                let (tx, rx) = mpsc::channel(BATCH_MAX * 4);
                tokio::spawn(write_batches(pool.clone(), rx));
                tx
            })
            .collect();
        Ingest { writers, next: AtomicUsize::new(0) }
    }

    /// Stores the event (with the others of its batch); returns it and whether
    /// it is new (false: its idempotency key was used before).
    pub async fn insert(&self, event: OwnedEvent) -> Result<(Event, bool), db::Error> {
        let (reply, answer) = oneshot::channel();
        let writer = &self.writers[self.next.fetch_add(1, Ordering::Relaxed) % self.writers.len()];
        if writer.send((event, reply)).await.is_err() {
            return Err(db::Error::Unavailable);
        }
        answer.await.unwrap_or(Err(db::Error::Unavailable))
    }
}

async fn write_batches(pool: Pool, mut requests: mpsc::Receiver<(OwnedEvent, Reply)>) {
    let mut batch = Vec::with_capacity(BATCH_MAX);
    while requests.recv_many(&mut batch, BATCH_MAX).await > 0 {
        let (events, replies): (Vec<OwnedEvent>, Vec<Reply>) = batch.drain(..).unzip();
        match write(&pool, &events).await {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(Ok(result));
                }
            }
            // One bad event (or a lost connection) must not fail the others:
            // write each alone, so each request gets its own answer.
            Err(_) if events.len() > 1 => {
                for (event, reply) in events.into_iter().zip(replies) {
                    let result = write(&pool, std::slice::from_ref(&event)).await;
                    let _ = reply.send(result.map(|mut r| r.remove(0)));
                }
            }
            Err(error) => {
                if let Some(reply) = replies.into_iter().next() {
                    let _ = reply.send(Err(error));
                }
            }
        }
    }
}

async fn write(pool: &Pool, events: &[OwnedEvent]) -> Result<Vec<(Event, bool)>, db::Error> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let results = db::events::insert_many(&tx, events).await?;
    tx.commit().await?;
    Ok(results)
}
