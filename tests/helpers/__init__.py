"""Graphs, models and reference helpers shared by test modules (no test module imports another)."""
