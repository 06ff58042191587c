-- Run by the server at every start only (after 000_init.sql in its init_file), never by the
-- installer: contexts of an earlier run belong to connections that no longer exist.
DELETE FROM ${database}.tenant_context;
