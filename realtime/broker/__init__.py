"""Brokers: live events and the replay log (memory now; Redis with scale-out)."""
