"""Plots and interactive explorers for the chapters: matplotlib figures, ipywidgets where available."""
