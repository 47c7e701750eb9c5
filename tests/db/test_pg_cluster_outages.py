"""Database outages of every kind are 503 `unavailable` with `Retry-After` (issue 10, item 6),
on a PostgreSQL cluster this test starts itself (`initdb` + `pg_ctl` on a free port of
127.0.0.1, under a temporary directory): connections refused by the database
(`ALLOW_CONNECTIONS false`, SQLSTATE 55000), too many connections (53300), the server stopped
and restarted (57P01, then refused), the database dropped (3D000). The first request after each
recovery succeeds. The SQLSTATE mapping itself is checked for every code, 57P03 (starting up)
included, which a test cannot bring about on demand.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx2
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_dbapi

from llm_service.app import create_app
from llm_service.errors import is_database_outage, sqlstate_of
from tests.conftest import Api, make_settings, require_server

pytestmark = pytest.mark.postgres


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Cluster:
    """A throwaway PostgreSQL cluster; run as the `postgres` OS user when the test is root."""

    bin_dir: Path
    root: Path
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    def run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=60)

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                   "-c max_connections=10 -c superuser_reserved_connections=3 -c fsync=off")
        self.run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                 str(self.root / "log"), "-w", "-t", "30", "start")

    def stop(self, mode: str = "fast") -> None:
        self.run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    async def admin(self, database: str = "postgres") -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=self.port, user="postgres",
                                     database=database, timeout=5)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not found:
        require_server("PostgreSQL's initdb (under /usr/lib/postgresql/*/bin)",
                       FileNotFoundError("initdb"))
    root = Path(tempfile.mkdtemp(prefix="llm-pg-"))
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(root, owner.pw_uid, owner.pw_gid)
    cluster = Cluster(Path(found[-1]).parent, root, free_port())
    started = False
    try:
        cluster.run("initdb", "-D", str(cluster.data), "-U", "postgres", "-A", "trust",
                    "-E", "UTF8", "--no-sync")
        cluster.start()
        started = True
        yield cluster
    finally:
        if started:
            with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
                cluster.stop("immediate")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def on_cluster(cluster: Cluster, tmp_path: Path) -> AsyncIterator[Api]:
    admin = await cluster.admin()
    try:  # the service's own role, not a superuser: superuser slots stay free for the test
        await admin.execute("CREATE ROLE app LOGIN")
        await admin.execute("CREATE DATABASE app OWNER app")
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://app@127.0.0.1:{cluster.port}/app"
    settings = make_settings(tmp_path, url, DB_TIMEOUT_S=2)
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://test"
    ) as client:
        yield Api(app=app, client=client, settings=settings, backend="postgres")


async def assert_unavailable(api: Api, times: int = 2) -> None:
    """Every route that needs the database says 503 `unavailable` with Retry-After."""
    for _ in range(times):
        for path in ("/llm/configs", "/health/ready"):
            response = await api.client.get(path, headers=api.auth(1))
            assert response.status_code == 503, (path, response.text)
            assert response.json()["code"] == "unavailable"
            assert response.headers["Retry-After"] == "5"
            assert "SQL" not in response.text and "app" not in response.json()["error"]


async def assert_available(api: Api) -> None:
    response = await api.client.get("/llm/configs", headers=api.auth(1))
    assert response.status_code == 200, response.text
    assert (await api.client.get("/health/ready")).status_code == 200


async def test_every_kind_of_outage_is_503_and_the_first_request_after_it_succeeds(
    cluster: Cluster, on_cluster: Api
) -> None:
    api = on_cluster
    await assert_available(api)

    # The database refuses connections (55000); its open sessions are ended (57P01).
    admin = await cluster.admin()
    try:
        await admin.execute("ALTER DATABASE app ALLOW_CONNECTIONS false")
        await admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = 'app'")
        await assert_unavailable(api)
        await admin.execute("ALTER DATABASE app ALLOW_CONNECTIONS true")
    finally:
        await admin.close()
    await assert_available(api)

    # Too many connections (53300): every slot a non-superuser may take is held elsewhere.
    await api.runtime.engine.dispose()
    hogs: list[asyncpg.Connection] = []
    try:
        while True:
            try:
                hogs.append(await asyncpg.connect(host="127.0.0.1", port=cluster.port,
                                                  user="app", database="app", timeout=5))
            except asyncpg.TooManyConnectionsError:
                break
            assert len(hogs) < 20
        await assert_unavailable(api)
    finally:
        for hog in hogs:
            await hog.close()
    await assert_available(api)

    # The server stopped (pooled connections die, new ones are refused), then started again.
    cluster.stop("fast")
    await assert_unavailable(api)
    cluster.start()
    await assert_available(api)

    # The database dropped (3D000).
    admin = await cluster.admin()
    try:
        await admin.execute("DROP DATABASE app WITH (FORCE)")
    finally:
        await admin.close()
    await assert_unavailable(api)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError, asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError, asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.TooManyConnectionsError, asyncpg.exceptions.InvalidCatalogNameError,
    asyncpg.exceptions.ConnectionFailureError,
])
def test_outage_sqlstates_are_outages_as_sqlalchemy_raises_them(error: type) -> None:
    raw = error("the database is not there")
    adapted = AsyncAdapt_asyncpg_dbapi.Error("the database is not there", raw)
    wrapped = sa_exc.DBAPIError("SELECT 1", None, adapted)  # type: ignore[arg-type]
    assert sqlstate_of(wrapped) == error.sqlstate
    assert is_database_outage(wrapped) and is_database_outage(raw)


@pytest.mark.parametrize("error", [
    asyncpg.exceptions.UniqueViolationError, asyncpg.exceptions.UndefinedTableError,
    asyncpg.exceptions.SyntaxOrAccessError,
])
def test_query_errors_are_not_outages(error: type) -> None:
    adapted = AsyncAdapt_asyncpg_dbapi.Error("a bug", error("a bug"))
    assert not is_database_outage(sa_exc.DBAPIError("SELECT 1", None, adapted))  # type: ignore[arg-type]
