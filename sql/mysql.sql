-- tpops schema for MySQL/MariaDB (Database: mysql).
-- The seed's tables and column names (TPOPS sql.txt), so that a TPOPS
-- database keeps working; tpops-dbinit creates what is missing and upgrades
-- a seed-era database in place (see docs/mysql.md). Every statement here
-- must be safe to run again: tpops-dbinit runs it at every call.
-- Statements end with a semicolon at the end of a line.

-- login and mail are text (utf8mb4; case-insensitive as the seed's latin1
-- columns were). passwd and maildir are byte strings: a stored hash or a
-- seed-era plaintext password, and a file system path, compared and used
-- byte for byte.
CREATE TABLE IF NOT EXISTS `user` (
	uid INT NOT NULL AUTO_INCREMENT,
	login VARCHAR(255) NOT NULL,
	passwd VARBINARY(255) NOT NULL,
	mail VARCHAR(255) NOT NULL,
	maildir VARBINARY(1024) NOT NULL DEFAULT '',
	quota BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (uid),
	UNIQUE KEY login (login),
	UNIQUE KEY mail (mail)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- The message is header || body || its msg_part rows (in pos order), the
-- octets as delivered: header holds the header lines and the empty line
-- that ends them, body the rest. A message too large to send as one column
-- value (see docs/mysql.md) keeps its header here and its body in msg_part.
-- timestamp is the arrival time (local time of the server); the UIDL is
-- id.uid.(timestamp + 0) as the original TPOPS made it, so it must stay a
-- DATETIME without fractional seconds.
-- size is the octet count POP3 sends (CRLF line ends, no dot-stuffing).
-- msgno is the seed's column, kept for compatibility and never written.
-- uidl is NULL, or the UIDL the message had on the server it was imported
-- from (tpops-import), which tpops then serves instead of its own.
CREATE TABLE IF NOT EXISTS msg (
	id BIGINT NOT NULL AUTO_INCREMENT,
	uid INT NOT NULL,
	msgno INT NOT NULL DEFAULT 0,
	timestamp DATETIME NOT NULL,
	header LONGBLOB NOT NULL,
	body LONGBLOB NOT NULL,
	size BIGINT NOT NULL,
	uidl VARCHAR(70) CHARACTER SET ascii COLLATE ascii_bin NULL,
	PRIMARY KEY (id),
	KEY msg_arrival (uid, timestamp, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Every UIDL tpops-import has brought into a user's maildrop, kept after
-- the message is deleted, so that a later import from the same server
-- does not bring a deleted message back.
CREATE TABLE IF NOT EXISTS msg_imported (
	uid INT NOT NULL,
	uidl VARCHAR(70) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
	PRIMARY KEY (uid, uidl)
) ENGINE=InnoDB;

-- The rest of a large message, in pieces of at most 1 MiB: data holds the
-- octets at pos (counted from the end of header || body). Reading a piece
-- costs its own size, where reading any part of one LONGBLOB costs the
-- whole value.
CREATE TABLE IF NOT EXISTS msg_part (
	id BIGINT NOT NULL,
	pos BIGINT NOT NULL,
	data MEDIUMBLOB NOT NULL,
	PRIMARY KEY (id, pos)
) ENGINE=InnoDB;

-- One row per locked maildrop: a lease held by owner until expires (the
-- database server's Unix time), renewed while the session lives; an expired
-- row (a seed-era row has expires 0) is free. timestamp is the seed's
-- column (when the lock was taken). uid is the primary key (the seed had a
-- UNIQUE key): Galera needs one on every table (wsrep_mode=
-- REQUIRED_PRIMARY_KEY refuses a table without), and two servers taking
-- one lease through two nodes conflict on it.
CREATE TABLE IF NOT EXISTS locks (
	uid INT NOT NULL,
	timestamp TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP,
	owner VARCHAR(255) NOT NULL DEFAULT '',
	expires BIGINT NOT NULL DEFAULT 0,
	PRIMARY KEY (uid)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- Secrets tpops-dbinit makes once: the key of the SCRAM salts offered for
-- unknown logins (docs/SECURITY.md), unless AuthSecret is set. Every
-- server of a cluster reads the same one.
CREATE TABLE IF NOT EXISTS tpops_secret (
	name VARCHAR(64) NOT NULL,
	value VARBINARY(255) NOT NULL,
	PRIMARY KEY (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
