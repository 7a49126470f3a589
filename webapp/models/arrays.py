"""A batch's values as a few array parameters (PostgreSQL): psycopg rewrites every parameter of a
statement on the client, so a VALUES list of a thousand rows of several columns cost more than
the statement itself; one array a column, unnested on the server, is one parameter each."""
from __future__ import annotations

from sqlalchemy import ARRAY, bindparam, column, func
from sqlalchemy.types import TypeEngine


def unnested(name: str, *columns: tuple[str, TypeEngine, list]):
    """The derived table `name(column, …)` of `unnest(array, …)`, one (column name, type, values)
    each, the values of equal length: a row per index."""
    return func.unnest(*(bindparam(f"{name}_{col}", values, type_=ARRAY(kind)) for col, kind, values in columns)
                       ).table_valued(*(column(col, kind) for col, kind, _ in columns)).render_derived(name=name)
