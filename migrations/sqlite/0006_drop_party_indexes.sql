-- Since 0005 the privacy officer's organisation and partner filters walk the time index (`+column` in the search,
-- see `entries_query`), so on SQLite no statement reads the three indexes by organisation, sender and receiver any
-- more. Each was one more B-tree a log entry is inserted into: one more page in the WAL at every commit, and a few
-- more per commit at larger batches. PostgreSQL keeps them (its planner ORs them for a scope matching few rows).
DROP INDEX IF EXISTS log_entries_organisation;
DROP INDEX IF EXISTS log_entries_sender;
DROP INDEX IF EXISTS log_entries_receiver;
