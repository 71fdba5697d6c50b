"""One module per chapter (`chNN_slug.py`), each registering that chapter's exercises."""
