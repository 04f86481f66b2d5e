"""Faults: the whole system under attack (issue #9)."""
