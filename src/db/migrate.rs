//! `hookline migrate`: refinery migrations (tables), then the re-appliable SQL
//! objects of `sql/` (functions, triggers, views) in one transaction, all under
//! an advisory lock so processes starting together take turns.

use sha2::{Digest, Sha256};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// `(file name, contents)` of each file of `sql/`, embedded in the binary.
macro_rules! sql_objects {
    ($($file:literal),* $(,)?) => { &[$(($file, include_str!(concat!("../../sql/", $file)))),*] };
}

/// The files of `sql/`, applied in this order after the migrations.
const SQL_OBJECTS: &[(&str, &str)] = sql_objects![
    "010_event_type_matches.sql",
    "020_events.sql",
    "025_event_types.sql",
    "030_send.sql",
    "040_endpoints.sql",
    "050_lease_batches.sql",
    "055_lifecycle.sql",
    "058_ordering.sql",
    "060_claim_deliveries.sql",
    "065_batching.sql",
    "080_stats_rollups.sql",
    "090_sources.sql",
    "100_endpoint_health.sql",
    "110_endpoint_stats_24h.sql",
    "120_queue_stats.sql",
    "130_delivery_stats_hourly.sql",
    "140_source_stats.sql",
    "150_changes.sql",
    "160_partitions.sql",
    "170_latency_percentiles.sql",
];

/// Arbitrary, fixed: "hookline" in ASCII.
const MIGRATE_LOCK_KEY: i64 = 0x686f_6f6b_6c69_6e65;

pub async fn migrate(client: &mut tokio_postgres::Client) -> super::Result<()> {
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATE_LOCK_KEY]).await?;
    let result = apply(client).await;
    // The lock is session-level; release it even when applying failed.
    let unlock = client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATE_LOCK_KEY]).await;
    result?;
    unlock?;
    Ok(())
}

/// The schema an older hookline left: the migrations up to `version`, then
/// the SQL objects (for tests of upgrading).
#[doc(hidden)]
pub async fn migrate_until(client: &mut tokio_postgres::Client, version: i32) -> super::Result<()> {
    embedded::migrations::runner().set_target(refinery::Target::Version(version)).run_async(client).await?;
    // Each file in a savepoint: those that need a later migration's tables
    // did not exist yet at that version, and are left out.
    let mut tx = client.transaction().await?;
    tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
    for (_, sql) in SQL_OBJECTS {
        let savepoint = tx.savepoint("sql_object").await?;
        match savepoint.batch_execute(sql).await {
            Ok(()) => savepoint.commit().await?,
            Err(_) => savepoint.rollback().await?,
        }
    }
    tx.commit().await?;
    Ok(())
}

async fn apply(client: &mut tokio_postgres::Client) -> super::Result<()> {
    prove_partition_bounds(client).await?;
    let report = embedded::migrations::runner().run_async(client).await?;
    for migration in report.applied_migrations() {
        tracing::info!(migration = %migration, "applied migration");
    }
    apply_sql_objects(client).await
}

async fn apply_sql_objects(client: &mut tokio_postgres::Client) -> super::Result<()> {
    let tx = client.transaction().await?;
    // The DROP … IF EXISTS lines would each print a NOTICE on first install.
    tx.batch_execute("SET LOCAL client_min_messages = warning").await?;
    for (_, sql) in SQL_OBJECTS {
        tx.batch_execute(sql).await?;
    }
    tx.commit().await?;
    Ok(())
}

/// The history tables migration V19 partitions, with their partition keys.
const HISTORY_TABLES: [(&str, &str); 4] =
    [("events", "id"), ("deliveries", "id"), ("attempts", "delivery_id"), ("batch_attempts", "id")];

/// Before V19 turns an existing table into the first partition of its new
/// parent, proves that every row lies below the partition bound: a CHECK
/// added NOT VALID (new rows are checked from then on) and validated in a
/// transaction of its own, which reads the table without blocking writers.
/// V19 then attaches it without reading it again under its lock. Each step
/// is skipped when done, so an interrupted `migrate` resumes. The bound is
/// the start of the day after tomorrow (UTC), as in V19.
async fn prove_partition_bounds(client: &mut tokio_postgres::Client) -> super::Result<()> {
    for (table, key) in HISTORY_TABLES {
        let plain: bool = client
            .query_one(
                "SELECT coalesce((SELECT relkind = 'r' FROM pg_class WHERE oid = to_regclass($1)), false)",
                &[&format!("hookline.{table}")],
            )
            .await?
            .get(0);
        if !plain {
            continue;
        }
        let bound = format!("{table}_below_partitions");
        // A bound left by a migrate that stopped before V19 is renewed when
        // it is less than a day ahead: new rows at or past it are refused.
        client
            .batch_execute(&format!(
                "DO $$
                 DECLARE
                     bound uuid;
                 BEGIN
                     SELECT substring(pg_get_constraintdef(oid) FROM '''([0-9a-f-]{{36}})''')::uuid INTO bound
                       FROM pg_constraint WHERE conrelid = 'hookline.{table}'::regclass AND conname = '{bound}';
                     IF bound < hookline.uuid_v7_floor(now() + interval '1 day') THEN
                         ALTER TABLE hookline.{table} DROP CONSTRAINT {bound};
                         bound := NULL;
                     END IF;
                     IF bound IS NULL THEN
                         EXECUTE format('ALTER TABLE hookline.{table} ADD CONSTRAINT {bound} CHECK ({key} < %L::uuid) NOT VALID',
                                        hookline.uuid_v7_floor(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'
                                                               + interval '2 days'));
                     END IF;
                 END $$"
            ))
            .await?;
        client.batch_execute(&format!("ALTER TABLE hookline.{table} VALIDATE CONSTRAINT {bound}")).await?;
    }
    Ok(())
}

/// A hash of every migration and SQL object this binary would apply: tests
/// name their template database after it, so a schema change builds a fresh one.
pub fn schema_fingerprint() -> String {
    let mut hash = Sha256::new();
    for m in embedded::migrations::runner().get_migrations() {
        hash.update(m.to_string().as_bytes());
        hash.update(m.checksum().to_le_bytes());
    }
    for (name, sql) in SQL_OBJECTS {
        hash.update(name.as_bytes());
        hash.update(sql.as_bytes());
    }
    hash.finalize().iter().take(6).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_file_of_sql_is_applied_in_order() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/sql");
        let mut on_disk: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        on_disk.sort();
        let applied: Vec<&str> = super::SQL_OBJECTS.iter().map(|(name, _)| *name).collect();
        assert_eq!(applied, on_disk);
    }
}
