//! Folding the statistics' pending deltas into the hourly rollups (see
//! `sql/080_stats_rollups.sql` for the invariant that keeps them exact).

use deadpool_postgres::GenericClient;

use super::Result;

/// Folds every pending delta unless another session is folding right now
/// (then returns no row): workers call it about once a second and never
/// wait on one another here.
pub const ROLLUP_FOLD: &str = "
SELECT hookline.fold_rollup_deltas() WHERE pg_try_advisory_xact_lock($1)";

/// Arbitrary, fixed: "hl-fold" in ASCII.
const FOLD_LOCK_KEY: i64 = 0x0068_6c2d_666f_6c64;

/// Returns how many delta rows were folded (`None`: another session was folding).
pub async fn fold(db: &impl GenericClient) -> Result<Option<i64>> {
    Ok(db.query_opt(&db.prepare_cached(ROLLUP_FOLD).await?, &[&FOLD_LOCK_KEY]).await?.map(|r| r.get(0)))
}
