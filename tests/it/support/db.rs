//! One database per test, cloned from a template migrated once per schema
//! version (named after `db::schema_fingerprint()`), so tests run in parallel
//! and see exact counts. The admin server is `HOOKLINE_TEST_DATABASE_URL`, else
//! `DATABASE_URL`, else 127.0.0.1:5432; if none answers, a throwaway cluster
//! is started from the local PostgreSQL binaries for this test process.

use deadpool_postgres::Pool;
use tokio::sync::OnceCell;
use tokio_postgres::NoTls;

static ADMIN_URL: OnceCell<String> = OnceCell::const_new();
static TEMPLATE: OnceCell<String> = OnceCell::const_new();

pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: Pool,
    admin_url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        let admin_url = admin_url().await.to_owned();
        let template = template().await;
        let name = format!("hl_test_{}", uuid::Uuid::new_v4().simple());
        let admin = connect(&admin_url).await;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\" STRATEGY FILE_COPY"))
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        let pool = hookline::db::pool(&url, 8).unwrap();
        TestDb { name, url, pool, admin_url }
    }

    /// A database with nothing in it, for tests of migrating.
    pub async fn empty() -> Self {
        let admin_url = admin_url().await.to_owned();
        let name = format!("hl_test_{}", uuid::Uuid::new_v4().simple());
        connect(&admin_url)
            .await
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await
            .expect("create test database");
        let url = with_database(&admin_url, &name);
        let pool = hookline::db::pool(&url, 8).unwrap();
        TestDb { name, url, pool, admin_url }
    }

    pub async fn client(&self) -> deadpool_postgres::Object {
        self.pool.get().await.expect("test database connection")
    }

    /// A connection outside the pool, for explicit transactions.
    pub async fn connect(&self) -> tokio_postgres::Client {
        connect(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test failed: its database is kept: {}", self.url);
            return;
        }
        let (admin_url, name) = (self.admin_url.clone(), self.name.clone());
        // Drop cannot await, and may run inside a runtime: use a thread of its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async {
                if let Ok((client, connection)) = tokio_postgres::connect(&admin_url, NoTls).await {
                    tokio::spawn(connection);
                    let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await;
                }
            });
        })
        .join();
    }
}

pub async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect {url}: {e}"));
    tokio::spawn(connection);
    client
}

fn with_database(url: &str, name: &str) -> String {
    let mut parsed: url::Url = url.parse().expect("admin URL");
    parsed.set_path(name);
    parsed.to_string()
}

async fn admin_url() -> &'static str {
    ADMIN_URL
        .get_or_init(|| async {
            let configured =
                std::env::var("HOOKLINE_TEST_DATABASE_URL").or_else(|_| std::env::var("DATABASE_URL")).ok();
            if let Some(url) = configured.filter(|u| !u.is_empty()) {
                return url;
            }
            let default = "postgres://postgres@127.0.0.1:5432/postgres".to_owned();
            if tokio_postgres::connect(&default, NoTls).await.is_ok() {
                return default;
            }
            start_throwaway_cluster()
        })
        .await
}

fn start_throwaway_cluster() -> String {
    let dir = std::env::temp_dir().join(format!("hookline-test-pg-{}", std::process::id()));
    let settings =
        [("fsync", "off"), ("synchronous_commit", "off"), ("full_page_writes", "off"), ("max_connections", "300")];
    let server = hookline::pg_local::LocalPostgres::start(&dir, &settings)
        .expect("no PostgreSQL reachable and none could be started from local binaries");
    server.stop_when_process_exits(std::process::id(), &dir).expect("watchdog");
    server.url("postgres")
}

async fn template() -> &'static str {
    TEMPLATE
        .get_or_init(|| async {
            let name = format!("hl_tpl_{}", hookline::db::schema_fingerprint());
            let admin = connect(admin_url().await).await;
            // nextest runs each test in its own process: serialise template builds.
            admin.execute("SELECT pg_advisory_lock(hashtext($1))", &[&name]).await.unwrap();
            let exists = admin.query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&name]).await.unwrap();
            if exists.is_none() {
                let building = format!("{name}_build");
                admin.batch_execute(&format!("DROP DATABASE IF EXISTS \"{building}\"")).await.unwrap();
                admin.batch_execute(&format!("CREATE DATABASE \"{building}\"")).await.unwrap();
                let template_url = with_database(admin_url().await, &building);
                let (mut client, connection) = tokio_postgres::connect(&template_url, NoTls).await.unwrap();
                let connection = tokio::spawn(connection);
                hookline::db::migrate(&mut client).await.expect("migrate template");
                // A template may have no sessions: close this one before renaming.
                drop(client);
                let _ = connection.await;
                admin
                    .batch_execute(&format!(
                        "ALTER DATABASE \"{building}\" RENAME TO \"{name}\"; ALTER DATABASE \"{name}\" IS_TEMPLATE true"
                    ))
                    .await
                    .unwrap();
            }
            admin.execute("SELECT pg_advisory_unlock(hashtext($1))", &[&name]).await.unwrap();
            name
        })
        .await
}
