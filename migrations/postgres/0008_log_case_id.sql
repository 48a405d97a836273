-- A kerngroep case (P13) sends one message to several partners; each recipient's entry carries the case's id (a UUID
-- the sender chose, never pupil data), so the privacy officer finds the whole case with one filter.
ALTER TABLE log_entries ADD COLUMN case_id TEXT;
CREATE INDEX log_entries_case ON log_entries (case_id, time_ms) WHERE case_id IS NOT NULL;
