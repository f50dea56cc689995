package projections

// The statements of the projection storage, each whole. Tables:
// chronicle.projection_checkpoints and chronicle.projection_dead_letters
// (migration 2), chronicle.projection_instances (migration 5).

// checkpointsSQL lists the checkpoints of one projection ($1), or of every
// projection when $1 is ”, with each partition's count of open dead
// letters.
const checkpointsSQL = `
SELECT c.projection, c.partition, c.partitions, c.transaction_id, c.global_position,
       c.updated_at, coalesce(c.holder, ''), c.rebuild_requested, coalesce(c.error, ''),
       (SELECT count(*) FROM chronicle.projection_dead_letters d
        WHERE d.projection = c.projection AND d.partition = c.partition AND d.status IN ('parked', 'retry'))
FROM chronicle.projection_checkpoints c
WHERE $1 = '' OR c.projection = $1
ORDER BY c.projection, c.partition`

// checkpointSQL reads the checkpoint of one partition, with the same
// columns as checkpointsSQL.
const checkpointSQL = `
SELECT c.projection, c.partition, c.partitions, c.transaction_id, c.global_position,
       c.updated_at, coalesce(c.holder, ''), c.rebuild_requested, coalesce(c.error, ''),
       (SELECT count(*) FROM chronicle.projection_dead_letters d
        WHERE d.projection = c.projection AND d.partition = c.partition AND d.status IN ('parked', 'retry'))
FROM chronicle.projection_checkpoints c
WHERE c.projection = $1 AND c.partition = $2`

// casSQL moves a checkpoint only if it is still where its holder last saw
// it ($3, $4), and returns it with the columns of checkpointsSQL; no row
// means a conflict.
const casSQL = `
UPDATE chronicle.projection_checkpoints c
SET transaction_id = $5::xid8,
    global_position = $6,
    updated_at = CASE WHEN c.transaction_id = $5::xid8 AND c.global_position = $6 THEN c.updated_at ELSE now() END,
    error = NULLIF($7, ''),
    rebuild_requested = c.rebuild_requested AND NOT $8
WHERE c.projection = $1 AND c.partition = $2
  AND c.transaction_id = $3::xid8 AND c.global_position = $4
RETURNING c.projection, c.partition, c.partitions, c.transaction_id, c.global_position,
       c.updated_at, coalesce(c.holder, ''), c.rebuild_requested, coalesce(c.error, ''),
       (SELECT count(*) FROM chronicle.projection_dead_letters d
        WHERE d.projection = c.projection AND d.partition = c.partition AND d.status IN ('parked', 'retry'))`

// casAloneSQL is casSQL for a checkpoint that moves alone, outside a
// transaction (the batch's handlers wrote nothing in it): committed
// without waiting for the WAL flush (synchronous_commit off for this
// statement's own transaction only, set by set_config(..., true) in its
// WHERE, no extra round trip). A crash may lose the last such moves (at
// most a few hundred milliseconds of them), and the runner then delivers
// those events again: the handlers had written nothing with the
// checkpoint, so they have at-least-once effects anyway, and a redelivery
// is within that guarantee. A flush per batch cost a catch-up about
// two-thirds of its time (9.5 ms per commit, 1.9 s of 2.9 s for 200
// batches). Commits with the handlers' writes, dead letters or a rebuild
// use casSQL in their transaction, flushed as usual.
const casAloneSQL = `
UPDATE chronicle.projection_checkpoints c
SET transaction_id = $5::xid8,
    global_position = $6,
    updated_at = CASE WHEN c.transaction_id = $5::xid8 AND c.global_position = $6 THEN c.updated_at ELSE now() END,
    error = NULLIF($7, ''),
    rebuild_requested = c.rebuild_requested AND NOT $8
WHERE c.projection = $1 AND c.partition = $2
  AND c.transaction_id = $3::xid8 AND c.global_position = $4
  AND set_config('synchronous_commit', 'off', true) = 'off'
RETURNING c.projection, c.partition, c.partitions, c.transaction_id, c.global_position,
       c.updated_at, coalesce(c.holder, ''), c.rebuild_requested, coalesce(c.error, ''),
       (SELECT count(*) FROM chronicle.projection_dead_letters d
        WHERE d.projection = c.projection AND d.partition = c.partition AND d.status IN ('parked', 'retry'))`

// positionSQL reads a checkpoint's position, for the error of a conflict.
const positionSQL = `
SELECT transaction_id, global_position FROM chronicle.projection_checkpoints
WHERE projection = $1 AND partition = $2`

// heldLocksSQL lists the advisory locks with a bigint key held in this
// database: classid holds the key's high 32 bits, objid its low 32 bits.
const heldLocksSQL = `
SELECT (classid::bigint << 32) | objid::bigint
FROM pg_locks
WHERE locktype = 'advisory' AND objsubid = 1 AND granted
  AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// tryLockSQL tries a partition's session advisory lock: the lease.
const tryLockSQL = `SELECT pg_try_advisory_lock($1)`

// unlockSQL releases a partition's session advisory lock.
const unlockSQL = `SELECT pg_advisory_unlock($1)`

// nameLockSQL serialises, per projection name, the first claims of a
// projection's partitions (and rebuild requests creating checkpoints), so
// that runners configured with different partition counts cannot both
// pass the check of mismatchSQL. It is a transaction lock in the two-int
// key space, which never collides with the bigint session locks of
// partitions (PostgreSQL tells them apart); the class id is arbitrary, the
// second key is [nameLockKey].
const nameLockSQL = `SELECT pg_advisory_xact_lock(1128809811, $1)`

// mismatchSQL finds a stored partition count of projection $1 other than
// $2.
const mismatchSQL = `
SELECT partitions FROM chronicle.projection_checkpoints
WHERE projection = $1 AND partitions <> $2
LIMIT 1`

// claimSQL creates a partition's checkpoint if needed and records its
// holder.
const claimSQL = `
INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, holder, holder_since)
VALUES ($1, $2, $3, $4, now())
ON CONFLICT (projection, partition) DO UPDATE SET holder = EXCLUDED.holder, holder_since = now()`

// requestRebuildSQL marks every existing partition of a projection for
// rebuild.
const requestRebuildSQL = `
UPDATE chronicle.projection_checkpoints SET rebuild_requested = true
WHERE projection = $1`

// createRebuildSQL marks partitions 0..$2-1 of a projection for rebuild,
// creating the missing ones.
const createRebuildSQL = `
INSERT INTO chronicle.projection_checkpoints (projection, partition, partitions, rebuild_requested)
SELECT $1, p, $2, true FROM generate_series(0, $2 - 1) AS p
ON CONFLICT (projection, partition) DO UPDATE SET rebuild_requested = true`

// setIdleTimeoutSQL sets the session's idle_in_transaction_session_timeout
// (in milliseconds, as text) on a lease's connection, so that the server
// ends a transaction its process left idle (frozen, partitioned) beyond
// the batch timeout.
const setIdleTimeoutSQL = `SELECT set_config('idle_in_transaction_session_timeout', $1, false)`

// countEventsSQL counts the events in ($1, $2) .. ($3, $4].
const countEventsSQL = `
SELECT count(*) FROM chronicle.events
WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
  AND (transaction_id, global_position) <= ($3::xid8, $4::bigint)`

// countStreamEventsSQL counts the events of each stream in ($1, $2) ..
// ($3, $4]: the partition of an event depends on its stream only, so a
// partition's count sums the counts of its streams, computed in Go with
// projection.PartitionOf.
const countStreamEventsSQL = `
SELECT stream_id, count(*) FROM chronicle.events
WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
  AND (transaction_id, global_position) <= ($3::xid8, $4::bigint)
GROUP BY stream_id`

// heartbeatSQL records holder $2 as a live instance of projection $1 for
// $3 milliseconds, forgets instances expired for an hour, and lists the
// live instances, $2 included (the CTEs' changes are not visible to the
// final SELECT, hence the UNION).
const heartbeatSQL = `
WITH beat AS (
    INSERT INTO chronicle.projection_instances (projection, holder, expires_at)
    VALUES ($1, $2, now() + make_interval(secs => $3::bigint / 1000.0))
    ON CONFLICT (projection, holder) DO UPDATE SET expires_at = EXCLUDED.expires_at
), gone AS (
    DELETE FROM chronicle.projection_instances
    WHERE projection = $1 AND holder <> $2 AND expires_at < now() - interval '1 hour'
)
SELECT holder FROM chronicle.projection_instances
WHERE projection = $1 AND holder <> $2 AND expires_at > now()
UNION ALL
SELECT $2::text
ORDER BY 1`

// leaveSQL removes holder $2 from the live instances of projection $1.
const leaveSQL = `
DELETE FROM chronicle.projection_instances WHERE projection = $1 AND holder = $2`

// parkSQL records a dead letter, replacing the projection's earlier one
// for the same event.
const parkSQL = `
INSERT INTO chronicle.projection_dead_letters
    (projection, partition, event_id, stream_id, stream_version, transaction_id, global_position, event_type, error, attempts)
VALUES ($1, $2, $3, $4, $5, $6::xid8, $7, $8, $9, $10)
ON CONFLICT (projection, event_id) DO UPDATE
SET partition = EXCLUDED.partition, stream_id = EXCLUDED.stream_id, stream_version = EXCLUDED.stream_version,
    transaction_id = EXCLUDED.transaction_id, global_position = EXCLUDED.global_position,
    event_type = EXCLUDED.event_type, error = EXCLUDED.error, attempts = EXCLUDED.attempts,
    status = 'parked', parked_at = now(), updated_at = now()`

// settleSQL records the outcome of a retried dead letter.
const settleSQL = `
UPDATE chronicle.projection_dead_letters
SET status = $2,
    attempts = $3,
    error = CASE WHEN $2 = 'parked' THEN $4 ELSE error END,
    parked_at = CASE WHEN $2 = 'parked' THEN now() ELSE parked_at END,
    updated_at = now()
WHERE id = $1 AND status = 'retry'`

// clearDeadLettersSQL deletes a partition's open dead letters, on rebuild.
const clearDeadLettersSQL = `
DELETE FROM chronicle.projection_dead_letters
WHERE projection = $1 AND partition = $2 AND status IN ('parked', 'retry')`

// retryRequestsSQL lists a partition's dead letters to retry.
const retryRequestsSQL = `
SELECT id, projection, partition, event_id, stream_id, stream_version, transaction_id,
       global_position, event_type, error, attempts, status, parked_at, updated_at
FROM chronicle.projection_dead_letters
WHERE projection = $1 AND partition = $2 AND status = 'retry'
ORDER BY id
LIMIT 100`

// deadLettersSQL lists dead letters by projection ($1, ” for all) and
// status ($2, ” for all), after id $3, at most $4.
const deadLettersSQL = `
SELECT id, projection, partition, event_id, stream_id, stream_version, transaction_id,
       global_position, event_type, error, attempts, status, parked_at, updated_at
FROM chronicle.projection_dead_letters
WHERE ($1 = '' OR projection = $1) AND ($2 = '' OR status = $2) AND id > $3
ORDER BY id
LIMIT $4`

// transitionSQL changes a dead letter's status to $2 if it is in one of
// the states $3.
const transitionSQL = `
UPDATE chronicle.projection_dead_letters
SET status = $2, updated_at = now()
WHERE id = $1 AND status = ANY($3::text[])`

// deadLetterStatusSQL reads a dead letter's status, for the error of a
// refused transition.
const deadLetterStatusSQL = `SELECT status FROM chronicle.projection_dead_letters WHERE id = $1`
