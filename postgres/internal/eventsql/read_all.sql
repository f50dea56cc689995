-- A page of the global order after a position, up to the transaction-id
-- horizon: rows written by a transaction that is older than every
-- transaction still running. Such a transaction has finished, so no row can
-- ever appear below the horizon again, and a reader that resumes from its
-- last position never skips one. See docs/postgres.md, "The ordering
-- guarantee". A range scan of events_pkey.
--
-- $1 transaction id, $2 global position (the position read up to), $3 limit,
-- at most 10000 (ReadAllMaxPage: the store splits larger reads).
--
-- The literal inner LIMIT bounds the plan's cost at any table size. With
-- only LIMIT $3, a generic plan (a pooler's, plan_cache_mode =
-- force_generic_plan, or PostgreSQL's own choice after five executions)
-- cannot know the limit and costs the page as 10% of the rows the WHERE may
-- match: the estimate grows with the table, and past about 14 million
-- events it crosses jit_above_cost, so every page pays about 80 ms of JIT
-- compilation for 0.2 ms of work. Capped at 10000 rows, the generic plan
-- costs about 210 at any size (about 500 times under the JIT threshold), is
-- as cheap as the custom plans, and PostgreSQL keeps it (no re-planning per
-- page). The outer ORDER BY repeats the inner one and adds no sort node.
SELECT global_position, transaction_id, event_id, stream_id, stream_version,
       event_type, schema_version, data, metadata, recorded_at
FROM (
    SELECT global_position, transaction_id, event_id, stream_id, stream_version,
           event_type, schema_version, data, metadata, recorded_at
    FROM chronicle.events
    WHERE (transaction_id, global_position) > ($1::xid8, $2::bigint)
      AND transaction_id < pg_snapshot_xmin(pg_current_snapshot())
    ORDER BY transaction_id, global_position
    LIMIT 10000
) AS page
ORDER BY transaction_id, global_position
LIMIT $3
