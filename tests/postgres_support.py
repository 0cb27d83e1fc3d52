"""The test PostgreSQL server: its URL, and a fresh schema per test.

`make test` starts a private server (scripts/postgres.sh), which writes its URL to
.build/postgres/url; CODEMODE_TEST_POSTGRES_URL overrides it. Without a reachable server the
PostgreSQL tests skip locally and fail on CI (CI=true), where they must run.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import parse_qsl, urlencode

import psycopg
import pytest
from psycopg import sql

URL_FILE = Path(__file__).resolve().parent.parent / ".build" / "postgres" / "url"


@functools.cache
def _reachable_url() -> tuple[str | None, str]:
    """(url, why not) for the test server, checked once per test run."""
    url = os.environ.get("CODEMODE_TEST_POSTGRES_URL") or (URL_FILE.read_text().strip() if URL_FILE.exists() else "")
    if not url:
        return None, "no test PostgreSQL: run `make postgres` (or set CODEMODE_TEST_POSTGRES_URL)"
    try:
        with psycopg.connect(url, connect_timeout=10):
            pass
    except psycopg.OperationalError as error:
        return None, f"the test PostgreSQL at {url} is not reachable ({error}); run `make postgres`"
    return url, ""


def postgres_url() -> str:
    """The test server's URL; skips the test when there is none, except on CI, where it fails."""
    url, why_not = _reachable_url()
    if url is None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL tests must run on CI: {why_not}")
        pytest.skip(why_not)
    return url


def with_search_path(url: str, schema: str) -> str:
    """`url` with its connections' tables in `schema` (libpq's `options`)."""
    base, _, query = url.partition("?")  # not urlunsplit: it drops the `//` of an empty host
    options = [(key, value) for key, value in parse_qsl(query) if key != "options"]
    options.append(("options", f"-csearch_path={schema}"))
    return f"{base}?{urlencode(options)}"


@contextmanager
def fresh_postgres_schema() -> Iterator[str]:
    """A URL whose tables live in a new, empty schema, dropped afterwards."""
    url = postgres_url()
    schema = f"test_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield with_search_path(url, schema)
    finally:
        with psycopg.connect(url, autocommit=True) as connection:
            connection.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
