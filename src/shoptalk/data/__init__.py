"""Ingest: read the user's sources (documents, FAQ, chats) into canonical records."""
