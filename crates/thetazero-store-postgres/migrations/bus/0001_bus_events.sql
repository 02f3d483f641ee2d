-- The cross-replica event bus (PostgreSQL only, so it has its own migration
-- list and never takes a number the Store's migrations share with SQLite).

-- The last sequence number handed out. Taken from a counter row updated in
-- the publishing transaction rather than from a sequence: the row lock orders
-- publishers, so sequence numbers commit in order and a rolled-back publish
-- leaves no gap.
CREATE TABLE bus_head (
    id  BOOLEAN PRIMARY KEY DEFAULT TRUE CHECK (id),
    seq BIGINT  NOT NULL
);
INSERT INTO bus_head (id, seq) VALUES (TRUE, 0);

CREATE TABLE bus_events (
    seq        BIGINT      PRIMARY KEY,
    topic      TEXT        NOT NULL,
    payload    JSONB       NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX bus_events_created ON bus_events(created_at);
