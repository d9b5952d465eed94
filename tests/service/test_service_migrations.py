"""Alembic is the only way the schema changes: upgrade from empty, downgrade, upgrade again."""

from __future__ import annotations

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from service.core import migrate
from service.core.models import Base


def test_upgrade_downgrade_upgrade_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'm.sqlite'}"
    migrate.upgrade(url)
    assert migrate.current(url).startswith(migrate.head_revision())
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert {"jobs", "job_results", "curve_points", "recommendations"} <= set(sa.inspect(conn).get_table_names())
    migrate.downgrade(url, "base")
    assert migrate.current(url) == ""
    with engine.connect() as conn:
        assert set(sa.inspect(conn).get_table_names()) <= {"alembic_version"}
    migrate.upgrade(url)
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    engine.dispose()


def test_migrations_ship_inside_the_package():
    from pathlib import Path

    import migrations

    here = Path(migrations.__file__).parent
    assert (here / "alembic.ini").is_file() and (here / "env.py").is_file()
    assert list((here / "versions").glob("0001_*.py"))
