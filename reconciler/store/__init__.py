"""The registry database: tables, migrations and the queries the rest of Grove needs.

An adapter, and the only package that imports SQLAlchemy, Alembic or psycopg.
Callers get plain data (frozen dataclasses, dicts) and never see a Row or a
Session; every write happens inside a transaction the caller opens with
:func:`reconciler.store.engine.Database.transaction`.
"""
