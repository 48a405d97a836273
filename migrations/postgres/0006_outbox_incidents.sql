-- The sender's view of every message it sent (`GET /v1/outbox`), kept after the mailbox row is purged: ids,
-- partners, purpose, times and a status, never a payload value. A row is added by a trigger with every new mailbox
-- row (in the transaction of the disclosure entry); its status changes only in the transaction of the log entry that
-- records the change (fetch, acknowledgement, expiry, recall, a "niet voor ons" report).
CREATE TABLE message_outbox (
    id              TEXT    PRIMARY KEY,
    sender          TEXT    NOT NULL,
    receiver        TEXT    NOT NULL,
    purpose         TEXT    NOT NULL,
    message_type    TEXT    NOT NULL,
    created_ms      BIGINT  NOT NULL,
    expires_ms      BIGINT  NOT NULL,
    log_id          TEXT    NOT NULL,
    seq             BIGINT  NOT NULL,
    status          TEXT    NOT NULL DEFAULT 'waiting',
    fetched_ms      BIGINT,
    stripped        BIGINT  NOT NULL DEFAULT 0,
    ended_ms        BIGINT,
    end_reason      TEXT
);
CREATE INDEX message_outbox_sender ON message_outbox (sender, created_ms);
INSERT INTO message_outbox (id, sender, receiver, purpose, message_type, created_ms, expires_ms, log_id, seq, status)
    SELECT id, sender, receiver, purpose, message_type, created_ms, expires_ms, log_id, seq,
           CASE WHEN fetch_count > 0 THEN 'fetched' ELSE 'waiting' END
    FROM messages;
CREATE FUNCTION message_outbox_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_outbox (id, sender, receiver, purpose, message_type, created_ms, expires_ms, log_id, seq)
    VALUES (NEW.id, NEW.sender, NEW.receiver, NEW.purpose, NEW.message_type, NEW.created_ms, NEW.expires_ms, NEW.log_id, NEW.seq);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_outbox AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_outbox_insert();

-- The breach register (AVG 33(5)) of each organisation: one row per incident as it stands now. Every change is also a
-- log entry (`incident-opened`, `incident-updated`, `incident-closed`) carrying the SHA-256 of the record after it, so
-- a changed row no entry accounts for is detectable. `record` is the incident as JSON: pseudonyms and field paths,
-- never a PGN or a payload value.
CREATE TABLE incidents (
    id             TEXT    PRIMARY KEY,
    organisation   TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    discovered_ms  BIGINT  NOT NULL,
    deadline_ms    BIGINT  NOT NULL,
    decided        BIGINT  NOT NULL DEFAULT 0,
    updated_ms     BIGINT  NOT NULL,
    record         TEXT    NOT NULL
);
CREATE INDEX incidents_organisation ON incidents (organisation, discovered_ms);
