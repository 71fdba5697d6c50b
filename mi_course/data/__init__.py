"""Seeded data generators shared by training scripts and chapters."""
