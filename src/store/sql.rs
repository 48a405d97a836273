//! The SQL shared by both backends, written once: every statement is a static string with `$n` bind
//! parameters, which SQLite and PostgreSQL both accept. Backends differ only in how they connect and check durability,
//! and in the row-lock clause appended to claim statements (`$lock`: PostgreSQL `FOR UPDATE SKIP LOCKED`; SQLite
//! none, its write transaction already excludes every other writer).
//!
//! Writes (`commit_batch`, `probe_write`) go through an inherent `write_batch` / `write_probe` of each backend:
//! PostgreSQL (and SQLite in memory) run `sqlx_commit_batch` / `sqlx_probe_write` below; a file-backed SQLite store
//! runs the same statements (the `*_SQL` constants) on its own rusqlite writer connection (see `sqlite`). Statements
//! that rusqlite also executes number their parameters `$1`, `$2`, ... in order of first appearance, because
//! rusqlite binds them by position (checked by a test in `sqlite`).

/// Implements `Store` for a backend type with `pool`, `BACKEND`, `async fn durability(&self)`,
/// `async fn write_batch(&self, Arc<Batch>)` and `async fn write_probe(&self)`. `$scan` prefixes the columns of the
/// officer's organisation and partner filters: SQLite `+`, which keeps its planner (it has no statistics) from
/// answering them from three indexes and sorting every match, so it walks its time index, which holds those columns,
/// and stops at the page's last row; PostgreSQL nothing (its planner has statistics).
macro_rules! sql_store {
    ($store:ty, $db:ty, $row:ty, $lock:literal, $scan:literal) => {
        use $crate::store::*;
        use sqlx::Row;

fn entry_from_row(row: &$row) -> Result<StoredEntry, StoreError> {
    Ok(StoredEntry {
        log_id: row.try_get("log_id")?,
        seq: row.try_get::<i64, _>("seq")? as u64,
        time_ms: row.try_get("time_ms")?,
        event: row.try_get("event")?,
        partner: row.try_get("partner")?,
        organisation: row.try_get("organisation")?,
        sender: row.try_get("sender")?,
        receiver: row.try_get("receiver")?,
        purpose: row.try_get("purpose")?,
        flow_id: row.try_get("flow_id")?,
        subject: row.try_get("subject")?,
        outcome: row.try_get("outcome")?,
        bytes: row.try_get("entry")?,
        leaf_hash: to_hash(&row.try_get::<Vec<u8>, _>("leaf_hash")?)?,
        chain_hash: to_hash(&row.try_get::<Vec<u8>, _>("chain_hash")?)?,
        case_id: row.try_get("case_id")?,
    })
}

fn outbox_from_row(row: &$row) -> Result<OutboxRow, StoreError> {
    Ok(OutboxRow {
        id: row.try_get("o_id")?,
        sender: row.try_get("o_sender")?,
        receiver: row.try_get("o_receiver")?,
        purpose: row.try_get("o_purpose")?,
        message_type: row.try_get("o_message_type")?,
        created_ms: row.try_get("o_created_ms")?,
        expires_ms: row.try_get("o_expires_ms")?,
        status: row.try_get("o_status")?,
        fetched_ms: row.try_get("o_fetched_ms")?,
        stripped: row.try_get("o_stripped")?,
        ended_ms: row.try_get("o_ended_ms")?,
        end_reason: row.try_get("o_end_reason")?,
        push: match row.try_get::<Option<String>, _>("p_state")? {
            Some(state) => Some(PushStatus {
                state,
                attempts: row.try_get("p_attempts")?,
                last_outcome: row.try_get("p_last_outcome")?,
                in_doubt: row.try_get::<i64, _>("p_in_doubt")? != 0,
            }),
            None => None,
        },
        disclosure: entry_from_row(row)?,
    })
}

fn incident_from_row(row: &$row) -> Result<StoredIncident, StoreError> {
    Ok(StoredIncident {
        id: row.try_get("id")?,
        organisation: row.try_get("organisation")?,
        status: row.try_get("status")?,
        discovered_ms: row.try_get("discovered_ms")?,
        deadline_ms: row.try_get("deadline_ms")?,
        decided: row.try_get::<i64, _>("decided")? != 0,
        updated_ms: row.try_get("updated_ms")?,
        record: row.try_get("record")?,
    })
}

fn message_from_row(row: &$row) -> Result<StoredMessage, StoreError> {
    Ok(StoredMessage {
        pos: row.try_get("pos")?,
        fetch_count: row.try_get("fetch_count")?,
        msg: NewMessage {
            id: row.try_get("id")?,
            sender: row.try_get("sender")?,
            receiver: row.try_get("receiver")?,
            message_type: row.try_get("message_type")?,
            purpose: row.try_get("purpose")?,
            subject: row.try_get("subject")?,
            sealed: row.try_get("sealed")?,
            consent_paths: row.try_get("consent_paths")?,
            created_ms: row.try_get("created_ms")?,
            expires_ms: row.try_get("expires_ms")?,
            log_id: row.try_get("log_id")?,
            seq: row.try_get::<i64, _>("seq")? as u64,
            leaf_hash: to_hash(&row.try_get::<Vec<u8>, _>("leaf_hash")?)?,
        },
    })
}

fn consent_from_row(row: &$row) -> Result<StoredConsent, StoreError> {
    Ok(StoredConsent {
        id: row.try_get("id")?,
        registered_by: row.try_get("registered_by")?,
        subject: row.try_get("subject")?,
        purpose: row.try_get("purpose")?,
        recipient: row.try_get("recipient")?,
        categories: row.try_get("categories")?,
        given_by: row.try_get("given_by")?,
        evidence: row.try_get("evidence")?,
        valid_from: row.try_get("valid_from")?,
        valid_until: row.try_get("valid_until")?,
        created_ms: row.try_get("created_ms")?,
        withdrawn_ms: row.try_get("withdrawn_ms")?,
        subject_birth_date: row.try_get("subject_birth_date")?,
    })
}

const MESSAGE_COLUMNS: &str = "pos, id, sender, receiver, message_type, purpose, subject, sealed, consent_paths, created_ms, expires_ms, log_id, seq, leaf_hash, fetch_count";
/// `Store::visit_log_rows` through sqlx (PostgreSQL; SQLite falls back to it for a database that is not a file).
async fn sqlx_log_rows(
    pool: &sqlx::Pool<$db>,
    log_id: &str,
    from: u64,
    limit: usize,
    mut visit: RowVisitor,
) -> Result<usize, StoreError> {
    let rows: Vec<(i64, Vec<u8>, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT seq, entry, leaf_hash, chain_hash FROM log_entries WHERE log_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3",
    )
    .bind(log_id)
    .bind(from as i64)
    .bind(limit as i64)
    .fetch_all(pool)
    .await?;
    for (seq, bytes, leaf, chain) in &rows {
        visit(LogRowRef {
            seq: *seq as u64,
            bytes,
            leaf_hash: to_hash(leaf)?,
            chain_hash: to_hash(chain)?,
        });
    }
    Ok(rows.len())
}

/// `Store::consents_for_subject` through sqlx (PostgreSQL; SQLite falls back to it for a database that is not a file).
async fn sqlx_consents_for_subject(
    pool: &sqlx::Pool<$db>,
    subject: &str,
) -> Result<Vec<StoredConsent>, StoreError> {
    let rows = sqlx::query(CONSENTS_FOR_SUBJECT_SQL)
        .bind(subject)
        .fetch_all(pool)
        .await?;
    rows.iter().map(consent_from_row).collect()
}

/// `Store::leaf_hashes` through sqlx (PostgreSQL; SQLite falls back to it for a database that is not a file).
async fn sqlx_leaf_hashes(
    pool: &sqlx::Pool<$db>,
    log_id: &str,
    seqs: std::ops::Range<u64>,
) -> Result<Vec<Hash>, StoreError> {
    let rows: Vec<Vec<u8>> = sqlx::query_scalar(LEAF_HASHES_SQL)
        .bind(log_id)
        .bind(seqs.start as i64)
        .bind(seqs.end as i64)
        .fetch_all(pool)
        .await?;
    rows.iter().map(|h| to_hash(h)).collect()
}

/// `Store::query_entries` as one statement: the filters, then time order and the page size.
fn entries_query(f: &EntryFilter) -> sqlx::QueryBuilder<$db> {
    let mut qb = sqlx::QueryBuilder::<$db>::new(format!(
        "SELECT {ENTRY_COLUMNS} FROM log_entries WHERE 1 = 1"
    ));
    if let Some(v) = f.from_ms {
        qb.push(" AND time_ms >= ").push_bind(v);
    }
    if let Some(v) = f.until_ms {
        qb.push(" AND time_ms < ").push_bind(v);
    }
    for (first, value) in [("organisation", &f.organisation), ("partner", &f.partner)] {
        if let Some(v) = value {
            qb.push(concat!(" AND (", $scan))
                .push(first)
                .push(" = ")
                .push_bind(v.clone())
                .push(concat!(" OR ", $scan, "sender = "))
                .push_bind(v.clone())
                .push(concat!(" OR ", $scan, "receiver = "))
                .push_bind(v.clone())
                .push(")");
        }
    }
    for (col, val) in [
        ("purpose", &f.purpose),
        ("flow_id", &f.flow_id),
        ("outcome", &f.outcome),
        ("event", &f.event),
        ("subject", &f.subject),
        ("case_id", &f.case_id),
    ] {
        if let Some(v) = val {
            qb.push(format!(" AND {col} = ")).push_bind(v.clone());
        }
    }
    if let Some((t, log, seq)) = &f.after {
        qb.push(" AND (time_ms > ")
            .push_bind(*t)
            .push(" OR (time_ms = ")
            .push_bind(*t)
            .push(" AND (log_id > ")
            .push_bind(log.clone())
            .push(" OR (log_id = ")
            .push_bind(log.clone())
            .push(" AND seq > ")
            .push_bind(*seq as i64)
            .push("))))");
    }
    qb.push(" ORDER BY time_ms, log_id, seq LIMIT ")
        .push_bind(f.limit as i64);
    qb
}

/// A connection whose transaction failed part-way may still hold it (SQLite keeps its write lock when COMMIT fails
/// on a full disk): it is closed, never handed out again.
async fn retire_if_failed(
    conn: sqlx::pool::PoolConnection<$db>,
    result: Result<(), StoreError>,
) -> Result<(), StoreError> {
    if result.is_err() {
        let _ = conn.close().await;
    }
    result
}

/// Rows per multi-row INSERT through sqlx (16 bind parameters a log row: far below SQLite's and PostgreSQL's limits).
const ROWS_PER_INSERT: usize = 64;

/// `Store::disclosure_of_message`: through `message_disclosures` (written by a trigger with each mailbox row) to the
/// log entry, by both primary keys.
const DISCLOSURE_OF_MESSAGE_SQL: &str = "SELECT e.log_id, e.seq, e.time_ms, e.event, e.partner, e.organisation, e.sender, e.receiver, e.purpose, e.flow_id, e.subject, e.outcome, e.entry, e.leaf_hash, e.chain_hash, e.case_id FROM message_disclosures d JOIN log_entries e ON e.log_id = d.log_id AND e.seq = d.seq WHERE d.id = $1";
const ENTRY_COLUMNS: &str = "log_id, seq, time_ms, event, partner, organisation, sender, receiver, purpose, flow_id, subject, outcome, entry, leaf_hash, chain_hash, case_id";

/// The columns a new mailbox row is inserted with, in `NewMessage` field order (`pos`, `fetch_count` default).
const NEW_MESSAGE_COLUMNS: &str = "id, sender, receiver, message_type, purpose, subject, sealed, consent_paths, created_ms, expires_ms, log_id, seq, leaf_hash";

/// Locks a mailbox row (`$lock`) and reads its fetch count.
const CLAIM_SQL: &str = concat!("SELECT fetch_count FROM messages WHERE id = $1", $lock);
const DELETE_MESSAGE_SQL: &str = "DELETE FROM messages WHERE id = $1";
const COUNT_FETCH_SQL: &str = "UPDATE messages SET fetch_count = fetch_count + 1 WHERE id = $1";
/// The outbox row after a fetch: `$1` consent-only fields stripped by it, `$2` its time.
const FETCH_OUTBOX_SQL: &str = "UPDATE message_outbox SET \
    status = CASE WHEN $1 > 0 OR stripped > 0 THEN 'consent-withdrawn' ELSE 'fetched' END, \
    stripped = CASE WHEN $1 > stripped THEN $1 ELSE stripped END, fetched_ms = COALESCE(fetched_ms, $2) WHERE id = $3";
/// The outbox row of a message whose mailbox row ended: `$1` status, `$2` time, `$3` reason code.
const END_OUTBOX_SQL: &str =
    "UPDATE message_outbox SET status = $1, ended_ms = $2, end_reason = $3 WHERE id = $4";
/// As `END_OUTBOX_SQL` for a message already acknowledged or purged; no row changed when it already ended as
/// recalled or misaddressed.
const END_GONE_OUTBOX_SQL: &str = "UPDATE message_outbox SET status = $1, ended_ms = $2, end_reason = $3 \
    WHERE id = $4 AND status NOT IN ('recalled', 'misaddressed')";
/// A push's state that keeps a recall out: an attempt is in flight, or an earlier one may have reached the receiver.
const PUSH_IN_DOUBT_SQL: &str = "SELECT in_doubt FROM push_queue WHERE message_id = $1";
const QUEUE_PUSH_SQL: &str =
    "INSERT INTO push_queue (message_id, receiver, next_ms, created_ms) VALUES ($1, $2, $3, $4)";
/// Removes a leased push row; no row changed when the lease (`$2` owner, `$3` attempt) is no longer the holder's.
const END_PUSH_SQL: &str =
    "DELETE FROM push_queue WHERE message_id = $1 AND lease_owner = $2 AND attempts = $3";
const DELETE_PUSH_SQL: &str = "DELETE FROM push_queue WHERE message_id = $1";
/// Leases the push due first whose message is still unfetched in the mailbox, locking both rows (`$lock`).
/// `in_doubt`: 0 never possibly delivered, 1 an earlier attempt may have been, 2 an attempt in flight, 3 both.
const LEASE_PUSH_SQL: &str = concat!(
    "UPDATE push_queue SET lease_owner = $1, lease_until_ms = $2, attempts = attempts + 1, \
     in_doubt = CASE WHEN in_doubt = 0 THEN 2 ELSE 3 END \
     WHERE message_id = (SELECT q.message_id FROM push_queue q JOIN messages m ON m.id = q.message_id \
     WHERE q.state = 'waiting' AND q.next_ms <= $3 AND q.lease_until_ms <= $3 AND m.fetch_count = 0 \
     ORDER BY q.next_ms LIMIT 1",
    $lock,
    ") RETURNING message_id, receiver, attempts, created_ms"
);
/// Ends an attempt that was not accepted: `$1` state, `$2` next try, `$3` whether it may have reached the receiver,
/// `$4` its outcome code; no row changed when the lease (`$6`, `$7`) is lost.
const RELEASE_PUSH_SQL: &str = "UPDATE push_queue SET state = $1, next_ms = $2, lease_owner = NULL, lease_until_ms = 0, \
    in_doubt = CASE WHEN $3 <> 0 OR in_doubt = 3 THEN 1 ELSE 0 END, last_outcome = $4 \
    WHERE message_id = $5 AND lease_owner = $6 AND attempts = $7";
/// The leases of an instance's earlier process: free at once, and an attempt it had in flight stays in doubt.
const RELEASE_LEASES_SQL: &str = "UPDATE push_queue SET lease_owner = NULL, lease_until_ms = 0, \
    in_doubt = CASE WHEN in_doubt = 0 THEN 0 ELSE 1 END WHERE lease_owner = $1";
/// Pushes without a live lease whose message was fetched (by pull) or is gone: nothing left to push.
const SWEEP_PUSHES_SQL: &str = "DELETE FROM push_queue WHERE lease_until_ms <= $1 AND NOT EXISTS \
    (SELECT 1 FROM messages m WHERE m.id = push_queue.message_id AND m.fetch_count = 0)";
const PUSH_STATS_SQL: &str =
    "SELECT state, COUNT(*) AS n, MIN(created_ms) AS oldest FROM push_queue GROUP BY state";
const INSERT_INCIDENT_SQL: &str = "INSERT INTO incidents (id, organisation, status, discovered_ms, deadline_ms, decided, updated_ms, record) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
/// No row changed when the incident was changed since the caller read it (`$6`).
const UPDATE_INCIDENT_SQL: &str = "UPDATE incidents SET status = $1, decided = $2, updated_ms = $3, record = $4 \
    WHERE id = $5 AND updated_ms = $6";
const INCIDENT_COLUMNS: &str = "id, organisation, status, discovered_ms, deadline_ms, decided, updated_ms, record";
const OUTBOX_SELECT: &str = "SELECT o.id AS o_id, o.sender AS o_sender, o.receiver AS o_receiver, o.purpose AS o_purpose, \
    o.message_type AS o_message_type, o.created_ms AS o_created_ms, o.expires_ms AS o_expires_ms, o.status AS o_status, \
    o.fetched_ms AS o_fetched_ms, o.stripped AS o_stripped, o.ended_ms AS o_ended_ms, o.end_reason AS o_end_reason, \
    p.state AS p_state, p.attempts AS p_attempts, p.last_outcome AS p_last_outcome, p.in_doubt AS p_in_doubt, \
    e.log_id, e.seq, e.time_ms, e.event, e.partner, e.organisation, e.sender, e.receiver, e.purpose, e.flow_id, \
    e.subject, e.outcome, e.entry, e.leaf_hash, e.chain_hash, e.case_id \
    FROM message_outbox o JOIN log_entries e ON e.log_id = o.log_id AND e.seq = o.seq \
    LEFT JOIN push_queue p ON p.message_id = o.id";
const INSERT_IDEMPOTENCY_SQL: &str = "INSERT INTO idempotency (sender, key, body_hash, status, response, log_id, seq, leaf_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)";
const INSERT_CONSENT_SQL: &str = "INSERT INTO consents (id, registered_by, subject, purpose, recipient, categories, given_by, evidence, valid_from, valid_until, created_ms, withdrawn_ms, subject_birth_date) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";
const CONSENTS_FOR_SUBJECT_SQL: &str = "SELECT id, registered_by, subject, purpose, recipient, categories, given_by, evidence, valid_from, valid_until, created_ms, withdrawn_ms, subject_birth_date FROM consents WHERE subject = $1 ORDER BY created_ms";
const WITHDRAW_CONSENT_SQL: &str = "UPDATE consents SET withdrawn_ms = $1 WHERE id = $2 AND withdrawn_ms IS NULL";
/// The log state compare-and-set: `$5` is the size the batch continues from; no row changed means another
/// writer appended first.
const SET_LOG_STATE_SQL: &str = "INSERT INTO log_state (log_id, size, frontier, chain_head) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (log_id) DO UPDATE SET size = excluded.size, frontier = excluded.frontier, chain_head = excluded.chain_head \
    WHERE log_state.size = $5";
const LEAF_HASHES_SQL: &str =
    "SELECT leaf_hash FROM log_entries WHERE log_id = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
const INSERT_SUBTREE_SQL: &str = "INSERT INTO log_subtrees (log_id, level, idx, hash) VALUES ($1, $2, $3, $4)";
const INSERT_CHECKPOINT_SQL: &str = "INSERT INTO checkpoints (log_id, tree_size, time_ms, note) VALUES ($1, $2, $3, $4) \
    ON CONFLICT (log_id, tree_size) DO NOTHING";
const PROBE_INSERT_SQL: &str = "INSERT INTO checkpoints (log_id, tree_size, time_ms, note) VALUES ('~readiness-probe', -1, 0, $1)";
const PROBE_DELETE_SQL: &str = "DELETE FROM checkpoints WHERE log_id = '~readiness-probe'";

/// The readiness probe's row: `PROBE_BYTES` of incompressible text (a hash chain in hex), so no backend can
/// store it in less than its size.
fn probe_note() -> String {
    let mut note = String::with_capacity(PROBE_BYTES);
    let mut h = ring::digest::digest(&ring::digest::SHA256, b"ketenpoort probe");
    while note.len() < PROBE_BYTES {
        note.push_str(&hex::encode(h.as_ref()));
        h = ring::digest::digest(&ring::digest::SHA256, h.as_ref());
    }
    note
}

/// Locks a mailbox row for this transaction and returns its fetch count; `Conflict` when the row is gone or
/// another transaction holds it.
async fn claim(tx: &mut sqlx::Transaction<'_, $db>, id: &str) -> Result<i64, StoreError> {
    sqlx::query_scalar(CLAIM_SQL)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?
        .ok_or_else(|| {
            StoreError::Conflict("message is gone or being changed by another request".into())
        })
}

async fn apply(
    tx: &mut sqlx::Transaction<'_, $db>,
    m: &Mutation,
) -> Result<(), StoreError> {
    match m {
        // New mailbox rows go in with the batch's multi-row statement before any other mutation.
        Mutation::InsertMessage(_) => {}
        Mutation::DeleteMessage { id, end, at_ms, unfetched_only } => {
            if claim(tx, id).await? != 0 && *unfetched_only {
                return Err(StoreError::Conflict("message was fetched".into()));
            }
            if *unfetched_only {
                let doubt: Option<i64> = sqlx::query_scalar(PUSH_IN_DOUBT_SQL)
                    .bind(id)
                    .fetch_optional(&mut **tx)
                    .await?;
                if doubt.is_some_and(|d| d != 0) {
                    return Err(StoreError::Conflict(
                        "a push of this message may have reached its receiver".into(),
                    ));
                }
            }
            sqlx::query(DELETE_MESSAGE_SQL)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(DELETE_PUSH_SQL)
                .bind(id)
                .execute(&mut **tx)
                .await?;
            sqlx::query(END_OUTBOX_SQL)
                .bind(end.status())
                .bind(at_ms)
                .bind(end.reason())
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
        Mutation::ClaimFetched { claims, at_ms } => {
            for c in claims {
                if claim(tx, &c.id).await? != c.seen {
                    return Err(StoreError::Conflict(
                        "message was fetched concurrently".into(),
                    ));
                }
                sqlx::query(COUNT_FETCH_SQL)
                    .bind(&c.id)
                    .execute(&mut **tx)
                    .await?;
                sqlx::query(FETCH_OUTBOX_SQL)
                    .bind(c.stripped)
                    .bind(at_ms)
                    .bind(&c.id)
                    .execute(&mut **tx)
                    .await?;
            }
        }
        Mutation::EndOutbox { id, end, at_ms } => {
            let done = sqlx::query(END_GONE_OUTBOX_SQL)
                .bind(end.status())
                .bind(at_ms)
                .bind(end.reason())
                .bind(id)
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(
                    "no such sent message, or it was already recalled or reported".into(),
                ));
            }
        }
        Mutation::InsertIncident(i) => {
            sqlx::query(INSERT_INCIDENT_SQL)
                .bind(&i.id)
                .bind(&i.organisation)
                .bind(&i.status)
                .bind(i.discovered_ms)
                .bind(i.deadline_ms)
                .bind(i64::from(i.decided))
                .bind(i.updated_ms)
                .bind(&i.record)
                .execute(&mut **tx)
                .await?;
        }
        Mutation::UpdateIncident { incident: i, previous_updated_ms } => {
            let done = sqlx::query(UPDATE_INCIDENT_SQL)
                .bind(&i.status)
                .bind(i64::from(i.decided))
                .bind(i.updated_ms)
                .bind(&i.record)
                .bind(&i.id)
                .bind(previous_updated_ms)
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(
                    "the incident was changed by another request".into(),
                ));
            }
        }
        Mutation::InsertIdempotency(r) => {
            sqlx::query(INSERT_IDEMPOTENCY_SQL)
                .bind(&r.sender)
                .bind(&r.key)
                .bind(&r.body_hash)
                .bind(r.status as i64)
                .bind(&r.response)
                .bind(&r.log_id)
                .bind(r.seq as i64)
                .bind(&r.leaf_hash[..])
                .execute(&mut **tx)
                .await?;
        }
        Mutation::QueuePush { id, receiver, at_ms } => {
            sqlx::query(QUEUE_PUSH_SQL)
                .bind(id)
                .bind(receiver)
                .bind(at_ms)
                .bind(at_ms)
                .execute(&mut **tx)
                .await?;
        }
        Mutation::EndPush { id, owner, attempt } => {
            let done = sqlx::query(END_PUSH_SQL)
                .bind(id)
                .bind(owner)
                .bind(attempt)
                .execute(&mut **tx)
                .await?;
            if done.rows_affected() != 1 {
                return Err(StoreError::Conflict(
                    "the push was ended or leased by another instance".into(),
                ));
            }
        }
        Mutation::InsertConsent(c) => {
            sqlx::query(INSERT_CONSENT_SQL)
                .bind(&c.id)
                .bind(&c.registered_by)
                .bind(&c.subject)
                .bind(&c.purpose)
                .bind(&c.recipient)
                .bind(&c.categories)
                .bind(&c.given_by)
                .bind(&c.evidence)
                .bind(&c.valid_from)
                .bind(&c.valid_until)
                .bind(c.created_ms)
                .bind(c.withdrawn_ms)
                .bind(&c.subject_birth_date)
                .execute(&mut **tx)
                .await?;
        }
        Mutation::WithdrawConsent { id, at_ms } => {
            sqlx::query(WITHDRAW_CONSENT_SQL)
                .bind(at_ms)
                .bind(id)
                .execute(&mut **tx)
                .await?;
        }
    }
    Ok(())
}

/// `Store::probe_write` through sqlx (PostgreSQL; SQLite for a database that is not a file): commits and removes a
/// row of `PROBE_BYTES` in one transaction.
async fn sqlx_probe_write(pool: &sqlx::Pool<$db>) -> Result<(), StoreError> {
    let note = probe_note();
    let mut conn = pool.acquire().await?;
    let result: Result<(), StoreError> = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        sqlx::query(PROBE_INSERT_SQL)
            .bind(&note)
            .execute(&mut *tx)
            .await?;
        sqlx::query(PROBE_DELETE_SQL).execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }
    .await;
    retire_if_failed(conn, result).await
}

/// `Store::commit_batch` through sqlx (PostgreSQL; SQLite for a database that is not a file).
async fn sqlx_commit_batch(pool: &sqlx::Pool<$db>, batch: &Batch) -> Result<(), StoreError> {
    let mut conn = pool.acquire().await?;
    let result: Result<(), StoreError> = async {
        let mut tx = sqlx::Connection::begin(&mut *conn).await?;
        // Multi-row inserts: one statement per chunk instead of one per row (on PostgreSQL one round trip).
        for chunk in batch.entries.chunks(ROWS_PER_INSERT) {
            let mut qb =
                sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO log_entries ({ENTRY_COLUMNS}) "));
            qb.push_values(chunk, |mut row, e| {
                row.push_bind(&e.log_id)
                    .push_bind(e.seq as i64)
                    .push_bind(e.time_ms)
                    .push_bind(&e.event)
                    .push_bind(&e.partner)
                    .push_bind(&e.organisation)
                    .push_bind(&e.sender)
                    .push_bind(&e.receiver)
                    .push_bind(&e.purpose)
                    .push_bind(&e.flow_id)
                    .push_bind(&e.subject)
                    .push_bind(&e.outcome)
                    .push_bind(&e.bytes)
                    .push_bind(&e.leaf_hash[..])
                    .push_bind(&e.chain_hash[..])
                    .push_bind(&e.case_id);
            });
            qb.build().execute(&mut *tx).await?;
        }
        for t in &batch.subtrees {
            sqlx::query(INSERT_SUBTREE_SQL)
                .bind(&batch.state.log_id)
                .bind(i16::from(t.level))
                .bind(t.index as i64)
                .bind(&t.hash[..])
                .execute(&mut *tx)
                .await?;
        }
        // New mailbox rows first, also multi-row (no other mutation of a batch can refer to a row that is
        // inserted in the same batch: a fetch or ack needs a committed message), then the rest in order.
        let new_messages: Vec<&NewMessage> = batch
            .mutations
            .iter()
            .filter_map(|m| match m {
                Mutation::InsertMessage(msg) => Some(&**msg),
                _ => None,
            })
            .collect();
        for chunk in new_messages.chunks(ROWS_PER_INSERT) {
            let mut qb =
                sqlx::QueryBuilder::<$db>::new(format!("INSERT INTO messages ({NEW_MESSAGE_COLUMNS}) "));
            qb.push_values(chunk, |mut row, msg| {
                row.push_bind(&msg.id)
                    .push_bind(&msg.sender)
                    .push_bind(&msg.receiver)
                    .push_bind(&msg.message_type)
                    .push_bind(&msg.purpose)
                    .push_bind(&msg.subject)
                    .push_bind(&msg.sealed)
                    .push_bind(&msg.consent_paths)
                    .push_bind(msg.created_ms)
                    .push_bind(msg.expires_ms)
                    .push_bind(&msg.log_id)
                    .push_bind(msg.seq as i64)
                    .push_bind(&msg.leaf_hash[..]);
            });
            qb.build().execute(&mut *tx).await?;
        }
        for m in &batch.mutations {
            apply(&mut tx, m).await?;
        }
        let s = &batch.state;
        let previous = s.size.checked_sub(batch.entries.len() as u64).ok_or_else(|| {
            StoreError::Corrupt("log state smaller than the batch".into())
        })?;
        let updated = sqlx::query(SET_LOG_STATE_SQL)
            .bind(&s.log_id)
            .bind(s.size as i64)
            .bind(&s.frontier)
            .bind(&s.chain_head[..])
            .bind(previous as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if updated != 1 {
            return Err(StoreError::Conflict(
                "another writer appended to this log".into(),
            ));
        }
        if let Some(cp) = &batch.checkpoint {
            sqlx::query(INSERT_CHECKPOINT_SQL)
                .bind(&cp.log_id)
                .bind(cp.tree_size as i64)
                .bind(cp.time_ms)
                .bind(&cp.note)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
    .await;
    retire_if_failed(conn, result).await
}

impl Store for $store {
    fn backend(&self) -> &'static str {
        Self::BACKEND
    }

    fn check_durability(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.durability())
    }

    fn ping(&self) -> StoreFuture<'_, ()> {
        Box::pin(async move {
            sqlx::query("SELECT 1").execute(&self.pool).await?;
            Ok(())
        })
    }

    fn probe_write(&self) -> StoreFuture<'_, ()> {
        Box::pin(self.write_probe())
    }

    fn spawn_writer(
        &self,
        task: super::WriterTask,
    ) -> Result<tokio::task::JoinHandle<()>, StoreError> {
        self.start_writer(task)
    }

    fn load_log_state<'a>(&'a self, log_id: &'a str) -> StoreFuture<'a, Option<LogState>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT log_id, size, frontier, chain_head FROM log_state WHERE log_id = $1",
            )
            .bind(log_id)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|r| {
                Ok(LogState {
                    log_id: r.try_get("log_id")?,
                    size: r.try_get::<i64, _>("size")? as u64,
                    frontier: r.try_get("frontier")?,
                    chain_head: to_hash(&r.try_get::<Vec<u8>, _>("chain_head")?)?,
                })
            })
            .transpose()
        })
    }

    fn commit_batch(&self, batch: std::sync::Arc<Batch>) -> StoreFuture<'_, ()> {
        Box::pin(self.write_batch(batch))
    }

    fn log_ids(&self) -> StoreFuture<'_, Vec<String>> {
        Box::pin(async move {
            Ok(
                sqlx::query_scalar("SELECT log_id FROM log_state ORDER BY log_id")
                    .fetch_all(&self.pool)
                    .await?,
            )
        })
    }

    fn entries<'a>(
        &'a self,
        log_id: &'a str,
        from: u64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredEntry>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {ENTRY_COLUMNS} FROM log_entries WHERE log_id = $1 AND seq >= $2 ORDER BY seq LIMIT $3"
            ));
            let rows = sqlx::query(sql)
                .bind(log_id)
                .bind(from as i64)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(entry_from_row).collect()
        })
    }

    fn visit_log_rows<'a>(
        &'a self,
        log_id: &'a str,
        from: u64,
        limit: usize,
        visit: RowVisitor,
    ) -> StoreFuture<'a, usize> {
        Box::pin(self.scan_log_rows(log_id, from, limit, visit))
    }

    fn leaf_hashes<'a>(
        &'a self,
        log_id: &'a str,
        seqs: std::ops::Range<u64>,
    ) -> StoreFuture<'a, Vec<Hash>> {
        Box::pin(self.scan_leaf_hashes(log_id, seqs))
    }

    fn subtrees<'a>(
        &'a self,
        log_id: &'a str,
        spans: &'a [SubtreeSpan],
    ) -> StoreFuture<'a, Vec<StoredSubtree>> {
        Box::pin(async move {
            if spans.is_empty() {
                return Ok(Vec::new());
            }
            let mut qb = sqlx::QueryBuilder::<$db>::new(
                "SELECT level, idx, hash FROM log_subtrees WHERE log_id = ",
            );
            qb.push_bind(log_id).push(" AND (");
            for (i, span) in spans.iter().enumerate() {
                if i > 0 {
                    qb.push(" OR ");
                }
                qb.push("(level = ")
                    .push_bind(i16::from(span.level))
                    .push(" AND idx >= ")
                    .push_bind(span.indices.start.min(i64::MAX as u64) as i64)
                    .push(" AND idx < ")
                    .push_bind(span.indices.end.min(i64::MAX as u64) as i64)
                    .push(")");
            }
            qb.push(") ORDER BY level, idx");
            let rows = qb.build().fetch_all(&self.pool).await?;
            rows.iter()
                .map(|r| {
                    let level: i16 = r.try_get("level")?;
                    Ok(StoredSubtree {
                        level: u8::try_from(level)
                            .map_err(|_| StoreError::Corrupt("subtree level".into()))?,
                        index: r.try_get::<i64, _>("idx")? as u64,
                        hash: to_hash(&r.try_get::<Vec<u8>, _>("hash")?)?,
                    })
                })
                .collect()
        })
    }

    fn checkpoints<'a>(
        &'a self,
        log_id: &'a str,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredCheckpoint>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT log_id, tree_size, time_ms, note FROM checkpoints WHERE log_id = $1 ORDER BY tree_size DESC LIMIT $2",
            )
            .bind(log_id)
            .bind(limit as i64)
            .fetch_all(&self.pool)
            .await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredCheckpoint {
                        log_id: r.try_get("log_id")?,
                        tree_size: r.try_get::<i64, _>("tree_size")? as u64,
                        time_ms: r.try_get("time_ms")?,
                        note: r.try_get("note")?,
                    })
                })
                .collect()
        })
    }

    fn query_entries<'a>(&'a self, f: &'a EntryFilter) -> StoreFuture<'a, Vec<StoredEntry>> {
        Box::pin(async move {
            let rows = entries_query(f).build().fetch_all(&self.pool).await?;
            rows.iter().map(entry_from_row).collect()
        })
    }

    fn inbox<'a>(
        &'a self,
        receiver: &'a str,
        after_pos: i64,
        limit: usize,
    ) -> StoreFuture<'a, Vec<StoredMessage>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE receiver = $1 AND pos > $2 ORDER BY pos LIMIT $3"
            ));
            let rows = sqlx::query(sql)
                .bind(receiver)
                .bind(after_pos)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(message_from_row).collect()
        })
    }

    fn message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredMessage>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1"
            ));
            let row = sqlx::query(sql)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(message_from_row).transpose()
        })
    }

    fn disclosure_of_message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredEntry>> {
        Box::pin(async move {
            let row = sqlx::query(DISCLOSURE_OF_MESSAGE_SQL)
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(entry_from_row).transpose()
        })
    }

    fn expired_messages(&self, now_ms: i64, limit: usize) -> StoreFuture<'_, Vec<StoredMessage>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {MESSAGE_COLUMNS} FROM messages WHERE expires_ms < $1 ORDER BY expires_ms LIMIT $2"
            ));
            let rows = sqlx::query(sql)
                .bind(now_ms)
                .bind(limit as i64)
                .fetch_all(&self.pool)
                .await?;
            rows.iter().map(message_from_row).collect()
        })
    }

    fn idempotency<'a>(
        &'a self,
        sender: &'a str,
        key: &'a str,
    ) -> StoreFuture<'a, Option<IdempotencyRecord>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT sender, key, body_hash, status, response, log_id, seq, leaf_hash FROM idempotency WHERE sender = $1 AND key = $2",
            )
            .bind(sender)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
            row.map(|r| {
                Ok(IdempotencyRecord {
                    sender: r.try_get("sender")?,
                    key: r.try_get("key")?,
                    body_hash: r.try_get("body_hash")?,
                    status: r.try_get::<i64, _>("status")? as u16,
                    response: r.try_get("response")?,
                    log_id: r.try_get("log_id")?,
                    seq: r.try_get::<i64, _>("seq")? as u64,
                    leaf_hash: to_hash(&r.try_get::<Vec<u8>, _>("leaf_hash")?)?,
                })
            })
            .transpose()
        })
    }

    fn consents_for_subject<'a>(
        &'a self,
        subject: &'a str,
    ) -> StoreFuture<'a, Vec<StoredConsent>> {
        Box::pin(self.find_consents_for_subject(subject))
    }

    fn consents_registered_by<'a>(
        &'a self,
        partner: &'a str,
    ) -> StoreFuture<'a, Vec<StoredConsent>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT * FROM consents WHERE registered_by = $1 ORDER BY created_ms")
                    .bind(partner)
                    .fetch_all(&self.pool)
                    .await?;
            rows.iter().map(consent_from_row).collect()
        })
    }

    fn consent<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredConsent>> {
        Box::pin(async move {
            let row = sqlx::query("SELECT * FROM consents WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
            row.as_ref().map(consent_from_row).transpose()
        })
    }

    fn outbox<'a>(&'a self, f: &'a OutboxFilter) -> StoreFuture<'a, Vec<OutboxRow>> {
        Box::pin(async move {
            let mut qb = sqlx::QueryBuilder::<$db>::new(OUTBOX_SELECT);
            qb.push(" WHERE o.sender = ").push_bind(&f.sender);
            if let Some(v) = &f.status {
                qb.push(" AND o.status = ").push_bind(v);
            }
            if let Some(v) = &f.purpose {
                qb.push(" AND o.purpose = ").push_bind(v);
            }
            if let Some(v) = &f.receiver {
                qb.push(" AND o.receiver = ").push_bind(v);
            }
            if let Some(v) = f.from_ms {
                qb.push(" AND o.created_ms >= ").push_bind(v);
            }
            if let Some(v) = f.until_ms {
                qb.push(" AND o.created_ms < ").push_bind(v);
            }
            if let Some((ms, id)) = &f.before {
                qb.push(" AND (o.created_ms < ").push_bind(*ms);
                qb.push(" OR (o.created_ms = ").push_bind(*ms);
                qb.push(" AND o.id < ").push_bind(id).push("))");
            }
            qb.push(" ORDER BY o.created_ms DESC, o.id DESC LIMIT ")
                .push_bind(f.limit as i64);
            let rows = qb.build().fetch_all(&self.pool).await?;
            rows.iter().map(outbox_from_row).collect()
        })
    }

    fn outbox_message<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<OutboxRow>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!("{OUTBOX_SELECT} WHERE o.id = $1"));
            let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
            row.as_ref().map(outbox_from_row).transpose()
        })
    }

    fn incidents<'a>(
        &'a self,
        organisation: Option<&'a str>,
    ) -> StoreFuture<'a, Vec<StoredIncident>> {
        Box::pin(async move {
            let mut qb =
                sqlx::QueryBuilder::<$db>::new(format!("SELECT {INCIDENT_COLUMNS} FROM incidents"));
            if let Some(o) = organisation {
                qb.push(" WHERE organisation = ").push_bind(o);
            }
            qb.push(" ORDER BY discovered_ms DESC, id DESC");
            let rows = qb.build().fetch_all(&self.pool).await?;
            rows.iter().map(incident_from_row).collect()
        })
    }

    fn incident<'a>(&'a self, id: &'a str) -> StoreFuture<'a, Option<StoredIncident>> {
        Box::pin(async move {
            let sql = sqlx::AssertSqlSafe(format!(
                "SELECT {INCIDENT_COLUMNS} FROM incidents WHERE id = $1"
            ));
            let row = sqlx::query(sql).bind(id).fetch_optional(&self.pool).await?;
            row.as_ref().map(incident_from_row).transpose()
        })
    }

    fn lease_push<'a>(
        &'a self,
        owner: &'a str,
        now_ms: i64,
        lease_until_ms: i64,
    ) -> StoreFuture<'a, Option<PushLease>> {
        Box::pin(async move {
            let row = sqlx::query(LEASE_PUSH_SQL)
                .bind(owner)
                .bind(lease_until_ms)
                .bind(now_ms)
                .fetch_optional(&self.pool)
                .await?;
            row.map(|r| {
                Ok(PushLease {
                    message_id: r.try_get("message_id")?,
                    receiver: r.try_get("receiver")?,
                    attempt: r.try_get("attempts")?,
                    created_ms: r.try_get("created_ms")?,
                })
            })
            .transpose()
        })
    }

    fn release_push<'a>(&'a self, r: &'a PushRelease) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let (state, next_ms) = match r.next_ms {
                Some(ms) => ("waiting", ms),
                None => ("gave-up", 0),
            };
            let done = sqlx::query(RELEASE_PUSH_SQL)
                .bind(state)
                .bind(next_ms)
                .bind(i64::from(r.in_doubt))
                .bind(r.outcome)
                .bind(&r.message_id)
                .bind(&r.owner)
                .bind(r.attempt)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn drop_push<'a>(
        &'a self,
        id: &'a str,
        owner: &'a str,
        attempt: i64,
    ) -> StoreFuture<'a, bool> {
        Box::pin(async move {
            let done = sqlx::query(END_PUSH_SQL)
                .bind(id)
                .bind(owner)
                .bind(attempt)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected() == 1)
        })
    }

    fn release_leases<'a>(&'a self, owner: &'a str) -> StoreFuture<'a, u64> {
        Box::pin(async move {
            let done = sqlx::query(RELEASE_LEASES_SQL)
                .bind(owner)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn sweep_pushes(&self, now_ms: i64) -> StoreFuture<'_, u64> {
        Box::pin(async move {
            let done = sqlx::query(SWEEP_PUSHES_SQL)
                .bind(now_ms)
                .execute(&self.pool)
                .await?;
            Ok(done.rows_affected())
        })
    }

    fn push_queue_stats(&self) -> StoreFuture<'_, PushQueueStats> {
        Box::pin(async move {
            let rows: Vec<(String, i64, Option<i64>)> = sqlx::query_as(PUSH_STATS_SQL)
                .fetch_all(&self.pool)
                .await?;
            let mut stats = PushQueueStats::default();
            for (state, n, oldest) in rows {
                match state.as_str() {
                    "waiting" => {
                        stats.waiting = n as u64;
                        stats.oldest_waiting_ms = oldest;
                    }
                    _ => stats.gave_up += n as u64,
                }
            }
            Ok(stats)
        })
    }
}
    };
}

pub(crate) use sql_store;
