-- The pupil's birth date registered with a consent (YYYY-MM-DD), for the age rules of who may consent when the
-- message itself carries no birth date (DOMAIN.md). NULL when none was given: an age-dependent consent then does
-- not count. Never the BSN/PGN.
ALTER TABLE consents ADD COLUMN subject_birth_date TEXT;
