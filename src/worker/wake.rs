//! Wake-ups for the claim loop: a dedicated LISTEN connection (a pooled one
//! would drop notifications) that reconnects with backoff. Notifications are
//! hints; the claim loop also polls, so one missed while reconnecting costs at
//! most one poll interval.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, watch};
use tokio_postgres::AsyncMessage;

pub const WAKE_CHANNEL: &str = "hookline_wake";

/// Runs until shutdown, calling `wake.notify_one()` per notification. Bursts
/// collapse: `Notify` stores at most one pending wake-up.
pub async fn listen(config: tokio_postgres::Config, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(_)) => {
                                if tx.send(()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, "listen connection failed");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {WAKE_CHANNEL}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        // We may have missed notifications while disconnected.
                        wake.notify_one();
                        loop {
                            tokio::select! {
                                message = rx.recv() => match message {
                                    Some(()) => wake.notify_one(),
                                    None => break,
                                },
                                _ = shutdown.changed() => break,
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(error) => tracing::warn!(%error, retry_in = ?backoff, "cannot connect for LISTEN"),
        }
        if *shutdown.borrow() {
            break;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.changed() => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}
