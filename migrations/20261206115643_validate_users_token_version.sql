-- Validate the check that the previous file added NOT VALID: this scans "users" under locks
-- that let users be read and written meanwhile.
ALTER TABLE "users" VALIDATE CONSTRAINT "users_token_version_non_negative";
