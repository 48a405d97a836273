-- log_entries as an ordinary rowid table. A WITHOUT ROWID table keeps at most ~1 KB of a row in its B-tree page and
-- moves the rest of an entry (a P1 disclosure entry is ~3.2 KB) to overflow pages, so every entry cost a B-tree cell
-- plus a mostly empty overflow page; a rowid table stores entries of up to ~4 KB in place. Same columns, same
-- primary key (now a unique index), same indexes; rows are copied unchanged, so every hash still verifies.
CREATE TABLE log_entries_rowid (
    log_id       TEXT    NOT NULL,
    seq          INTEGER NOT NULL,
    time_ms      INTEGER NOT NULL,
    event        TEXT    NOT NULL,
    partner      TEXT    NOT NULL,
    organisation TEXT    NOT NULL,
    sender       TEXT,
    receiver     TEXT,
    purpose      TEXT,
    flow_id      TEXT,
    subject      TEXT,
    outcome      TEXT    NOT NULL,
    entry        BLOB    NOT NULL,
    leaf_hash    BLOB    NOT NULL,
    chain_hash   BLOB    NOT NULL,
    PRIMARY KEY (log_id, seq)
);
INSERT INTO log_entries_rowid
    SELECT log_id, seq, time_ms, event, partner, organisation, sender, receiver, purpose, flow_id, subject, outcome,
           entry, leaf_hash, chain_hash
    FROM log_entries ORDER BY log_id, seq;
DROP TABLE log_entries;
ALTER TABLE log_entries_rowid RENAME TO log_entries;
CREATE INDEX log_entries_time ON log_entries (time_ms, log_id, seq);
CREATE INDEX log_entries_subject ON log_entries (subject, time_ms);
CREATE INDEX log_entries_sender ON log_entries (sender, time_ms);
CREATE INDEX log_entries_receiver ON log_entries (receiver, time_ms);
CREATE INDEX log_entries_organisation ON log_entries (organisation, time_ms);
