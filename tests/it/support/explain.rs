//! Plans as auto_explain reports them, for tests that a statement reads the
//! index, or the partitions, it should.

use tokio::sync::mpsc::UnboundedReceiver;

use super::db::TestDb;

/// A connection outside the pool whose every statement's plan (nested ones
/// too) comes back as a notice.
pub struct Explaining {
    pub client: tokio_postgres::Client,
    notices: UnboundedReceiver<String>,
}

impl Explaining {
    pub async fn connect(db: &TestDb) -> Self {
        let (client, mut connection) = tokio_postgres::connect(&db.url, tokio_postgres::NoTls).await.unwrap();
        let (tx, notices) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(message) = std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                if let Ok(tokio_postgres::AsyncMessage::Notice(notice)) = message {
                    let _ = tx.send(notice.message().to_owned());
                }
            }
        });
        client
            .batch_execute(
                "LOAD 'auto_explain';
                 SET auto_explain.log_min_duration = 0;
                 SET auto_explain.log_nested_statements = on;
                 SET auto_explain.log_level = notice",
            )
            .await
            .unwrap();
        Explaining { client, notices }
    }

    /// The plans of everything run on the connection, which it closes.
    pub async fn plans(self) -> String {
        let Explaining { client, mut notices } = self;
        drop(client);
        let mut plans = String::new();
        while let Some(notice) = notices.recv().await {
            plans.push_str(&notice);
        }
        plans
    }
}
