-- The keyed pseudonym of the pupil a mailbox row is about (NULL for aggregates and for rows written before this
-- migration), so the fetch, acknowledgement and purge entries of a message can name it too and a privacy officer's
-- search by pupil finds them. Never the raw BSN/PGN.
ALTER TABLE messages ADD COLUMN subject TEXT;
