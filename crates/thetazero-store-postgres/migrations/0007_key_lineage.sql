-- Which key created each key, so that a permission request's approver can be
-- checked against the requester's descendants; and the code a permission
-- request was raised for, so that its grant lapses when the code changes.
ALTER TABLE api_keys ADD COLUMN created_by BIGINT REFERENCES api_keys(id);
ALTER TABLE permission_requests ADD COLUMN code_sha256 TEXT;
