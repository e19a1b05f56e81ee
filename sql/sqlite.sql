-- tpops schema for SQLite (the embedded default).
-- The seed's tables and column names, so that TPOPS databases keep working;
-- message parts are BLOBs (8-bit safe, any size SQLite allows).
-- 16 KiB pages (before anything is created): a RETR reads a message's
-- overflow pages one read each, see docs/BENCHMARKS.md.
PRAGMA page_size = 16384;
PRAGMA journal_mode = WAL;

CREATE TABLE IF NOT EXISTS "user" (
	uid INTEGER PRIMARY KEY AUTOINCREMENT,
	login TEXT NOT NULL UNIQUE,
	passwd TEXT NOT NULL,
	mail TEXT NOT NULL UNIQUE,
	maildir TEXT NOT NULL DEFAULT '',
	quota INTEGER NOT NULL DEFAULT 0
);
-- Logins and addresses name a user with ASCII letters in either case and
-- every other octet exact (docs/SECURITY.md, "Logins"): SQLite's NOCASE is
-- that rule. Unique under it, so that "Alice" and "alice" cannot be two
-- users; the look-ups use these indexes.
CREATE UNIQUE INDEX IF NOT EXISTS user_login_nocase ON "user" (login COLLATE NOCASE);
CREATE UNIQUE INDEX IF NOT EXISTS user_mail_nocase ON "user" (mail COLLATE NOCASE);

-- header || body is the message exactly as delivered: header holds the
-- header lines and the empty line that ends them, body the rest.
-- timestamp is the arrival time, local time, 'YYYY-MM-DD hh:mm:ss'; the
-- UIDL is id.uid.YYYYMMDDhhmmss as the original TPOPS made it.
-- size is the octet count POP3 sends (CRLF line ends, no dot-stuffing).
-- msgno is the seed's column, kept for compatibility and never written.
-- uidl is NULL, or the UIDL the message had on the server it was imported
-- from (tpops-import), which tpops then serves instead of its own.
-- (tpops-dbinit adds it to a database made before it.)
CREATE TABLE IF NOT EXISTS msg (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	uid INTEGER NOT NULL,
	msgno INTEGER NOT NULL DEFAULT 0,
	timestamp TEXT NOT NULL,
	header BLOB NOT NULL,
	body BLOB NOT NULL,
	size INTEGER NOT NULL,
	uidl TEXT
);
-- Covers the listing at login (uid, order, size, imported UIDL): no
-- message row, and so no BLOB overflow page, is read to list a maildrop.
CREATE INDEX IF NOT EXISTS msg_uid_listing ON msg (uid, timestamp, id, size, uidl);
DROP INDEX IF EXISTS msg_uid_list;
DROP INDEX IF EXISTS msg_uid;

-- Every UIDL tpops-import has brought into a user's maildrop, kept after
-- the message is deleted, so that a later import from the same server
-- does not bring a deleted message back.
CREATE TABLE IF NOT EXISTS msg_imported (
	uid INTEGER NOT NULL,
	uidl TEXT NOT NULL,
	PRIMARY KEY (uid, uidl)
) WITHOUT ROWID;

-- A body over 1 MiB is stored here in pieces of 256 KiB (pos 0, 1, ...)
-- and msg.body is empty: the message is header || body || the parts in
-- order. RETR then reads any piece of it with one indexed lookup.
CREATE TABLE IF NOT EXISTS msg_part (
	id INTEGER NOT NULL,
	pos INTEGER NOT NULL,
	data BLOB NOT NULL,
	PRIMARY KEY (id, pos)
);

-- One row per locked maildrop: a lease held by owner until expires (Unix
-- time), renewed while the session lives; an expired row is free.
CREATE TABLE IF NOT EXISTS locks (
	uid INTEGER PRIMARY KEY,
	owner TEXT NOT NULL DEFAULT '',
	expires INTEGER NOT NULL DEFAULT 0,
	timestamp TEXT
);

-- Secrets tpops-dbinit makes once: the key of the SCRAM salts offered for
-- unknown logins (docs/SECURITY.md), unless AuthSecret is set.
CREATE TABLE IF NOT EXISTS tpops_secret (
	name TEXT PRIMARY KEY,
	value TEXT NOT NULL
);
