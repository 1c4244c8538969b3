"""Whisper through CTranslate2: the backend and its word-timing pass."""
