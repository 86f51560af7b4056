//! Broker destinations: an endpoint whose `url` is `nats://`, `amqp://` or
//! `redis://` gets the same message an HTTP endpoint would — the envelope
//! (or its transformation) as the payload, hookline's and the endpoint's
//! headers as the message's headers — published with the broker's own
//! acknowledgement, so an attempt succeeds only once the broker has the
//! message:
//!
//! - `nats://[user:pass@]host:port[/subject]`: a JetStream publish, acked by
//!   the stream that takes the subject (default: the event type), with
//!   `Nats-Msg-Id` = `<endpoint id>:<webhook-id>`, so a retry is deduplicated.
//! - `amqp://user:pass@host:port[/vhost][?exchange=…&routing_key=…]`: a
//!   persistent, mandatory publish with publisher confirms to `exchange`
//!   (default `amq.topic`) under `routing_key` (default: the event type); a
//!   message no queue takes is a failure, not a loss.
//! - `redis://[user:pass@]host:port[/db][?stream=…&maxlen=…]`: `XADD` to
//!   `stream` (default `hookline`), capped near `maxlen` (default 100,000)
//!   entries; each header is a field, and `body` the payload.
//!
//! Connections are made once per broker and shared by every attempt; one
//! that fails is dropped and made again by the next attempt, one unused for
//! ten minutes is let go. Their hosts
//! pass the same address check as HTTP hosts: a broker is connected to at an
//! address the policy permits, never by its name.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::config::NetworkPolicy;
use crate::domain::delivery::ErrorKind;

/// AMQP's exchange when the URL names none: a topic exchange every RabbitMQ has.
pub const AMQP_DEFAULT_EXCHANGE: &str = "amq.topic";
pub const REDIS_DEFAULT_STREAM: &str = "hookline";
pub const REDIS_DEFAULT_MAXLEN: u64 = 100_000;

pub type Failure = (ErrorKind, String);

/// Which kind of broker a URL names, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broker {
    Nats,
    Amqp,
    Redis,
}

impl Broker {
    pub fn of(url: &url::Url) -> Option<Broker> {
        match url.scheme() {
            "nats" => Some(Broker::Nats),
            "amqp" => Some(Broker::Amqp),
            "redis" => Some(Broker::Redis),
            _ => None,
        }
    }

    fn default_port(self) -> u16 {
        match self {
            Broker::Nats => 4222,
            Broker::Amqp => 5672,
            Broker::Redis => 6379,
        }
    }
}

/// What is published: one message.
pub struct Publication<'a> {
    pub event_type: &'a str,
    pub webhook_id: &'a str,
    /// The same on every attempt of one delivery (or batch), different for
    /// each endpoint: the event id alone would make JetStream drop the
    /// second endpoint's message on a shared stream as a duplicate.
    pub dedupe_id: String,
    pub headers: Vec<(String, String)>,
    pub body: &'a [u8],
}

/// The connections of one worker, by broker (its URL without what names
/// the destination within it).
#[derive(Default)]
pub struct Brokers {
    nats: Connections<async_nats::jetstream::Context>,
    amqp: Connections<lapin::Channel>,
    redis: Connections<redis::aio::ConnectionManager>,
}

/// One connection per key, made once however many attempts ask for it at
/// the same moment: the first batch of a drain would otherwise open one
/// per delivery (measured: 256 per worker, each AMQP one with 8 MiB of
/// buffers). One no attempt used for [`IDLE`] is let go, so endpoints
/// deleted or pointed elsewhere do not keep theirs.
struct Connections<T> {
    cells: Mutex<HashMap<String, Slot<T>>>,
}

/// A connection, or the place one is being made, and when it was last asked for.
type Slot<T> = (Arc<tokio::sync::OnceCell<T>>, Instant);

/// How long an unused broker connection is kept.
const IDLE: Duration = Duration::from_secs(600);

impl<T> Default for Connections<T> {
    fn default() -> Self {
        Self { cells: Mutex::default() }
    }
}

impl<T: Clone> Connections<T> {
    /// The connection of `key`, made by `connect` if there is none (a
    /// failure leaves none, so the next attempt connects again).
    async fn get<F, Fut>(&self, key: &str, connect: F) -> Result<T, Failure>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<T, Failure>>,
    {
        let cell = {
            let mut cells = self.cells.lock().expect("not poisoned");
            let now = Instant::now();
            cells.retain(|_, (_, used)| now.duration_since(*used) < IDLE);
            let (cell, used) = cells.entry(key.to_owned()).or_insert_with(|| (Arc::default(), now));
            *used = now;
            cell.clone()
        };
        cell.get_or_try_init(connect).await.cloned()
    }

    /// Drops a connection that failed: the next attempt makes a new one.
    fn forget(&self, key: &str) {
        self.cells.lock().expect("not poisoned").remove(key);
    }
}

impl Brokers {
    /// Publishes to `url`, of `broker`; the error says what failed.
    pub async fn publish(
        &self,
        broker: Broker,
        policy: &NetworkPolicy,
        url: &url::Url,
        message: &Publication<'_>,
    ) -> Result<(), Failure> {
        match broker {
            Broker::Nats => self.publish_nats(policy, url, message).await,
            Broker::Amqp => self.publish_amqp(policy, url, message).await,
            Broker::Redis => self.publish_redis(policy, url, message).await,
        }
    }

    async fn publish_nats(&self, policy: &NetworkPolicy, url: &url::Url, m: &Publication<'_>) -> Result<(), Failure> {
        let key = connection_url(url, Broker::Nats).to_string();
        let context = self
            .nats
            .get(&key, || async {
                let address = connect_url(policy, url, Broker::Nats).await?;
                // No retry of the first connection: a broker that is down is
                // a connect failure now, and the delivery's retry tries again.
                // Only the checked address, never the servers a server names
                // (they would bypass the address policy).
                let mut options = async_nats::ConnectOptions::new()
                    .max_reconnects(None)
                    .ignore_discovered_servers()
                    .retain_servers_order();
                // The client takes credentials from its options only.
                let decoded = |s: &str| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned();
                match (url.username(), url.password()) {
                    ("", _) => {}
                    (user, Some(password)) => options = options.user_and_password(decoded(user), decoded(password)),
                    (token, None) => options = options.token(decoded(token)),
                }
                let client = options
                    .connect(address.as_str())
                    .await
                    .map_err(|e| (ErrorKind::Connect, format!("cannot connect to NATS: {e}")))?;
                Ok(async_nats::jetstream::new(client))
            })
            .await?;
        let subject = match url.path().trim_start_matches('/') {
            "" => m.event_type.to_owned(),
            subject => subject.to_owned(),
        };
        let mut headers = async_nats::HeaderMap::new();
        for (name, value) in &m.headers {
            headers.insert(name.as_str(), value.as_str());
        }
        headers.insert("Nats-Msg-Id", m.dedupe_id.as_str());
        let failed = |e: async_nats::jetstream::context::PublishError| {
            use async_nats::jetstream::context::PublishErrorKind as Kind;
            let kind = match e.kind() {
                Kind::TimedOut => ErrorKind::Timeout,
                Kind::BrokenPipe => ErrorKind::Connect,
                _ => ErrorKind::BrokerRejected,
            };
            (kind, format!("JetStream did not store the message on `{subject}`: {e}"))
        };
        let ack = context
            .publish_with_headers(subject.clone(), headers, bytes::Bytes::copy_from_slice(m.body))
            .await
            .map_err(failed)?;
        ack.await.map(|_| ()).map_err(failed)
    }

    async fn publish_amqp(&self, policy: &NetworkPolicy, url: &url::Url, m: &Publication<'_>) -> Result<(), Failure> {
        use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
        use lapin::types::{AMQPValue, FieldTable, ShortString};

        // With the query: publishing to an exchange that does not exist
        // closes the channel, which must not fail other exchanges' messages.
        let key = url.to_string();
        let connect = || async {
            let address = connect_url(policy, url, Broker::Amqp).await?;
            let failed = |e: lapin::Error| (ErrorKind::Connect, format!("cannot connect to AMQP: {e}"));
            let connection = lapin::Connection::connect(address.as_str(), lapin::ConnectionProperties::default())
                .await
                .map_err(failed)?;
            let channel = connection.create_channel().await.map_err(failed)?;
            channel.confirm_select(ConfirmSelectOptions::default()).await.map_err(failed)?;
            Ok(channel)
        };
        let mut channel = self.amqp.get(&key, connect).await?;
        if !channel.status().connected() {
            self.amqp.forget(&key);
            channel = self.amqp.get(&key, connect).await?;
        }
        let query: HashMap<_, _> = url.query_pairs().collect();
        let exchange = query.get("exchange").map_or(AMQP_DEFAULT_EXCHANGE, |e| e.as_ref());
        let routing_key = query.get("routing_key").map_or(m.event_type, |k| k.as_ref());
        let mut headers = FieldTable::default();
        for (name, value) in &m.headers {
            headers.insert(ShortString::from(name.as_str()), AMQPValue::LongString(value.as_str().into()));
        }
        let properties = lapin::BasicProperties::default()
            .with_headers(headers)
            .with_message_id(m.webhook_id.into())
            .with_content_type(content_type(m).into())
            .with_delivery_mode(2);
        let options = BasicPublishOptions { mandatory: true, ..Default::default() };
        let lost = |e: lapin::Error| {
            // The channel is closed either way: the next attempt opens another.
            self.amqp.forget(&key);
            // A channel-level refusal (no such exchange, access refused) is the
            // broker answering, not the broker being down.
            let kind = if e.is_amqp_soft_error() { ErrorKind::BrokerRejected } else { ErrorKind::Connect };
            (kind, format!("cannot publish to AMQP: {e}"))
        };
        let confirm = channel
            .basic_publish(exchange.into(), routing_key.into(), options, m.body, properties)
            .await
            .map_err(lost)?
            .await
            .map_err(lost)?;
        match confirm {
            lapin::Confirmation::Ack(None) => Ok(()),
            lapin::Confirmation::Ack(Some(_)) => Err((
                ErrorKind::BrokerRejected,
                format!("no queue takes routing key `{routing_key}` on exchange `{exchange}`"),
            )),
            other => Err((ErrorKind::BrokerRejected, format!("the broker did not confirm the message: {other:?}"))),
        }
    }

    async fn publish_redis(&self, policy: &NetworkPolicy, url: &url::Url, m: &Publication<'_>) -> Result<(), Failure> {
        let key = connection_url(url, Broker::Redis).to_string();
        let mut connection = self
            .redis
            .get(&key, || async {
                let address = connect_url(policy, url, Broker::Redis).await?;
                let failed = |e: redis::RedisError| (ErrorKind::Connect, format!("cannot connect to Redis: {e}"));
                let client = redis::Client::open(address.as_str()).map_err(failed)?;
                // No retries of the first connection (six by default, with
                // backoff): a Redis that is down is a connect failure now.
                let config = redis::aio::ConnectionManagerConfig::new().set_number_of_retries(0);
                redis::aio::ConnectionManager::new_with_config(client, config).await.map_err(failed)
            })
            .await?;
        let query: HashMap<_, _> = url.query_pairs().collect();
        let stream = query.get("stream").map_or(REDIS_DEFAULT_STREAM, |s| s.as_ref());
        let maxlen = query.get("maxlen").and_then(|n| n.parse().ok()).unwrap_or(REDIS_DEFAULT_MAXLEN);
        let mut command = redis::cmd("XADD");
        command.arg(stream).arg("MAXLEN").arg("~").arg(maxlen).arg("*");
        for (name, value) in &m.headers {
            command.arg(name).arg(value);
        }
        command.arg("body").arg(m.body);
        command.query_async::<String>(&mut connection).await.map(|_| ()).map_err(|e| {
            let kind = if e.is_io_error() || e.is_connection_dropped() {
                ErrorKind::Connect
            } else {
                ErrorKind::BrokerRejected
            };
            (kind, format!("XADD to `{stream}` failed: {e}"))
        })
    }
}

fn content_type<'a>(m: &'a Publication<'_>) -> &'a str {
    m.headers.iter().find(|(name, _)| name == "content-type").map_or("application/json", |(_, v)| v.as_str())
}

/// The part of a broker URL that names one connection: for AMQP and Redis
/// with its path (the vhost, the database), for NATS without (the subject).
fn connection_url(url: &url::Url, broker: Broker) -> url::Url {
    let mut connection = url.clone();
    connection.set_query(None);
    if broker == Broker::Nats {
        connection.set_path("");
    }
    connection
}

/// The URL to connect to: the host replaced by an address the policy
/// permits, resolved here so that no client library resolves it itself.
async fn connect_url(policy: &NetworkPolicy, url: &url::Url, broker: Broker) -> Result<String, Failure> {
    let host = url.host_str().ok_or((ErrorKind::InvalidUrl, "the URL has no host".to_owned()))?;
    let port = url.port().unwrap_or(broker.default_port());
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let resolved: Vec<SocketAddr> =
        tokio::time::timeout(Duration::from_secs(10), tokio::net::lookup_host((host, port)))
            .await
            .map_err(|_| (ErrorKind::Dns, format!("resolving {host} timed out")))?
            .map_err(|e| (ErrorKind::Dns, format!("cannot resolve {host}: {e}")))?
            .collect();
    let address = resolved
        .into_iter()
        .find(|a| policy.permits(a.ip()))
        .ok_or_else(|| (ErrorKind::BlockedAddress, format!("{host} resolves only to blocked addresses")))?;
    let mut connect = connection_url(url, broker);
    if broker == Broker::Nats {
        // Given to the client as options instead (see publish_nats).
        let _ = connect.set_username("");
        let _ = connect.set_password(None);
    }
    connect.set_ip_host(address.ip()).map_err(|()| (ErrorKind::InvalidUrl, "cannot set the address".to_owned()))?;
    connect.set_port(Some(address.port())).map_err(|()| (ErrorKind::InvalidUrl, "cannot set the port".to_owned()))?;
    Ok(connect.to_string())
}

/// Shared by a worker's dispatchers.
pub type SharedBrokers = Arc<Brokers>;
