//! The SQL of each store operation: one statement each, run on the pool
//! (claim, complete, release, renew, purge) or in the caller's transaction
//! (complete, in the transactional mode).
//!
//! Every statement reads the time from the database, as
//! `statement_timestamp()`: one reading per statement (so every comparison
//! in it agrees), taken when the statement starts, also inside a longer
//! transaction (where `now()` would be the transaction's start). App servers
//! with skewed clocks therefore agree on every lease and expiry.
//!
//! A row is `running` (a claim: `token`, `lease_until`) or `completed`
//! (`output`), and counts as absent from `expires_at` on: two leases after
//! a claim or renewal (so a lapsed lease can still be told apart from a new
//! request for one more lease), `ttl` after completion. Expired rows are
//! overwritten by the next claim and deleted by `purge_expired`.

use std::time::Duration;

use crate::names::{fnv1a, Table};

/// The longest lease or ttl written: 100 years. Longer durations are capped,
/// so `now + duration` always fits a `timestamptz`.
const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 60 * 60);

/// A duration in whole milliseconds for a `$n::bigint * interval '1 ms'`
/// parameter: at least 1 (a zero lease would be born expired), at most
/// [`MAX_DURATION`].
pub(crate) fn millis(duration: Duration) -> i64 {
    let capped = duration.min(MAX_DURATION).as_millis();
    i64::try_from(capped).unwrap_or(i64::MAX).max(1)
}

/// One statement: its text, with `$1`.. placeholders, how many parameters
/// it takes (their types are those of the [`Param`]s passed), and the name
/// it is prepared under (see `prepared.rs`).
///
/// [`Param`]: crate::driver::Param
#[derive(Debug)]
pub(crate) struct Sql {
    pub(crate) text: String,
    pub(crate) params: usize,
    pub(crate) name: String,
}

impl Sql {
    /// The statement of `operation`. Its name is the operation and a hash
    /// of its text (so each table's statements have their own), the same
    /// in every process; computed once, not per call.
    pub(crate) fn new(operation: &str, text: String, params: usize) -> Self {
        let name = format!("idempotent_{operation}_{:016x}", fnv1a(text.as_bytes()));
        Self { text, params, name }
    }
}

/// The statements for one table, built once per backend.
#[derive(Debug)]
pub(crate) struct Statements {
    pub(crate) claim: Sql,
    pub(crate) complete: Sql,
    pub(crate) release: Sql,
    pub(crate) renew: Sql,
    pub(crate) purge: Sql,
}

impl Statements {
    pub(crate) fn for_table(table: &Table) -> Self {
        Self {
            claim: Sql::new("claim", claim(table), 4),
            complete: Sql::new("complete", complete(table), 4),
            release: Sql::new("release", release(table), 2),
            renew: Sql::new("renew", renew(table), 3),
            purge: Sql::new("purge", purge(table), 1),
        }
    }
}

/// `$1` key, `$2` fingerprint, `$3` lease (ms), `$4` token.
///
/// `found` reads the key's live row from the statement's snapshot. When it
/// refuses this claim (a live claim of another token, a completed record,
/// another fingerprint), the statement answers with it and writes nothing:
/// a replay is a plain read, with no row lock and no WAL.
///
/// Otherwise (no live row, or one this claim may take), the
/// `INSERT ... ON CONFLICT DO UPDATE` takes the key when it is absent, when
/// its row expired (it counts as absent: `took_over` false), when it is a
/// claim with the same fingerprint whose lease ran out (a takeover:
/// `took_over` true), or when it is this very claim, sent again (the same
/// token and fingerprint: `took_over` false). The token is the caller's. Its
/// `WHERE` is checked again on the row's latest version, so a claim that
/// committed meanwhile is never overwritten.
///
/// When the update's `WHERE` refuses, nothing is written and the statement
/// returns the row `found`. That snapshot may predate a row another claim
/// committed meanwhile (the conflict check waits for it, the snapshot does
/// not see it); then the row read is missing or looks claimable, and the
/// caller runs the statement again (see `claim.rs`). A row that shows a
/// live claim, a completed record or another fingerprint is a true answer
/// as of the snapshot, at which this statement wrote nothing.
fn claim(t: &Table) -> String {
    format!(
        "WITH found AS (
    SELECT fingerprint, state, token, lease_until, output
      FROM {t}
     WHERE key = $1::text AND expires_at > statement_timestamp()
),
claimed AS (
    INSERT INTO {t} AS r (key, fingerprint, state, token, lease_until, expires_at)
    SELECT $1::text, $2::bytea, 'running', $4::bigint,
           statement_timestamp() + $3::bigint * interval '1 millisecond',
           statement_timestamp() + 2 * $3::bigint * interval '1 millisecond'
     WHERE NOT EXISTS (
           SELECT FROM found
            WHERE NOT (found.state = 'running'
                       AND (found.lease_until <= statement_timestamp() OR found.token = $4::bigint)
                       AND found.fingerprint = $2::bytea))
    ON CONFLICT (key) DO UPDATE
       SET fingerprint = excluded.fingerprint,
           state = 'running',
           token = excluded.token,
           took_over = r.expires_at > statement_timestamp() AND r.token <> excluded.token,
           lease_until = excluded.lease_until,
           output = NULL,
           expires_at = excluded.expires_at
     WHERE r.expires_at <= statement_timestamp()
        OR (r.state = 'running'
            AND (r.lease_until <= statement_timestamp() OR r.token = excluded.token)
            AND r.fingerprint = excluded.fingerprint)
    RETURNING r.token, r.took_over
)
SELECT true AS acquired, token, took_over,
       NULL::boolean AS same_fingerprint, NULL::text AS state,
       NULL::bigint AS lease_remaining_us, NULL::bytea AS output
  FROM claimed
UNION ALL
SELECT false, NULL, NULL,
       found.fingerprint = $2::bytea, found.state,
       (extract(epoch FROM found.lease_until - statement_timestamp()) * 1000000)::bigint,
       CASE WHEN found.state = 'completed' AND found.fingerprint = $2::bytea THEN found.output END
  FROM found
 WHERE NOT EXISTS (SELECT FROM claimed)"
    )
}

/// `$1` key, `$2` token, `$3` output, `$4` ttl (ms).
///
/// Replaces the claim holding the token by the completed record. A row the
/// same token completed already (a retry whose first reply was lost) is
/// matched and left as it is, so the retry is told it applied. Fenced (no
/// row) when the token is not the claim's: taken over, released, or expired
/// (forgotten).
fn complete(t: &Table) -> String {
    format!(
        "UPDATE {t}
    SET output = CASE WHEN state = 'running' THEN $3 ELSE output END,
        expires_at = CASE WHEN state = 'running'
            THEN statement_timestamp() + $4::bigint * interval '1 millisecond'
            ELSE expires_at END,
        state = 'completed', lease_until = NULL
  WHERE key = $1 AND token = $2
    AND expires_at > statement_timestamp()"
    )
}

/// `$1` key, `$2` token. Deletes the claim holding the token.
fn release(t: &Table) -> String {
    format!(
        "DELETE FROM {t}
  WHERE key = $1 AND token = $2 AND state = 'running'
    AND expires_at > statement_timestamp()"
    )
}

/// `$1` key, `$2` token, `$3` lease (ms). Extends the claim holding the
/// token to `lease` from now, and its row's life to two leases.
fn renew(t: &Table) -> String {
    format!(
        "UPDATE {t}
    SET lease_until = statement_timestamp() + $3::bigint * interval '1 millisecond',
        expires_at = statement_timestamp() + 2 * $3::bigint * interval '1 millisecond'
  WHERE key = $1 AND token = $2 AND state = 'running'
    AND expires_at > statement_timestamp()"
    )
}

/// `$1` batch size. Deletes at most that many expired rows, oldest first.
///
/// PostgreSQL has no `DELETE ... LIMIT`: the batch is chosen by a subquery
/// on the `expires_at` index. `FOR UPDATE SKIP LOCKED` locks the rows it
/// picks and skips rows other statements hold, so concurrent purges (one
/// reaper per app server) split the work instead of queueing, and a claim
/// busy overwriting an expired row is not waited for. The outer condition
/// is checked again on the locked row, so a row a claim revived just before
/// is never deleted.
fn purge(t: &Table) -> String {
    format!(
        "DELETE FROM {t}
  WHERE key IN (SELECT key FROM {t}
                 WHERE expires_at <= statement_timestamp()
                 ORDER BY expires_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED)
    AND expires_at <= statement_timestamp()"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_are_at_least_one_and_capped() {
        assert_eq!(millis(Duration::ZERO), 1);
        assert_eq!(millis(Duration::from_micros(1500)), 1);
        assert_eq!(millis(Duration::from_secs(30)), 30_000);
        assert_eq!(millis(Duration::MAX), millis(MAX_DURATION));
    }

    #[test]
    fn statements_name_the_quoted_table() {
        let statements = Statements::for_table(&Table::new("s", "t"));
        for Sql {
            text: sql, params, ..
        } in [
            &statements.claim,
            &statements.complete,
            &statements.release,
            &statements.renew,
            &statements.purge,
        ] {
            let highest = (1..=*params + 1)
                .rev()
                .find(|n| sql.contains(&format!("${n}")));
            assert_eq!(highest, Some(*params), "the parameters it takes\n{sql}");
            assert!(sql.contains(r#""s"."t""#), "{sql}");
            assert!(
                !sql.contains("now()"),
                "one clock: statement_timestamp()\n{sql}"
            );
        }
    }
}
