-- Crypto-shredding (package shred): the data keys of data subjects. Personal
-- fields of events are sealed with their subject's key; deleting the keys
-- (forgetting the subject) leaves those fields unreadable everywhere, while
-- the events stay as they are. docs/operations.md, "GDPR erasure".
--
-- One row per subject. forgotten_at is set when the subject is forgotten:
-- the row stays as a tombstone (the subject id alone) so that no process
-- creates a new key for a forgotten subject. Creating a key locks this row
-- (INSERT … ON CONFLICT DO UPDATE), and forgetting updates it, so a key
-- created concurrently with a forget is either deleted by it or refused.
CREATE TABLE chronicle.subjects (
    subject_id   text        NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CONSTRAINT subjects_pkey PRIMARY KEY (subject_id)
);

-- The data keys: version 1, 2, … per subject (a rotation adds one), each
-- wrapped by the application's key-encryption key, never stored in the
-- clear. key_id is 128 random bits in hexadecimal, named by sealed values.
CREATE TABLE chronicle.subject_keys (
    key_id      text        NOT NULL,
    subject_id  text        NOT NULL,
    version     integer     NOT NULL,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT subject_keys_pkey PRIMARY KEY (key_id),
    CONSTRAINT subject_keys_subject_version_key UNIQUE (subject_id, version),
    CONSTRAINT subject_keys_subject_fkey FOREIGN KEY (subject_id) REFERENCES chronicle.subjects (subject_id),
    CONSTRAINT subject_keys_version_check CHECK (version > 0)
);
