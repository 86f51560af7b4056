//! LISTEN on one channel over a dedicated connection (a pooled one would
//! drop notifications), reconnecting with backoff. Notifications are hints
//! to their listeners: each one says something changed, and a reconnection
//! says that something may have changed unheard.

use std::time::Duration;

use tokio::sync::watch;
use tokio_postgres::AsyncMessage;

/// What the listener hears.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heard<'a> {
    /// (Re)connected: notifications sent while disconnected were missed.
    Connected,
    /// A notification with its payload.
    Notification(&'a str),
}

/// Runs until shutdown, calling `on` for every connection made and every
/// notification on `channel`.
pub async fn listen(
    config: tokio_postgres::Config,
    channel: &'static str,
    mut on: impl FnMut(Heard<'_>) + Send,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_millis(100);
    while !*shutdown.borrow() {
        match config.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
                let driver = tokio::spawn(async move {
                    while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                        match message {
                            Ok(AsyncMessage::Notification(notification)) => {
                                if tx.send(notification).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(error) => {
                                tracing::warn!(%error, channel, "listen connection failed");
                                break;
                            }
                        }
                    }
                });
                match client.batch_execute(&format!("LISTEN {channel}")).await {
                    Ok(()) => {
                        backoff = Duration::from_millis(100);
                        on(Heard::Connected);
                        loop {
                            tokio::select! {
                                message = rx.recv() => match message {
                                    Some(notification) => on(Heard::Notification(notification.payload())),
                                    None => break,
                                },
                                _ = shutdown.changed() => break,
                            }
                        }
                    }
                    Err(error) => tracing::warn!(%error, channel, "LISTEN failed"),
                }
                driver.abort();
            }
            Err(error) => tracing::warn!(%error, channel, retry_in = ?backoff, "cannot connect for LISTEN"),
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
