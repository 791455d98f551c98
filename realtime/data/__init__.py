"""Data sources: the SQL databases that data tools read and (after confirmation) write."""
