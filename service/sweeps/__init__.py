"""Sweeps: expansion of a request into jobs, their storage, policy, search, leaderboard, factors."""
