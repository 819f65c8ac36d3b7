"""The project's database: API keys, usage and audit, models, jobs, feedback.

SQLite in `.shoptalk/shoptalk.db` by default; PostgreSQL by URL for several
server replicas. Every table module is imported here so `connect` creates them.
"""
