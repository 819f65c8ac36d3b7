"""The project's database: API keys, usage and audit, models, jobs, feedback.

SQLite in `.shoptalk/shoptalk.db` by default; PostgreSQL by URL for several
server replicas. `db.TABLE_MODULES` lists the modules that define tables
(`keys`: API keys; `audit`: one row per request, usage totals), so `connect`
creates them all.
"""
