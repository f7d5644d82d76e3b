"""Opening the store on the backend the configuration names.

Why a module of its own: the SQLite engine (``bridge.store.engine``) is the
base the PostgreSQL engine builds on, so the choice between them sits above
both instead of inside the base class.
"""

from __future__ import annotations

from collections.abc import Callable

from bridge.store.engine import Store, StoreSettings


async def open_store(
    settings: StoreSettings,
    *,
    create_missing_key: bool = True,
    must_exist: bool = False,
    clock: Callable[[], float] | None = None,
) -> Store:
    """Open the store of ``settings`` on its backend (``[store] backend``: sqlite or postgresql).

    The arguments are those of :meth:`bridge.store.engine.Store.open`; the
    caller cannot tell the backends apart afterwards.
    """
    store_class: type[Store] = Store
    if getattr(settings, "backend", "sqlite") == "postgresql":
        from bridge.store.postgres.engine import PostgresStore  # psycopg is loaded only when used

        store_class = PostgresStore
    return await store_class.open(settings, create_missing_key=create_missing_key, must_exist=must_exist, clock=clock)
