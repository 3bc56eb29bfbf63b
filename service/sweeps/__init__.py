"""Sweeps: expansion of a request into jobs, their storage, leaderboard, factors, batching."""
