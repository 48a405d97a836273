-- Hashes of the perfect Merkle subtrees of 256 leaves and more that the writer completes (one row per 128 entries,
-- amortised), written in the same transaction as the entries, so an inclusion or consistency proof reads O(log n)
-- rows. Append-only like log_entries. Logs written before this migration have none for their earlier part; proofs
-- then hash those leaves instead.
CREATE TABLE log_subtrees (
    log_id TEXT    NOT NULL,
    level  INTEGER NOT NULL,
    idx    INTEGER NOT NULL,
    hash   BLOB    NOT NULL,
    PRIMARY KEY (log_id, level, idx)
) WITHOUT ROWID;
