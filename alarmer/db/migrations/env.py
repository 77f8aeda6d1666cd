"""Alembic environment: runs on the engine handed over by alarmer.db."""

from alembic import context

from alarmer import db

config = context.config
#: Migrations are written by hand (one branch per capability); a test
#: compares them with the models, so no metadata is needed here.
target_metadata = None


def run() -> None:
    """Run the migrations online, on the engine given by the caller."""
    engine = config.attributes.get("engine")
    if engine is None:
        url = config.get_main_option("sqlalchemy.url")
        if url is None:
            raise RuntimeError("no engine nor sqlalchemy.url to migrate")
        engine = db.create_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
            # Called after each migration step (a progress display).
            on_version_apply=config.attributes.get("on_version_apply", ()),
        )
        with context.begin_transaction():
            context.run_migrations()
        connection.commit()


run()
