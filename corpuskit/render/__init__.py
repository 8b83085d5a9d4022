"""Render records into training tokens with exact label masks (`corpuskit render`, `corpuskit template`)."""
