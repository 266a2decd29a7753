import pytest
import sqlalchemy as sa


@pytest.mark.postgres
def test_pg_url_isolates_each_test_in_its_own_schema(pg_url: str) -> None:
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("create table probe (x int)")
        schema = conn.exec_driver_sql("select current_schema()").scalar()
    engine.dispose()
    assert schema is not None
    assert schema.startswith("t_")
