-- ketenpoort schema v1 (PostgreSQL). The disclosure log is append-only: no UPDATE or DELETE touches log_entries.
CREATE TABLE log_entries (
    log_id       TEXT    NOT NULL,
    seq          BIGINT NOT NULL,
    time_ms      BIGINT NOT NULL,
    event        TEXT    NOT NULL,
    partner      TEXT    NOT NULL,
    organisation TEXT    NOT NULL,
    sender       TEXT,
    receiver     TEXT,
    purpose      TEXT,
    flow_id      TEXT,
    subject      TEXT,
    outcome      TEXT    NOT NULL,
    entry        BYTEA    NOT NULL,
    leaf_hash    BYTEA    NOT NULL,
    chain_hash   BYTEA    NOT NULL,
    PRIMARY KEY (log_id, seq)
);
CREATE INDEX log_entries_time ON log_entries (time_ms, log_id, seq);
CREATE INDEX log_entries_subject ON log_entries (subject, time_ms);
CREATE INDEX log_entries_sender ON log_entries (sender, time_ms);
CREATE INDEX log_entries_receiver ON log_entries (receiver, time_ms);
CREATE INDEX log_entries_organisation ON log_entries (organisation, time_ms);

CREATE TABLE log_state (
    log_id     TEXT PRIMARY KEY,
    size       BIGINT NOT NULL,
    frontier   BYTEA    NOT NULL,
    chain_head BYTEA    NOT NULL
);

CREATE TABLE checkpoints (
    log_id    TEXT    NOT NULL,
    tree_size BIGINT NOT NULL,
    time_ms   BIGINT NOT NULL,
    note      TEXT    NOT NULL,
    PRIMARY KEY (log_id, tree_size)
);

CREATE TABLE messages (
    pos           BIGSERIAL PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    sender        TEXT    NOT NULL,
    receiver      TEXT    NOT NULL,
    message_type  TEXT    NOT NULL,
    purpose       TEXT    NOT NULL,
    sealed        BYTEA    NOT NULL,
    consent_paths TEXT    NOT NULL,
    created_ms    BIGINT NOT NULL,
    expires_ms    BIGINT NOT NULL,
    log_id        TEXT    NOT NULL,
    seq           BIGINT NOT NULL,
    leaf_hash     BYTEA    NOT NULL,
    fetch_count   BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX messages_inbox ON messages (receiver, pos);
CREATE INDEX messages_expiry ON messages (expires_ms);

CREATE TABLE idempotency (
    sender    TEXT    NOT NULL,
    key       TEXT    NOT NULL,
    body_hash TEXT    NOT NULL,
    status    BIGINT NOT NULL,
    response  BYTEA   NOT NULL,
    log_id    TEXT    NOT NULL,
    seq       BIGINT  NOT NULL,
    leaf_hash BYTEA   NOT NULL,
    PRIMARY KEY (sender, key)
);

CREATE TABLE consents (
    id            TEXT PRIMARY KEY,
    registered_by TEXT    NOT NULL,
    subject       TEXT    NOT NULL,
    purpose       TEXT    NOT NULL,
    recipient     TEXT    NOT NULL,
    categories    TEXT    NOT NULL,
    given_by      TEXT    NOT NULL,
    evidence      TEXT    NOT NULL,
    valid_from    TEXT    NOT NULL,
    valid_until   TEXT    NOT NULL,
    created_ms    BIGINT NOT NULL,
    withdrawn_ms  BIGINT
);
CREATE INDEX consents_subject ON consents (subject);
CREATE INDEX consents_registered_by ON consents (registered_by);
