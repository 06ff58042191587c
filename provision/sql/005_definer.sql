-- The owner of every routine, view and trigger. Locked: nobody can log in as it; its
-- rights are used only through the SQL SECURITY DEFINER objects it owns.
CREATE USER IF NOT EXISTS 'api_definer'@'localhost' ACCOUNT LOCK;
ALTER USER 'api_definer'@'localhost' ACCOUNT LOCK;
