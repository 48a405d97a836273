-- Where the disclosure entry of every message stands, by message id: a reply's `in_reply_to` is looked up here
-- (`Store::disclosure_of_message`), because the mailbox row is deleted on acknowledgement and the log entry keeps the
-- message id only inside its bytes. Filled by a trigger on every new mailbox row, in the same transaction as the
-- entry and the row; never updated or deleted (append-only like log_entries). Mailbox rows still present when this
-- migration runs are copied in; messages acknowledged or purged before it cannot be answered with `in_reply_to`.
CREATE TABLE message_disclosures (
    id     TEXT   PRIMARY KEY,
    log_id TEXT   NOT NULL,
    seq    BIGINT NOT NULL
);
INSERT INTO message_disclosures (id, log_id, seq) SELECT id, log_id, seq FROM messages;
CREATE FUNCTION message_disclosures_insert() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO message_disclosures (id, log_id, seq) VALUES (NEW.id, NEW.log_id, NEW.seq);
    RETURN NULL;
END
$$;
CREATE TRIGGER messages_disclosure AFTER INSERT ON messages
    FOR EACH ROW EXECUTE FUNCTION message_disclosures_insert();
