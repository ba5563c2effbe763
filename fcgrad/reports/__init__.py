"""The check's reports: text tables, JSON and plots."""
