"""PostgreSQL with the pgvector extension as the vector search of the index.

    rag:
      pgvector_url: postgresql://shoptalk@db.internal:5432/rag   # password: PGPASSWORD or ~/.pgpass

One table (`rag.pgvector_table`) holds a row per chunk: its row key (see
`vector_store`), chunk id, groups and embedding, with an HNSW index for cosine
distance. A search by a caller with groups filters rows in SQL and ranks what
is left exactly: pgvector's HNSW scan filters *after* taking its nearest
candidates, so a crowd of unreadable chunks could hide readable ones, and
"filter before ranking" is the promise. The project owner's unfiltered
searches use the HNSW index.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from shoptalk.errors import MissingExtraError, ShoptalkError
from shoptalk.rag.vector_store import row_key
from shoptalk.records import Chunk

if TYPE_CHECKING:
    import numpy as np
    import psycopg


class PgvectorStore:
    def __init__(self, connection: psycopg.Connection, table: str) -> None:
        self.connection = connection
        self.table = table

    @classmethod
    def connect(cls, url: str, table: str) -> PgvectorStore:
        """A connection to `url` (a SQLAlchemy-style 'postgresql+psycopg://' works too)."""
        try:
            import psycopg
        except ImportError as err:
            raise MissingExtraError(
                "rag.pgvector_url needs psycopg: pip install 'shoptalk[postgres]'"
            ) from err
        try:
            connection = psycopg.connect(url.replace("+psycopg", "", 1), autocommit=True)
        except psycopg.OperationalError as err:
            raise ShoptalkError(f"rag.pgvector_url: cannot connect to PostgreSQL: {err}") from err
        return cls(connection, table)

    def sync(self, chunks: list[Chunk], vectors: np.ndarray, embedding_keys: list[str]) -> int:
        keys = [row_key(c, k) for c, k in zip(chunks, embedding_keys, strict=True)]
        self._create(int(vectors.shape[1]))
        present = self.row_keys()
        wanted = {key: row for row, key in enumerate(keys)}
        stale = sorted(present - set(wanted))
        missing = [key for key in wanted if key not in present]
        # One transaction: a search never sees a document half replaced.
        rows = [(key, chunks[wanted[key]], vectors[wanted[key]]) for key in missing]
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.execute(
                self._sql("DELETE FROM {table} WHERE row_key = ANY(%s::text[])"), [stale]
            )
            cursor.executemany(
                self._sql(
                    "INSERT INTO {table} (row_key, chunk_id, acl, embedding) "
                    "VALUES (%s, %s, %s::text[], %s::vector)"
                ),
                [(key, chunk.id, chunk.acl, _vector(vector)) for key, chunk, vector in rows],
            )
        return len(missing)

    def search(
        self, vector: np.ndarray, groups: list[str] | None, limit: int
    ) -> list[tuple[str, float]]:
        query = _vector(vector)
        allowed, params = "", [query]
        if groups is not None:
            allowed, params = "WHERE cardinality(acl) = 0 OR acl && %s::text[]", [query, groups]
        statement = self._sql(
            "SELECT chunk_id, 1 - (embedding <=> %s::vector) FROM {table} "
            + allowed
            + " ORDER BY embedding <=> %s::vector LIMIT %s"
        )
        with self.connection.transaction(), self.connection.cursor() as cursor:
            if groups is not None:
                cursor.execute("SET LOCAL enable_indexscan = off")  # exact: see the module doc
            cursor.execute(statement, [*params, query, limit])
            return [(chunk_id, float(similarity)) for chunk_id, similarity in cursor.fetchall()]

    def row_keys(self) -> set[str]:
        with self.connection.cursor() as cursor:
            cursor.execute(self._sql("SELECT row_key FROM {table}"))
            return {key for (key,) in cursor.fetchall()}

    def close(self) -> None:
        self.connection.close()

    def _create(self, dimensions: int) -> None:
        """The extension, the table and its index; a table of another width is replaced."""
        import psycopg

        try:
            self.connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except (psycopg.errors.FeatureNotSupported, psycopg.errors.UndefinedFile) as err:
            raise ShoptalkError(
                "rag.pgvector_url: the PostgreSQL server has no pgvector extension "
                f"(install it on the server, e.g. the postgresql-<version>-pgvector package): {err}"
            ) from err
        except psycopg.errors.InsufficientPrivilege as err:
            raise ShoptalkError(
                "rag.pgvector_url: this user may not create the pgvector extension; "
                "a superuser runs `CREATE EXTENSION vector;` once in this database"
            ) from err
        if self._dimensions() not in (None, dimensions):
            # Another embedding model: every row is replaced anyway.
            self.connection.execute(self._sql("DROP TABLE {table}"))
        self.connection.execute(
            self._sql(
                "CREATE TABLE IF NOT EXISTS {table} (row_key text PRIMARY KEY, chunk_id text NOT NULL, "
                f"acl text[] NOT NULL, embedding vector({dimensions}) NOT NULL)"
            )
        )
        self.connection.execute(
            self._sql(
                "CREATE INDEX IF NOT EXISTS {index} ON {table} USING hnsw (embedding vector_cosine_ops)"
            )
        )

    def _dimensions(self) -> int | None:
        """The width of the table's vector column, or None when there is no table yet."""
        row = self.connection.execute(
            "SELECT atttypmod FROM pg_attribute "
            "WHERE attrelid = to_regclass(%s) AND attname = 'embedding'",
            [self.table],
        ).fetchone()
        return None if row is None else int(row[0])

    def _sql(self, template: str):
        """`template` with {table} and {index} filled in as quoted identifiers."""
        from psycopg import sql

        return sql.SQL(template).format(
            table=sql.Identifier(self.table), index=sql.Identifier(f"{self.table}_embedding")
        )


def _vector(values: np.ndarray) -> str:
    """pgvector's text form, '[0.1,0.2,...]': no client-side type adapter needed."""
    return "[" + ",".join(f"{float(v):.8g}" for v in values) + "]"
