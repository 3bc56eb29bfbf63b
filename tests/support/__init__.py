"""Test helpers that launch real server processes."""
