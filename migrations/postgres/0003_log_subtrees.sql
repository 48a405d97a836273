-- Hashes of the perfect Merkle subtrees of 256 leaves and more that the writer completes (one row per 128 entries,
-- amortised), written in the same transaction as the entries, so an inclusion or consistency proof reads O(log n)
-- rows. Append-only like log_entries. Logs written before this migration have none for their earlier part; proofs
-- then hash those leaves instead.
CREATE TABLE log_subtrees (
    log_id TEXT     NOT NULL,
    level  SMALLINT NOT NULL,
    idx    BIGINT   NOT NULL,
    hash   BYTEA    NOT NULL,
    PRIMARY KEY (log_id, level, idx)
);
