-- Push delivery (`exchange::push`): one row per message waiting to be POSTed to a receiver that has a push endpoint in
-- partners.toml. Added in the transaction of the message's disclosure entry; removed in the transaction of the
-- `message-fetched` entry of an accepted push, and in the transaction that purges the message (acknowledgement,
-- recall, "niet voor ons" report, expiry). Ids, times and counters only, never a payload value.
--   state         'waiting' (to be tried at next_ms) or 'gave-up' (max_attempts reached; the pull inbox still has it)
--   lease_owner   the log id of the instance trying it now, until lease_until_ms
--   in_doubt      1 from the moment an attempt may have reached the receiver until it definitely did not: a recall
--                 is refused meanwhile
--   last_outcome  a fixed code: connect-failed, tls-failed, timeout, status-NNN
CREATE TABLE push_queue (
    message_id      TEXT    PRIMARY KEY,
    receiver        TEXT    NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'waiting',
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_ms         INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until_ms  INTEGER NOT NULL DEFAULT 0,
    in_doubt        INTEGER NOT NULL DEFAULT 0,
    created_ms      INTEGER NOT NULL,
    last_outcome    TEXT
) WITHOUT ROWID;
CREATE INDEX push_queue_due ON push_queue (state, next_ms);
