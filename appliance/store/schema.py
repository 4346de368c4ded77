"""DDL of the fleet database (`<data>/db/heron.duckdb`). Times are epoch seconds (DOUBLE, UTC)."""

from __future__ import annotations

__all__ = ["SCHEMA"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    uuid VARCHAR PRIMARY KEY, identifier VARCHAR UNIQUE, key_hash VARCHAR UNIQUE,
    role VARCHAR, grp VARCHAR, description VARCHAR, created DOUBLE);
CREATE TABLE IF NOT EXISTS endpoints (
    uuid VARCHAR PRIMARY KEY, hostname VARCHAR, ip VARCHAR, grp VARCHAR, criticality INTEGER,
    status VARCHAR, system_info VARCHAR, config VARCHAR, last_event DOUBLE, last_detection DOUBLE,
    last_connection DOUBLE, created DOUBLE, enrolled BOOLEAN);
CREATE TABLE IF NOT EXISTS tokens (
    token_hash VARCHAR PRIMARY KEY, uuid VARCHAR, grp VARCHAR, expires DOUBLE, used DOUBLE,
    created DOUBLE);
CREATE TABLE IF NOT EXISTS certs (
    serial VARCHAR PRIMARY KEY, uuid VARCHAR, sha256 VARCHAR, not_before DOUBLE, not_after DOUBLE,
    revoked DOUBLE);
CREATE TABLE IF NOT EXISTS commands (
    id VARCHAR PRIMARY KEY, seq BIGINT, endpoint VARCHAR, name VARCHAR, args VARCHAR,
    drop_files VARCHAR, fetch_files VARCHAR, timeout DOUBLE, expect_json BOOLEAN, state VARCHAR,
    created DOUBLE, sent DOUBLE, completed DOUBLE, result VARCHAR, issuer VARCHAR);
CREATE SEQUENCE IF NOT EXISTS command_seq;
CREATE TABLE IF NOT EXISTS iocs (
    uuid VARCHAR PRIMARY KEY, guuid VARCHAR, source VARCHAR, value VARCHAR, type VARCHAR,
    created DOUBLE);
CREATE TABLE IF NOT EXISTS rules (
    name VARCHAR PRIMARY KEY, text VARCHAR, updated DOUBLE);
CREATE TABLE IF NOT EXISTS detections (
    endpoint VARCHAR, ts DOUBLE, receipt DOUBLE, event_hash VARCHAR, signatures VARCHAR,
    criticality INTEGER, attack VARCHAR);
ALTER TABLE detections ADD COLUMN IF NOT EXISTS attack VARCHAR;
CREATE TABLE IF NOT EXISTS reports (
    endpoint VARCHAR PRIMARY KEY, stats VARCHAR, updated DOUBLE);
CREATE TABLE IF NOT EXISTS report_archive (
    endpoint VARCHAR, stats VARCHAR, archived DOUBLE);
CREATE TABLE IF NOT EXISTS artifacts (
    endpoint VARCHAR, pguid VARCHAR, ehash VARCHAR, filename VARCHAR, size BIGINT,
    sha256 VARCHAR, created DOUBLE, PRIMARY KEY (endpoint, pguid, ehash, filename));
CREATE TABLE IF NOT EXISTS audit (
    ts DOUBLE, actor VARCHAR, role VARCHAR, action VARCHAR, target VARCHAR, detail VARCHAR);
CREATE TABLE IF NOT EXISTS settings (key VARCHAR PRIMARY KEY, value VARCHAR, updated DOUBLE);
CREATE TABLE IF NOT EXISTS documents (
    kind VARCHAR, key VARCHAR, body VARCHAR, sha256 VARCHAR, updated DOUBLE,
    PRIMARY KEY (kind, key));
CREATE TABLE IF NOT EXISTS tools (
    name VARCHAR, os VARCHAR, alias VARCHAR, md5 VARCHAR, sha1 VARCHAR, sha256 VARCHAR,
    sha512 VARCHAR, size BIGINT, data BLOB, updated DOUBLE, PRIMARY KEY (name, os));
"""
